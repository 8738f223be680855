//! MySQL and MariaDB client/server protocol: packet framing, the handshake both ways, the replies a
//! server sends (OK, ERR, EOF, column definitions, text and binary rows) and the prepared-statement
//! commands a client sends. It owns bytes only: no sockets, no TLS, no policy, no journal; the server
//! and relay modules drive it, and [`crate::values`] turns the cells it cuts out into JSON.
//!
//! Written by hand because no maintained crate decodes the *client* side of the protocol for a server
//! or a proxy: `mysql_common` is built for clients (it encodes commands and decodes replies) and pulls
//! in much more than a gateway needs. Every reader here is bounded by the payload it was given:
//! lengths and counts are checked against the bytes present before anything is allocated, arithmetic
//! on wire numbers is checked, and bad input is an [`ProtocolError`], never a panic.
//!
//! References: the MySQL protocol pages (`PAGE_PROTOCOL` in the server's developer documentation) and
//! MariaDB's "Clients & Communication Protocol" pages.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes that break the protocol. The message says what was wrong, for the client and the journal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

/// The largest payload one physical frame carries; a frame this long is continued by the next.
pub const MAX_FRAME_PAYLOAD: usize = 0xFF_FFFF;

pub const CLIENT_LONG_PASSWORD: u32 = 1;
pub const CLIENT_FOUND_ROWS: u32 = 1 << 1;
pub const CLIENT_LONG_FLAG: u32 = 1 << 2;
pub const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
pub const CLIENT_NO_SCHEMA: u32 = 1 << 4;
pub const CLIENT_COMPRESS: u32 = 1 << 5;
pub const CLIENT_ODBC: u32 = 1 << 6;
pub const CLIENT_LOCAL_FILES: u32 = 1 << 7;
pub const CLIENT_IGNORE_SPACE: u32 = 1 << 8;
pub const CLIENT_PROTOCOL_41: u32 = 1 << 9;
pub const CLIENT_INTERACTIVE: u32 = 1 << 10;
pub const CLIENT_SSL: u32 = 1 << 11;
pub const CLIENT_TRANSACTIONS: u32 = 1 << 13;
pub const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
pub const CLIENT_MULTI_STATEMENTS: u32 = 1 << 16;
pub const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
pub const CLIENT_PS_MULTI_RESULTS: u32 = 1 << 18;
pub const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
pub const CLIENT_SESSION_TRACK: u32 = 1 << 23;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
pub const CLIENT_ZSTD_COMPRESSION: u32 = 1 << 26;

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_RESET_CONNECTION: u8 = 0x1f;
/// MariaDB's array binding of a prepared statement.
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

pub const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
pub const SERVER_STATUS_LAST_ROW_SENT: u16 = 0x0080;
/// Session-state information follows the info text of an OK packet.
pub const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;

pub const TYPE_DECIMAL: u8 = 0x00;
pub const TYPE_TINY: u8 = 0x01;
pub const TYPE_SHORT: u8 = 0x02;
pub const TYPE_LONG: u8 = 0x03;
pub const TYPE_FLOAT: u8 = 0x04;
pub const TYPE_DOUBLE: u8 = 0x05;
pub const TYPE_NULL: u8 = 0x06;
pub const TYPE_TIMESTAMP: u8 = 0x07;
pub const TYPE_LONGLONG: u8 = 0x08;
pub const TYPE_INT24: u8 = 0x09;
pub const TYPE_DATE: u8 = 0x0a;
pub const TYPE_TIME: u8 = 0x0b;
pub const TYPE_DATETIME: u8 = 0x0c;
pub const TYPE_YEAR: u8 = 0x0d;
pub const TYPE_NEWDATE: u8 = 0x0e;
pub const TYPE_VARCHAR: u8 = 0x0f;
pub const TYPE_BIT: u8 = 0x10;
pub const TYPE_JSON: u8 = 0xf5;
pub const TYPE_NEWDECIMAL: u8 = 0xf6;
pub const TYPE_ENUM: u8 = 0xf7;
pub const TYPE_SET: u8 = 0xf8;
pub const TYPE_TINY_BLOB: u8 = 0xf9;
pub const TYPE_MEDIUM_BLOB: u8 = 0xfa;
pub const TYPE_LONG_BLOB: u8 = 0xfb;
pub const TYPE_BLOB: u8 = 0xfc;
pub const TYPE_VAR_STRING: u8 = 0xfd;
pub const TYPE_STRING: u8 = 0xfe;
pub const TYPE_GEOMETRY: u8 = 0xff;

/// The `binary` character set: a column of bytes, not text.
pub const BINARY_CHARSET: u16 = 63;
/// Column flag of an unsigned number.
pub const UNSIGNED_FLAG: u16 = 32;
/// Parameter-type flag of an unsigned number in COM_STMT_EXECUTE.
pub const PARAM_UNSIGNED: u8 = 0x80;

