//! PostgreSQL v3 wire format: framing, the messages a client sends, and the messages Proctor itself
//! sends (errors, authentication, readiness).
//!
//! Written by hand because the maintained Rust crates (`postgres-protocol`) implement the client side:
//! they encode frontend messages and decode backend ones, while a gateway must decode what clients send.
//! Every reader here is bounded by the message it was given: lengths and counts are checked against the
//! bytes present before anything is allocated, and bad input is an error, never a panic.

use bytes::{BufMut, BytesMut};
use proctor_net::cursor::Cursor;

/// Protocol limit for the first packet of a connection (PostgreSQL's own).
pub const MAX_STARTUP_PACKET: usize = 10_000;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;

pub use proctor_net::ProtocolError;

fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

/// A cursor over one message body, with PostgreSQL's integers (big-endian) and strings.
pub struct Reader<'a>(Cursor<'a>);

fn ends_early() -> ProtocolError {
    bad("message ends early")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self(Cursor::new(buf))
    }

    pub fn remaining(&self) -> usize {
        self.0.remaining()
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        self.0.u8().ok_or_else(ends_early)
    }

    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        self.0
            .array()
            .map(i16::from_be_bytes)
            .ok_or_else(ends_early)
    }

    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        self.0
            .array()
            .map(i32::from_be_bytes)
            .ok_or_else(ends_early)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        self.0.bytes(n).ok_or_else(ends_early)
    }

    /// A null-terminated string, which must be UTF-8.
    pub fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let bytes = self
            .0
            .until_nul()
            .ok_or_else(|| bad("string is not terminated"))?;
        std::str::from_utf8(bytes).map_err(|_| bad("string is not valid UTF-8"))
    }

    /// A count (i16) that must be non-negative and fit in what is left, at `min_each` bytes per item.
    pub fn count16(&mut self, min_each: usize) -> Result<usize, ProtocolError> {
        let n = self.i16()?;
        let n = usize::try_from(n).map_err(|_| bad("negative count"))?;
        if n.saturating_mul(min_each) > self.remaining() {
            return Err(bad("count exceeds the message"));
        }
        Ok(n)
    }

    /// A value prefixed by an i32 length, -1 meaning NULL.
    pub fn nullable(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        self.bytes(len).map(Some)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.0.rest()
    }
}

/// The first packet of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        key: i32,
    },
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
}

/// Decodes a startup-phase packet body (everything after the length word).
pub fn parse_startup(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let mut r = Reader::new(body);
    let code = r.i32()?;
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => Ok(StartupPacket::Cancel {
            pid: r.i32()?,
            key: r.i32()?,
        }),
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(bad(format!(
                    "protocol version {major}.{minor} is not supported; use protocol 3"
                )));
            }
            let mut params = Vec::new();
            loop {
                let key = r.cstr()?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((key.to_owned(), value.to_owned()));
            }
            Ok(StartupPacket::Startup {
                major,
                minor,
                params,
            })
        }
    }
}

/// If `buf` starts with a complete message (tag, i32 length, body), returns its tag and total size.
/// A length below 4 or above `max` is an error.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l >= 4)
        .ok_or_else(|| bad("message length is invalid"))?;
    if len > max {
        return Err(ProtocolError(format!(
            "a {} message of {len} bytes exceeds the limit of {max} bytes",
            printable_tag(buf[0])
        )));
    }
    if buf.len() < len + 1 {
        return Ok(None);
    }
    Ok(Some((buf[0], len + 1)))
}

pub fn printable_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}