/// The first byte of an OK packet.
const OK_HEADER: u8 = 0x00;
/// The first byte of an ERR packet.
const ERR_HEADER: u8 = 0xff;
/// The first byte of an EOF packet, of an OK packet ending a result set under CLIENT_DEPRECATE_EOF,
/// and of an authentication switch request.
const EOF_HEADER: u8 = 0xfe;
/// A NULL cell of a text row; the first byte of a LOCAL INFILE request.
const NULL_CELL: u8 = 0xfb;
/// The first byte of more authentication data.
const AUTH_MORE_DATA: u8 = 0x01;
/// Handshake protocol version 10, the only one since MySQL 3.21.
const HANDSHAKE_V10: u8 = 0x0a;
/// Bytes of the filler in a handshake response; MariaDB keeps its extended capabilities in the
/// last four.
const RESPONSE_FILLER: usize = 23;
/// The whole of an SSLRequest: capabilities, max packet, charset, filler.
const SSL_REQUEST_LEN: usize = 32;
/// Connection attributes are capped as MySQL caps them (64 KiB), and their number too.
const MAX_CONNECT_ATTRS_BYTES: usize = 64 * 1024;
const MAX_CONNECT_ATTRS: usize = 256;
/// A SQLSTATE is five characters.
const SQLSTATE_LEN: usize = 5;
/// The length of the fixed fields that end a column definition.
const COLUMN_FIXED_FIELDS: u64 = 0x0c;

/// A cursor over one payload. Every read checks the bytes left first.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next byte, without taking it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        let (&first, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| bad("packet ends early"))?;
        self.buf = rest;
        Ok(first)
    }

    pub fn u16_le(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u24_le(&mut self) -> Result<u32, ProtocolError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub fn u32_le(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length-encoded integer. 0xFB (a NULL cell in a text row) and 0xFF are not integers here.
    pub fn lenenc_int(&mut self) -> Result<u64, ProtocolError> {
        match self.u8()? {
            first @ 0..=0xfa => Ok(u64::from(first)),
            0xfc => self.u16_le().map(u64::from),
            0xfd => self.u24_le().map(u64::from),
            0xfe => self.u64_le(),
            other => Err(bad(format!(
                "0x{other:02x} does not start a length-encoded integer"
            ))),
        }
    }

    /// A length-encoded string: its length, then that many bytes, which must be present.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let len = self.lenenc_int()?;
        let len = usize::try_from(len).map_err(|_| bad("length-encoded string too long"))?;
        self.bytes(len)
    }

    /// Bytes up to a NUL, which is taken too but not returned.
    pub fn null_terminated(&mut self) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("string has no terminating NUL"))?;
        let (text, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..).unwrap_or_default();
        Ok(text)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.buf.len() {
            return Err(bad(format!(
                "packet ends early: {n} bytes wanted, {} left",
                self.buf.len()
            )));
        }
        let (taken, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(taken)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let bytes = self.bytes(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn expect_end(&self, what: &str) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(bad(format!(
                "{} unexpected bytes after {what}",
                self.buf.len()
            )))
        }
    }
}

pub fn put_lenenc_int(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=0xfa => out.push(n as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_null_terminated(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, ProtocolError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One logical packet: the payload of one or more physical frames (a frame of exactly 0xFFFFFF bytes
/// is continued by the next), with the sequence id of its first and last frame and its raw wire
/// bytes (to forward unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub first_seq: u8,
    pub last_seq: u8,
    pub payload: Bytes,
    pub raw: Bytes,
}

/// Takes the next complete logical packet off the front of `buf`, or None if incomplete. A packet
/// whose payload would exceed `max_payload` is an error as soon as its length is known (before the
/// bytes arrive); so is a continuation frame whose sequence id does not follow the previous one.
pub fn take_packet(
    buf: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<Packet>, ProtocolError> {
    let mut frames: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0usize;
    let mut total = 0usize;
    let mut first_seq = 0u8;
    let mut last_seq = 0u8;
    loop {
        let Some(header) = buf.get(offset..offset.saturating_add(4)) else {
            return Ok(None);
        };
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let seq = header[3];
        if frames.is_empty() {
            first_seq = seq;
        } else if seq != last_seq.wrapping_add(1) {
            return Err(bad(format!(
                "continuation frame has sequence id {seq}, {} expected",
                last_seq.wrapping_add(1)
            )));
        }
        last_seq = seq;
        total = total.saturating_add(len);
        if total > max_payload {
            return Err(bad(format!(
                "packet of more than {max_payload} bytes refused"
            )));
        }
        let start = offset + 4;
        let end = start + len;
        frames.push((start, end));
        if buf.len() < end {
            return Ok(None);
        }
        offset = end;
        if len < MAX_FRAME_PAYLOAD {
            break;
        }
    }
    let raw = buf.split_to(offset).freeze();
    let payload = match frames.as_slice() {
        [(start, end)] => raw.slice(*start..*end),
        _ => {
            let mut joined = BytesMut::with_capacity(total);
            for (start, end) in &frames {
                joined.extend_from_slice(&raw[*start..*end]);
            }
            joined.freeze()
        }
    };
    Ok(Some(Packet {
        first_seq,
        last_seq,
        payload,
        raw,
    }))
}

/// Appends `payload` framed (split into 0xFFFFFF frames, plus an empty frame when the length is an
/// exact multiple) starting at sequence id `seq`; returns the next sequence id (wrapping).
pub fn write_packet(out: &mut BytesMut, seq: u8, payload: &[u8]) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let (frame, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        out.reserve(frame.len() + 4);
        out.put_slice(&(frame.len() as u32).to_le_bytes()[..3]);
        out.put_u8(seq);
        out.put_slice(frame);
        seq = seq.wrapping_add(1);
        if frame.len() < MAX_FRAME_PAYLOAD {
            return seq;
        }
        rest = after;
    }
}

/// Server greeting Proctor sends (Protocol::HandshakeV10), or an upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub nonce: [u8; 20],
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.server_version.len() + self.auth_plugin.len());
        out.push(HANDSHAKE_V10);
        put_null_terminated(&mut out, &self.server_version);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.nonce[..8]);
        out.push(0);
        let [caps0, caps1, caps2, caps3] = self.capabilities.to_le_bytes();
        out.extend_from_slice(&[caps0, caps1]);
        out.push(self.charset);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&[caps2, caps3]);
        let plugin_auth = self.capabilities & CLIENT_PLUGIN_AUTH != 0;
        out.push(if plugin_auth { 21 } else { 0 });
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&self.nonce[8..]);
        out.push(0);
        if plugin_auth {
            put_null_terminated(&mut out, &self.auth_plugin);
        }
        out
    }

    /// An upstream's greeting. MariaDB keeps its extended capabilities in the reserved bytes (read
    /// past here), and sends the nonce as 8 + 12 bytes with a trailing NUL. A greeting that is an
    /// ERR packet (a host refused before the handshake) is an error carrying the server's message.
    pub fn parse(payload: &[u8]) -> Result<Greeting, ProtocolError> {
        if payload.first() == Some(&ERR_HEADER) {
            let refusal = parse_err(payload)?;
            return Err(bad(format!(
                "server refused the connection: {} ({})",
                refusal.message, refusal.code
            )));
        }
        let mut r = Reader::new(payload);
        let version = r.u8()?;
        if version != HANDSHAKE_V10 {
            return Err(bad(format!(
                "handshake protocol {version} is not supported"
            )));
        }
        let server_version = lossy(r.null_terminated()?);
        let connection_id = r.u32_le()?;
        let mut nonce = [0u8; 20];
        nonce[..8].copy_from_slice(r.bytes(8)?);
        r.u8()?;
        let caps_low = r.u16_le()?;
        let charset = r.u8()?;
        let status = r.u16_le()?;
        let caps_high = r.u16_le()?;
        let capabilities = u32::from(caps_low) | u32::from(caps_high) << 16;
        if capabilities & CLIENT_PROTOCOL_41 == 0 {
            return Err(bad("server does not speak protocol 4.1"));
        }
        let auth_data_len = usize::from(r.u8()?);
        r.bytes(10)?;
        let part2_len = auth_data_len.saturating_sub(8).max(13);
        let part2 = r.bytes(part2_len.min(r.remaining()))?;
        let part2 = part2
            .get(..12)
            .ok_or_else(|| bad("greeting's nonce is shorter than 20 bytes"))?;
        nonce[8..].copy_from_slice(part2);
        let auth_plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // Some servers ended the name with the packet instead of a NUL.
            let rest = r.rest();
            let name = rest.split(|&b| b == 0).next().unwrap_or_default();
            lossy(name)
        } else {
            crate::auth::NATIVE_PASSWORD.to_owned()
        };
        Ok(Greeting {
            server_version,
            connection_id,
            nonce,
            capabilities,
            charset,
            status,
            auth_plugin,
        })
    }
}

/// The client's SSLRequest (32 bytes, CLIENT_SSL set) or HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    SslRequest { capabilities: u32 },
    Response(HandshakeResponse),
}

/// Protocol::HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    pub attributes: Vec<(String, String)>,
}