/// What a client sends once the session is up.
#[derive(Debug, PartialEq)]
pub enum Frontend<'a> {
    Query(&'a str),
    Parse {
        name: &'a str,
        sql: &'a str,
        param_types: Vec<u32>,
    },
    Bind {
        portal: &'a str,
        statement: &'a str,
        param_formats: Vec<i16>,
        params: Vec<Option<&'a [u8]>>,
        result_formats: Vec<i16>,
    },
    Describe {
        kind: u8,
        name: &'a str,
    },
    Execute {
        portal: &'a str,
        max_rows: i32,
    },
    Close {
        kind: u8,
        name: &'a str,
    },
    Sync,
    Flush,
    CopyData(&'a [u8]),
    CopyDone,
    CopyFail(&'a str),
    FunctionCall {
        oid: u32,
        args: usize,
    },
    Terminate,
}

fn formats(r: &mut Reader<'_>) -> Result<Vec<i16>, ProtocolError> {
    let n = r.count16(2)?;
    (0..n)
        .map(|_| match r.i16()? {
            f @ (0 | 1) => Ok(f),
            other => Err(bad(format!(
                "format code {other} is neither 0 (text) nor 1 (binary)"
            ))),
        })
        .collect()
}

/// Decodes one complete client message (`msg` includes the tag and length).
pub fn parse_frontend(msg: &[u8]) -> Result<Frontend<'_>, ProtocolError> {
    let [tag, _, _, _, _, body @ ..] = msg else {
        return Err(bad("message ends early"));
    };
    let tag = *tag;
    let mut r = Reader::new(body);
    let parsed = match tag {
        b'Q' => Frontend::Query(r.cstr()?),
        b'P' => {
            let name = r.cstr()?;
            let sql = r.cstr()?;
            let n = r.count16(4)?;
            let param_types = (0..n)
                .map(|_| r.i32().map(|t| t as u32))
                .collect::<Result<_, _>>()?;
            Frontend::Parse {
                name,
                sql,
                param_types,
            }
        }
        b'B' => {
            let portal = r.cstr()?;
            let statement = r.cstr()?;
            let param_formats = formats(&mut r)?;
            let n = r.count16(4)?;
            let params = (0..n).map(|_| r.nullable()).collect::<Result<_, _>>()?;
            let result_formats = formats(&mut r)?;
            Frontend::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            }
        }
        b'D' | b'C' => {
            let kind = r.u8()?;
            if kind != b'S' && kind != b'P' {
                return Err(bad(
                    "Describe and Close take 'S' (statement) or 'P' (portal)",
                ));
            }
            let name = r.cstr()?;
            if tag == b'D' {
                Frontend::Describe { kind, name }
            } else {
                Frontend::Close { kind, name }
            }
        }
        b'E' => Frontend::Execute {
            portal: r.cstr()?,
            max_rows: r.i32()?,
        },
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'd' => Frontend::CopyData(r.rest()),
        b'c' => Frontend::CopyDone,
        b'f' => Frontend::CopyFail(r.cstr()?),
        b'F' => {
            let oid = r.i32()? as u32;
            let _formats = formats(&mut r)?;
            let args = r.count16(4)?;
            for _ in 0..args {
                r.nullable()?;
            }
            Frontend::FunctionCall { oid, args }
        }
        b'X' => Frontend::Terminate,
        other => {
            return Err(bad(format!(
                "message type {} is not valid here",
                printable_tag(other)
            )))
        }
    };
    if r.remaining() != 0 && tag != b'd' {
        return Err(bad(format!(
            "{} message has {} unexpected trailing bytes",
            printable_tag(tag),
            r.remaining()
        )));
    }
    Ok(parsed)
}

/// One column of a RowDescription, as the relay reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    pub name: &'a str,
    /// The column's table, 0 if it belongs to none.
    pub table_oid: u32,
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// Decodes a RowDescription body (`T`).
pub fn row_description(body: &[u8]) -> Result<Vec<FieldDescription<'_>>, ProtocolError> {
    let mut r = Reader::new(body);
    // A field is at least its name's terminator and 18 bytes of attributes.
    let n = r.count16(19)?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.cstr()?;
        let table_oid = r.i32()? as u32;
        let _attnum = r.i16()?;
        let type_oid = r.i32()? as u32;
        let _typlen = r.i16()?;
        let _typmod = r.i32()?;
        let format = r.i16()?;
        fields.push(FieldDescription {
            name,
            table_oid,
            type_oid,
            format,
        });
    }
    Ok(fields)
}

/// The cells of a DataRow body (`D`), in order: each a value or `None` for NULL. Decoded as they are
/// read, so a row costs no allocation of its own.
pub struct DataRow<'a> {
    /// How many cells the row says it has (each checked against the body when it is read).
    pub cells: usize,
    read: usize,
    reader: Reader<'a>,
}

/// Reads a DataRow body's cell count; its cells follow through the iterator.
pub fn data_row(body: &[u8]) -> Result<DataRow<'_>, ProtocolError> {
    let mut reader = Reader::new(body);
    let cells = reader.count16(4)?;
    Ok(DataRow {
        cells,
        read: 0,
        reader,
    })
}

impl<'a> Iterator for DataRow<'a> {
    type Item = Result<Option<&'a [u8]>, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.read == self.cells {
            return None;
        }
        self.read += 1;
        Some(self.reader.nullable())
    }
}

/// Decodes a ParameterDescription body (`t`): the type OID of each parameter.
pub fn parameter_description(body: &[u8]) -> Result<Vec<u32>, ProtocolError> {
    let mut r = Reader::new(body);
    let n = r.count16(4)?;
    (0..n).map(|_| r.i32().map(|t| t as u32)).collect()
}

/// Decodes a CommandComplete body (`C`): the command tag, such as `SELECT 3`.
pub fn command_tag(body: &[u8]) -> Result<&str, ProtocolError> {
    Reader::new(body).cstr()
}