/// The first packet a client sends after the greeting. Pre-4.1 clients (HandshakeResponse320) are
/// refused; connection attributes are bounded in number and total size.
pub fn parse_client_hello(payload: &[u8]) -> Result<ClientHello, ProtocolError> {
    let mut r = Reader::new(payload);
    let capabilities = r.u32_le()?;
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(bad(
            "client uses the pre-4.1 protocol, which is not supported",
        ));
    }
    if payload.len() == SSL_REQUEST_LEN && capabilities & CLIENT_SSL != 0 {
        return Ok(ClientHello::SslRequest { capabilities });
    }
    let max_packet = r.u32_le()?;
    let charset = r.u8()?;
    r.bytes(RESPONSE_FILLER)?;
    let user = utf8(r.null_terminated()?, "user name")?;
    let auth_response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()?
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let len = r.u8()?;
        r.bytes(usize::from(len))?
    } else {
        r.null_terminated()?
    }
    .to_vec();
    let database = if capabilities & CLIENT_CONNECT_WITH_DB != 0 && !r.is_empty() {
        Some(utf8(r.null_terminated()?, "database name")?)
    } else {
        None
    };
    let auth_plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 && !r.is_empty() {
        Some(utf8(r.null_terminated()?, "authentication plugin name")?)
    } else {
        None
    };
    let attributes = if capabilities & CLIENT_CONNECT_ATTRS != 0 && !r.is_empty() {
        parse_connect_attributes(r.lenenc_bytes()?)?
    } else {
        Vec::new()
    };
    Ok(ClientHello::Response(HandshakeResponse {
        capabilities,
        max_packet,
        charset,
        user,
        auth_response,
        database,
        auth_plugin,
        attributes,
    }))
}

fn parse_connect_attributes(block: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    if block.len() > MAX_CONNECT_ATTRS_BYTES {
        return Err(bad(format!(
            "connection attributes of {} bytes exceed {MAX_CONNECT_ATTRS_BYTES}",
            block.len()
        )));
    }
    let mut r = Reader::new(block);
    let mut attributes = Vec::new();
    while !r.is_empty() {
        if attributes.len() == MAX_CONNECT_ATTRS {
            return Err(bad(format!(
                "more than {MAX_CONNECT_ATTRS} connection attributes"
            )));
        }
        let key = lossy(r.lenenc_bytes()?);
        let value = lossy(r.lenenc_bytes()?);
        attributes.push((key, value));
    }
    Ok(attributes)
}

impl HandshakeResponse {
    /// Proctor logging in upstream as a client. Optional parts are written as the capabilities say:
    /// a database without CLIENT_CONNECT_WITH_DB is left out. Without
    /// CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA the auth response has a one-byte length, so only its
    /// first 255 bytes are sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.user.len() + self.auth_response.len());
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&[0; RESPONSE_FILLER]);
        put_null_terminated(&mut out, &self.user);
        if self.capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else if self.capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let len = u8::try_from(self.auth_response.len()).unwrap_or(u8::MAX);
            out.push(len);
            out.extend_from_slice(&self.auth_response[..usize::from(len)]);
        } else {
            out.extend_from_slice(&self.auth_response);
            out.push(0);
        }
        if self.capabilities & CLIENT_CONNECT_WITH_DB != 0 {
            put_null_terminated(&mut out, self.database.as_deref().unwrap_or_default());
        }
        if self.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            put_null_terminated(&mut out, self.auth_plugin.as_deref().unwrap_or_default());
        }
        if self.capabilities & CLIENT_CONNECT_ATTRS != 0 {
            let mut block = Vec::new();
            for (key, value) in &self.attributes {
                put_lenenc_bytes(&mut block, key.as_bytes());
                put_lenenc_bytes(&mut block, value.as_bytes());
            }
            put_lenenc_bytes(&mut out, &block);
        }
        out
    }
}

/// Protocol::SSLRequest: the first 32 bytes of a handshake response, with CLIENT_SSL set.
pub fn ssl_request(capabilities: u32, max_packet: u32, charset: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(SSL_REQUEST_LEN);
    out.extend_from_slice(&(capabilities | CLIENT_SSL).to_le_bytes());
    out.extend_from_slice(&max_packet.to_le_bytes());
    out.push(charset);
    out.extend_from_slice(&[0; RESPONSE_FILLER]);
    out
}

/// Protocol::AuthSwitchRequest: 0xFE, the plugin's name, its data (for the password plugins, the
/// 20-byte nonce and a NUL, as servers send it).
pub fn auth_switch_request(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + plugin.len() + data.len());
    out.push(EOF_HEADER);
    put_null_terminated(&mut out, plugin);
    out.extend_from_slice(data);
    out
}

/// Protocol::AuthMoreData: 0x01 and the data.
pub fn auth_more_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(AUTH_MORE_DATA);
    out.extend_from_slice(data);
    out
}

/// What a server sends during authentication, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReply<'a> {
    Ok,
    Err(ServerError),
    Switch { plugin: String, data: &'a [u8] },
    MoreData(&'a [u8]),
}

/// Name MySQL gives the pre-4.1 plugin that a bare 0xFE switch request asks for.
const OLD_PASSWORD_PLUGIN: &str = "mysql_old_password";

pub fn parse_auth_reply(payload: &[u8]) -> Result<AuthReply<'_>, ProtocolError> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        OK_HEADER => {
            parse_ok(payload)?;
            Ok(AuthReply::Ok)
        }
        ERR_HEADER => parse_err(payload).map(AuthReply::Err),
        EOF_HEADER if r.is_empty() => Ok(AuthReply::Switch {
            plugin: OLD_PASSWORD_PLUGIN.to_owned(),
            data: &[],
        }),
        EOF_HEADER => {
            let plugin = lossy(r.null_terminated()?);
            Ok(AuthReply::Switch {
                plugin,
                data: r.rest(),
            })
        }
        AUTH_MORE_DATA => Ok(AuthReply::MoreData(r.rest())),
        other => Err(bad(format!("0x{other:02x} is not an authentication reply"))),
    }
}

/// Protocol::ERR_Packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

/// The SQLSTATE of an error that has none of its own.
const GENERAL_SQLSTATE: &str = "HY000";

/// 0xFF, code, '#', SQLSTATE, message. A SQLSTATE that is not five ASCII characters is sent as HY000.
pub fn err_packet(code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let sqlstate = if sqlstate.len() == SQLSTATE_LEN && sqlstate.is_ascii() {
        sqlstate
    } else {
        GENERAL_SQLSTATE
    };
    let mut out = Vec::with_capacity(9 + message.len());
    out.push(ERR_HEADER);
    out.extend_from_slice(&code.to_le_bytes());
    out.push(b'#');
    out.extend_from_slice(sqlstate.as_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// An ERR packet; one without the '#' SQLSTATE marker (sent before protocol 4.1 is agreed) gets HY000.
pub fn parse_err(payload: &[u8]) -> Result<ServerError, ProtocolError> {
    let mut r = Reader::new(payload);
    if r.u8()? != ERR_HEADER {
        return Err(bad("not an ERR packet"));
    }
    let code = r.u16_le()?;
    let sqlstate = if r.peek() == Some(b'#') {
        r.u8()?;
        lossy(r.bytes(SQLSTATE_LEN)?)
    } else {
        GENERAL_SQLSTATE.to_owned()
    };
    Ok(ServerError {
        code,
        sqlstate,
        message: lossy(r.rest()),
    })
}

/// Protocol::OK_Packet, as read with CLIENT_PROTOCOL_41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkInfo {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: String,
}

/// An OK packet with CLIENT_PROTOCOL_41 and no info text.
pub fn ok_packet(affected_rows: u64, last_insert_id: u64, status: u16, warnings: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(OK_HEADER);
    put_lenenc_int(&mut out, affected_rows);
    put_lenenc_int(&mut out, last_insert_id);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&warnings.to_le_bytes());
    out
}

/// An EOF packet (Protocol::EOF_Packet, with CLIENT_PROTOCOL_41), for a client without
/// CLIENT_DEPRECATE_EOF.
pub fn eof_packet(status: u16, warnings: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    out.push(EOF_HEADER);
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// The smallest OK packet with a 0xFE header: header, two one-byte integers, status, warnings.
const MIN_OK_AS_EOF: usize = 7;

/// An OK packet (0x00) or an OK ending a result set under CLIENT_DEPRECATE_EOF (0xFE, at least 7
/// bytes). Whether the info text is length-encoded depends on CLIENT_SESSION_TRACK, which is not
/// known here: it is taken as length-encoded when the status says session state follows or when a
/// length-encoded string spans exactly the rest, else as the rest of the packet. Session-state data
/// is skipped. Use [`parse_ok_with`] when the capabilities are known.
pub fn parse_ok(payload: &[u8]) -> Result<OkInfo, ProtocolError> {
    let (mut ok, mut r) = parse_ok_head(payload)?;
    let rest = r.rest();
    ok.info = if ok.status & SERVER_SESSION_STATE_CHANGED != 0 {
        lossy(Reader::new(rest).lenenc_bytes()?)
    } else {
        let mut lenenc = Reader::new(rest);
        match lenenc.lenenc_bytes() {
            Ok(info) if lenenc.is_empty() => lossy(info),
            _ => lossy(rest),
        }
    };
    Ok(ok)
}

/// An OK packet read for a session whose CLIENT_SESSION_TRACK capability is `session_track`.
pub fn parse_ok_with(payload: &[u8], session_track: bool) -> Result<OkInfo, ProtocolError> {
    let (mut ok, mut r) = parse_ok_head(payload)?;
    ok.info = if !session_track {
        lossy(r.rest())
    } else if r.is_empty() {
        String::new()
    } else {
        let info = lossy(r.lenenc_bytes()?);
        if ok.status & SERVER_SESSION_STATE_CHANGED != 0 {
            r.lenenc_bytes()?;
        }
        info
    };
    Ok(ok)
}

fn parse_ok_head(payload: &[u8]) -> Result<(OkInfo, Reader<'_>), ProtocolError> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        OK_HEADER => {}
        EOF_HEADER if payload.len() >= MIN_OK_AS_EOF => {}
        _ => return Err(bad("not an OK packet")),
    }
    let ok = OkInfo {
        affected_rows: r.lenenc_int()?,
        last_insert_id: r.lenenc_int()?,
        status: r.u16_le()?,
        warnings: r.u16_le()?,
        info: String::new(),
    };
    Ok((ok, r))
}