/// A NotificationResponse (`A`): what `NOTIFY` sent on a channel the session listens to.
#[derive(Debug, PartialEq, Eq)]
pub struct Notification<'a> {
    pub pid: i32,
    pub channel: &'a str,
    pub payload: &'a str,
}

/// Decodes a NotificationResponse body.
pub fn notification(body: &[u8]) -> Result<Notification<'_>, ProtocolError> {
    let mut r = Reader::new(body);
    Ok(Notification {
        pid: r.i32()?,
        channel: r.cstr()?,
        payload: r.cstr()?,
    })
}

/// Builds a message: tag, length, body.
fn message(tag: u8, body: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u8(tag);
    buf.put_i32(0);
    body(&mut buf);
    let len = (buf.len() - 1) as i32;
    buf[1..5].copy_from_slice(&len.to_be_bytes());
    buf
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.replace('\0', " ").as_bytes());
    buf.put_u8(0);
}

/// An error (or notice) Proctor answers a client with, in the client's protocol. After a fatal one
/// the session ends; after an error it goes on.
#[derive(Clone, Debug)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
    severity: &'static str,
}

/// A Sync message: what a refused simple query is replaced with, so that the database answers with
/// ReadyForQuery in its true transaction state.
pub const SYNC: &[u8] = b"S\0\0\0\x04";