/// The largest EOF packet; a longer packet starting with 0xFE is a row or an OK.
const MAX_EOF: usize = 9;

/// 0xFE and shorter than 9 bytes.
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < MAX_EOF
}

/// The status flags of an EOF packet (after the warning count).
pub fn eof_status(payload: &[u8]) -> Option<u16> {
    if !is_eof(payload) {
        return None;
    }
    let status = payload.get(3..5)?;
    Some(u16::from_le_bytes([status[0], status[1]]))
}

/// The column count that starts a result set.
pub fn parse_column_count(payload: &[u8]) -> Result<u64, ProtocolError> {
    Reader::new(payload).lenenc_int()
}

/// Column definition (Protocol::ColumnDefinition41).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDefinition {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

impl ColumnDefinition {
    pub fn is_unsigned(&self) -> bool {
        self.flags & UNSIGNED_FLAG != 0
    }

    pub fn is_binary(&self) -> bool {
        self.charset == BINARY_CHARSET
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        put_lenenc_bytes(&mut out, b"def");
        for text in [
            &self.schema,
            &self.table,
            &self.org_table,
            &self.name,
            &self.org_name,
        ] {
            put_lenenc_bytes(&mut out, text.as_bytes());
        }
        put_lenenc_int(&mut out, COLUMN_FIXED_FIELDS);
        out.extend_from_slice(&self.charset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.push(self.column_type);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.push(self.decimals);
        out.extend_from_slice(&[0, 0]);
        out
    }
}

/// A column definition. MariaDB puts a block of extended metadata (type name, format) between the
/// names and the fixed fields when MARIADB_CLIENT_EXTENDED_METADATA is agreed; it is recognised and
/// skipped. Anything after the fixed fields (COM_FIELD_LIST's default value) is ignored.
pub fn parse_column_definition(payload: &[u8]) -> Result<ColumnDefinition, ProtocolError> {
    let mut r = Reader::new(payload);
    r.lenenc_bytes()?;
    let schema = lossy(r.lenenc_bytes()?);
    let table = lossy(r.lenenc_bytes()?);
    let org_table = lossy(r.lenenc_bytes()?);
    let name = lossy(r.lenenc_bytes()?);
    let org_name = lossy(r.lenenc_bytes()?);
    let mut fixed_len = r.lenenc_int()?;
    let block_len = usize::try_from(fixed_len).unwrap_or(usize::MAX);
    if fixed_len != COLUMN_FIXED_FIELDS || is_extended_metadata(&r, block_len) {
        let block = r.bytes(block_len)?;
        skip_extended_metadata(block)?;
        fixed_len = r.lenenc_int()?;
    }
    if fixed_len < COLUMN_FIXED_FIELDS {
        return Err(bad(format!(
            "column definition's fixed fields are {fixed_len} bytes"
        )));
    }
    Ok(ColumnDefinition {
        schema,
        table,
        org_table,
        name,
        org_name,
        charset: r.u16_le()?,
        length: r.u32_le()?,
        column_type: r.u8()?,
        flags: r.u16_le()?,
        decimals: r.u8()?,
    })
}

/// Whether a block of `block_len` (12) bytes ahead is MariaDB's extended metadata rather than the
/// fixed fields: it parses as metadata pairs and is followed by the fixed fields' own length and 12
/// bytes, and starts with a metadata tag (0 or 1), which as a character set would be unusual.
fn is_extended_metadata(r: &Reader<'_>, block_len: usize) -> bool {
    let Some(block) = r.buf.get(..block_len) else {
        return false;
    };
    let after = r.buf.get(block_len..).unwrap_or_default();
    matches!(block.first(), Some(0 | 1))
        && skip_extended_metadata(block).is_ok()
        && after.first() == Some(&(COLUMN_FIXED_FIELDS as u8))
        && after.len() > COLUMN_FIXED_FIELDS as usize
}

fn skip_extended_metadata(block: &[u8]) -> Result<(), ProtocolError> {
    let mut r = Reader::new(block);
    while !r.is_empty() {
        match r.u8()? {
            0 | 1 => {
                r.lenenc_bytes()?;
            }
            other => {
                return Err(bad(format!(
                    "extended column metadata of kind {other} is unknown"
                )))
            }
        }
    }
    Ok(())
}

/// A text-protocol row: one lenenc string or 0xFB (NULL) per column, and nothing after.
pub fn text_row(payload: &[u8], columns: usize) -> Result<Vec<Option<&[u8]>>, ProtocolError> {
    let mut r = Reader::new(payload);
    let mut cells = Vec::with_capacity(columns.min(payload.len()));
    for _ in 0..columns {
        if r.peek() == Some(NULL_CELL) {
            r.u8()?;
            cells.push(None);
        } else {
            cells.push(Some(r.lenenc_bytes()?));
        }
    }
    r.expect_end("the row's cells")?;
    Ok(cells)
}

pub fn encode_text_row(cells: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for cell in cells {
        match cell {
            Some(value) => put_lenenc_bytes(&mut out, value),
            None => out.push(NULL_CELL),
        }
    }
    out
}

/// How a binary-protocol value of a column type is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryLayout {
    /// No bytes (TYPE_NULL).
    Empty,
    /// A fixed number of bytes, little-endian.
    Fixed(usize),
    /// A one-byte length, then that many bytes (dates and times).
    ShortLength,
    /// A length-encoded string (strings, decimals, blobs, and any type not listed).
    LengthEncoded,
}

pub fn binary_layout(column_type: u8) -> BinaryLayout {
    match column_type {
        TYPE_NULL => BinaryLayout::Empty,
        TYPE_TINY => BinaryLayout::Fixed(1),
        TYPE_SHORT | TYPE_YEAR => BinaryLayout::Fixed(2),
        TYPE_LONG | TYPE_INT24 | TYPE_FLOAT => BinaryLayout::Fixed(4),
        TYPE_LONGLONG | TYPE_DOUBLE => BinaryLayout::Fixed(8),
        TYPE_DATE | TYPE_DATETIME | TYPE_TIMESTAMP | TYPE_TIME => BinaryLayout::ShortLength,
        _ => BinaryLayout::LengthEncoded,
    }
}

fn read_binary_value<'a>(r: &mut Reader<'a>, column_type: u8) -> Result<&'a [u8], ProtocolError> {
    match binary_layout(column_type) {
        BinaryLayout::Empty => Ok(&[]),
        BinaryLayout::Fixed(n) => r.bytes(n),
        BinaryLayout::ShortLength => {
            let len = r.u8()?;
            r.bytes(usize::from(len))
        }
        BinaryLayout::LengthEncoded => r.lenenc_bytes(),
    }
}

/// Writes a value as its type lays it out. A fixed-width value of the wrong width is cut or padded
/// with zeros and a date or time is cut to 255 bytes, so that the framing of what follows holds.
fn put_binary_value(out: &mut Vec<u8>, column_type: u8, value: &[u8]) {
    match binary_layout(column_type) {
        BinaryLayout::Empty => {}
        BinaryLayout::Fixed(n) => {
            let kept = &value[..value.len().min(n)];
            out.extend_from_slice(kept);
            out.resize(out.len() + (n - kept.len()), 0);
        }
        BinaryLayout::ShortLength => {
            let len = u8::try_from(value.len()).unwrap_or(u8::MAX);
            out.push(len);
            out.extend_from_slice(&value[..usize::from(len)]);
        }
        BinaryLayout::LengthEncoded => put_lenenc_bytes(out, value),
    }
}

/// Bytes of a NULL bitmap for `count` values whose bits start at `offset`.
fn null_bitmap_len(count: usize, offset: usize) -> usize {
    count.saturating_add(offset).saturating_add(7) / 8
}

fn is_null(bitmap: &[u8], index: usize) -> bool {
    bitmap
        .get(index / 8)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

/// The bit offset of a binary row's NULL bitmap.
const ROW_NULL_BITMAP_OFFSET: usize = 2;

/// A binary-protocol row (0x00, NULL bitmap with offset 2, values by column type), as each value's
/// content bytes: a length-encoded or short-length value without its length, so that
/// [`crate::values`] decodes it by its type.
pub fn binary_row<'a>(
    payload: &'a [u8],
    column_types: &[u8],
) -> Result<Vec<Option<&'a [u8]>>, ProtocolError> {
    let mut r = Reader::new(payload);
    if r.u8()? != OK_HEADER {
        return Err(bad("binary row does not start with 0x00"));
    }
    let bitmap = r.bytes(null_bitmap_len(column_types.len(), ROW_NULL_BITMAP_OFFSET))?;
    let mut cells = Vec::with_capacity(column_types.len());
    for (index, &column_type) in column_types.iter().enumerate() {
        if is_null(bitmap, index + ROW_NULL_BITMAP_OFFSET) {
            cells.push(None);
        } else {
            cells.push(Some(read_binary_value(&mut r, column_type)?));
        }
    }
    r.expect_end("the row's values")?;
    Ok(cells)
}

/// The inverse of [`binary_row`]; cells past the column types are left out, missing cells are NULL.
pub fn encode_binary_row(cells: &[Option<&[u8]>], column_types: &[u8]) -> Vec<u8> {
    let mut bitmap = vec![0u8; null_bitmap_len(column_types.len(), ROW_NULL_BITMAP_OFFSET)];
    let mut values = Vec::new();
    for (index, &column_type) in column_types.iter().enumerate() {
        match cells.get(index).copied().flatten() {
            Some(value) => put_binary_value(&mut values, column_type, value),
            None => {
                let bit = index + ROW_NULL_BITMAP_OFFSET;
                bitmap[bit / 8] |= 1 << (bit % 8);
            }
        }
    }
    let mut out = Vec::with_capacity(1 + bitmap.len() + values.len());
    out.push(OK_HEADER);
    out.extend_from_slice(&bitmap);
    out.extend_from_slice(&values);
    out
}