impl ClientError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
            severity: "FATAL",
        }
    }

    /// An error that ends the statement, not the session.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR",
            ..Self::fatal(code, message)
        }
    }

    /// A NoticeResponse: information while the session goes on.
    pub fn notice(message: impl Into<String>) -> Self {
        Self {
            severity: "NOTICE",
            ..Self::fatal("00000", message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn encode(&self) -> BytesMut {
        let tag = if self.severity == "NOTICE" {
            b'N'
        } else {
            b'E'
        };
        message(tag, |b| {
            for (field, value) in [
                (b'S', self.severity),
                (b'V', self.severity),
                (b'C', self.code),
            ] {
                b.put_u8(field);
                put_cstr(b, value);
            }
            b.put_u8(b'M');
            put_cstr(b, &self.message);
            if let Some(hint) = &self.hint {
                b.put_u8(b'H');
                put_cstr(b, hint);
            }
            b.put_u8(0);
        })
    }
}

pub fn authentication(code: i32, data: &[u8]) -> BytesMut {
    message(b'R', |b| {
        b.put_i32(code);
        b.put_slice(data);
    })
}

pub const AUTH_OK: i32 = 0;
pub const AUTH_CLEARTEXT: i32 = 3;
pub const AUTH_SASL: i32 = 10;
pub const AUTH_SASL_CONTINUE: i32 = 11;
pub const AUTH_SASL_FINAL: i32 = 12;

pub fn auth_sasl_mechanisms(mechanisms: &[&str]) -> BytesMut {
    let mut data = BytesMut::new();
    for mechanism in mechanisms {
        put_cstr(&mut data, mechanism);
    }
    data.put_u8(0);
    authentication(AUTH_SASL, &data)
}

pub fn parameter_status(name: &str, value: &str) -> BytesMut {
    message(b'S', |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    })
}

pub fn backend_key_data(pid: i32, key: i32) -> BytesMut {
    message(b'K', |b| {
        b.put_i32(pid);
        b.put_i32(key);
    })
}

pub fn ready_for_query(status: u8) -> BytesMut {
    message(b'Z', |b| b.put_u8(status))
}

pub fn negotiate_protocol_version(newest_minor: i32, unsupported: &[&str]) -> BytesMut {
    message(b'v', |b| {
        b.put_i32(newest_minor);
        b.put_i32(unsupported.len() as i32);
        for option in unsupported {
            put_cstr(b, option);
        }
    })
}

/// The fields of an ErrorResponse or NoticeResponse body.
pub fn error_fields(body: &[u8]) -> Result<Vec<(u8, &str)>, ProtocolError> {
    let mut r = Reader::new(body);
    let mut fields = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            return Ok(fields);
        }
        fields.push((code, r.cstr()?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_need_the_whole_message_and_respect_the_limit() {
        let q = msg(b'Q', b"select 1\0");
        assert_eq!(frame(&q[..4], 100), Ok(None));
        assert_eq!(frame(&q[..q.len() - 1], 100), Ok(None));
        assert_eq!(frame(&q, 100), Ok(Some((b'Q', q.len()))));
        assert!(frame(&q, 8).unwrap_err().0.contains("exceeds the limit"));
        assert!(frame(&[b'Q', 0, 0, 0, 2], 100).is_err());
        assert!(frame(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100).is_err());
    }

    #[test]
    fn bind_with_text_and_binary_parameters_decodes() {
        let mut body = Vec::new();
        body.extend_from_slice(b"p1\0s1\0");
        body.extend_from_slice(&[0, 2, 0, 0, 0, 1]);
        body.extend_from_slice(&[0, 3]);
        body.extend_from_slice(&[0, 0, 0, 2, b'4', b'2']);
        body.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        body.extend_from_slice(&[0, 0]);
        let m = msg(b'B', &body);
        let Frontend::Bind {
            portal,
            statement,
            params,
            param_formats,
            ..
        } = parse_frontend(&m).unwrap()
        else {
            panic!("not a Bind")
        };
        assert_eq!((portal, statement), ("p1", "s1"));
        assert_eq!(param_formats, vec![0, 1]);
        assert_eq!(
            params,
            vec![Some(&b"42"[..]), Some(&[0, 0, 0, 7][..]), None]
        );
    }

    #[test]
    fn hostile_counts_and_lengths_are_errors_not_panics() {
        let huge_count = msg(b'B', b"\0\0\x7f\xff");
        assert!(parse_frontend(&huge_count).is_err());
        let huge_value = msg(b'B', b"\0\0\0\0\0\x01\x7f\xff\xff\xff");
        assert!(parse_frontend(&huge_value).is_err());
        let negative = msg(b'B', b"\0\0\0\0\x80\x00");
        assert!(parse_frontend(&negative).is_err());
        assert!(parse_frontend(&msg(b'Q', b"no terminator")).is_err());
        assert!(parse_frontend(&msg(b'Z', b"")).is_err());
        assert!(parse_frontend(&msg(b'D', b"X\0")).is_err());
        assert!(parse_startup(&[0, 2, 0, 0]).is_err());
        assert!(parse_startup(&[0, 3, 0, 0, b'u', b's']).is_err());
    }

    #[test]
    fn fuzzed_messages_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let tag = b"QPBDECSHdcfFXZ"[(state >> 8) as usize % 14];
            let body: Vec<u8> = (0..len).map(|i| (state >> (i % 56)) as u8).collect();
            let m = msg(tag, &body);
            let _ = parse_frontend(&m);
            let _ = parse_startup(&body);
            let _ = error_fields(&body);
        }
    }

    #[test]
    fn a_message_shorter_than_its_header_is_an_error() {
        for short in [&b""[..], b"Q", b"Q\0\0\0"] {
            assert!(parse_frontend(short).is_err());
        }
    }

    #[test]
    fn backend_messages_decode() {
        let mut body = vec![0, 2];
        for (name, table, type_oid, format) in [("id", 16384i32, 23i32, 1i16), ("email", 0, 25, 0)]
        {
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(&table.to_be_bytes());
            body.extend_from_slice(&1i16.to_be_bytes());
            body.extend_from_slice(&type_oid.to_be_bytes());
            body.extend_from_slice(&4i16.to_be_bytes());
            body.extend_from_slice(&(-1i32).to_be_bytes());
            body.extend_from_slice(&format.to_be_bytes());
        }
        let fields = row_description(&body).unwrap();
        assert_eq!(
            fields[1],
            FieldDescription {
                name: "email",
                table_oid: 0,
                type_oid: 25,
                format: 0
            }
        );
        assert_eq!((fields[0].table_oid, fields[0].format), (16384, 1));
        let row = data_row(b"\0\x02\0\0\0\x01x\xff\xff\xff\xff").unwrap();
        assert_eq!(row.cells, 2);
        assert_eq!(
            row.collect::<Result<Vec<_>, _>>(),
            Ok(vec![Some(&b"x"[..]), None])
        );
        let cut = data_row(b"\0\x01\0\0\0\x09x").unwrap();
        assert_eq!(cut.collect::<Vec<_>>().len(), 1, "one cell, an error");
        assert!(data_row(b"\0\x05\0\0").is_err(), "more cells than bytes");
        assert_eq!(parameter_description(b"\0\x01\0\0\0\x17"), Ok(vec![23]));
        assert_eq!(command_tag(b"SELECT 3\0"), Ok("SELECT 3"));
        assert_eq!(
            notification(b"\0\0\0\x07jobs\0{}\0"),
            Ok(Notification {
                pid: 7,
                channel: "jobs",
                payload: "{}"
            })
        );
    }

    #[test]
    fn startup_reads_parameters() {
        let mut body = 196608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0alice\0database\0app-db\0\0");
        assert_eq!(
            parse_startup(&body).unwrap(),
            StartupPacket::Startup {
                major: 3,
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "app-db".into())
                ],
            }
        );
    }

    #[test]
    fn error_response_round_trips() {
        let e = ClientError::fatal("28P01", "nope")
            .hint("try again")
            .encode();
        let fields = error_fields(&e[5..]).unwrap();
        assert!(fields.contains(&(b'C', "28P01")));
        assert!(fields.contains(&(b'M', "nope")));
        assert!(fields.contains(&(b'H', "try again")));
    }
}