/// COM_STMT_PREPARE's OK: statement id, columns, params, warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub statement_id: u32,
    pub columns: u16,
    pub params: u16,
    pub warnings: u16,
}

/// COM_STMT_PREPARE_OK; the warning count is optional (absent from 9-byte answers).
pub fn parse_prepare_ok(payload: &[u8]) -> Result<PrepareOk, ProtocolError> {
    let mut r = Reader::new(payload);
    if r.u8()? != OK_HEADER {
        return Err(bad("not a COM_STMT_PREPARE_OK"));
    }
    let statement_id = r.u32_le()?;
    let columns = r.u16_le()?;
    let params = r.u16_le()?;
    r.u8()?;
    let warnings = if r.remaining() >= 2 { r.u16_le()? } else { 0 };
    Ok(PrepareOk {
        statement_id,
        columns,
        params,
        warnings,
    })
}

/// COM_STMT_EXECUTE as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute<'a> {
    pub statement_id: u32,
    pub flags: u8,
    /// Each parameter's type and whether it is unsigned: those of the packet when `new_types`,
    /// else the previous ones.
    pub types: Vec<(u8, bool)>,
    pub new_types: bool,
    /// Each parameter's content bytes (as [`binary_row`] returns values); None is NULL. A parameter
    /// sent with COM_STMT_SEND_LONG_DATA is Some(empty): its data is the caller's.
    pub params: Vec<Option<&'a [u8]>>,
}

/// COM_STMT_EXECUTE (command byte included): statement id, flags, iteration count, and — when the
/// statement has params — NULL bitmap, new-params-bound flag, types (2 bytes each: type, flags with
/// 0x80 = unsigned) and values. `param_count` comes from the prepare answer; `previous_types` are the
/// types last bound for this statement (used when new-params-bound is 0). Values of params sent with
/// SEND_LONG_DATA (`long_data[i]`) are absent from the packet, whatever their NULL bit. Bytes left
/// after the values are an error (query attributes, CLIENT_QUERY_ATTRIBUTES, are not agreed).
pub fn parse_execute<'a>(
    payload: &'a [u8],
    param_count: usize,
    previous_types: &[(u8, bool)],
    long_data: &[bool],
) -> Result<Execute<'a>, ProtocolError> {
    let mut r = Reader::new(payload);
    if r.u8()? != COM_STMT_EXECUTE {
        return Err(bad("not a COM_STMT_EXECUTE"));
    }
    let statement_id = r.u32_le()?;
    let flags = r.u8()?;
    r.u32_le()?;
    if param_count == 0 {
        r.expect_end("COM_STMT_EXECUTE of a statement without parameters")?;
        return Ok(Execute {
            statement_id,
            flags,
            types: Vec::new(),
            new_types: false,
            params: Vec::new(),
        });
    }
    let bitmap = r.bytes(null_bitmap_len(param_count, 0))?;
    let new_types = r.u8()? == 1;
    let types = if new_types {
        let raw = r.bytes(
            param_count
                .checked_mul(2)
                .ok_or_else(|| bad("too many parameters"))?,
        )?;
        raw.chunks_exact(2)
            .map(|pair| (pair[0], pair[1] & PARAM_UNSIGNED != 0))
            .collect()
    } else if previous_types.len() == param_count {
        previous_types.to_vec()
    } else {
        return Err(bad(
            "COM_STMT_EXECUTE binds no parameter types and none were bound before",
        ));
    };
    let mut params = Vec::with_capacity(param_count);
    for (index, &(param_type, _)) in types.iter().enumerate() {
        if long_data.get(index).copied().unwrap_or(false) {
            params.push(Some(&[][..]));
        } else if is_null(bitmap, index) {
            params.push(None);
        } else {
            params.push(Some(read_binary_value(&mut r, param_type)?));
        }
    }
    r.expect_end("the parameters")?;
    Ok(Execute {
        statement_id,
        flags,
        types,
        new_types,
        params,
    })
}

/// COM_STMT_SEND_LONG_DATA (command byte included): statement id, param id, data.
pub fn parse_send_long_data(payload: &[u8]) -> Result<(u32, u16, &[u8]), ProtocolError> {
    let mut r = Reader::new(payload);
    if r.u8()? != COM_STMT_SEND_LONG_DATA {
        return Err(bad("not a COM_STMT_SEND_LONG_DATA"));
    }
    let statement_id = r.u32_le()?;
    let param_id = r.u16_le()?;
    Ok((statement_id, param_id, r.rest()))
}

/// LOAD DATA LOCAL INFILE request from the server: 0xFB + filename.
pub fn parse_local_infile_request(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&NULL_CELL, filename)) => Some(filename),
        _ => None,
    }
}
