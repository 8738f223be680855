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
use proctor_net::cursor::Cursor;

pub use proctor_net::ProtocolError;

fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

/// How [`take_packet`]'s error for a packet over its limit begins.
pub const TOO_LARGE: &str = "packet of more than";

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

/// A cursor over one payload, with MySQL's integers (little-endian, length-encoded) and strings.
/// Every read checks the bytes left first.
pub struct Reader<'a>(Cursor<'a>);

fn ends_early() -> ProtocolError {
    bad("packet ends early")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self(Cursor::new(buf))
    }

    pub fn remaining(&self) -> usize {
        self.0.remaining()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next byte, without taking it.
    pub fn peek(&self) -> Option<u8> {
        self.0.peek()
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        self.0.u8().ok_or_else(ends_early)
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
        self.0
            .until_nul()
            .ok_or_else(|| bad("string has no terminating NUL"))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let left = self.0.remaining();
        self.0
            .bytes(n)
            .ok_or_else(|| bad(format!("packet ends early: {n} bytes wanted, {left} left")))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.0.rest()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        self.0.array().ok_or_else(ends_early)
    }

    fn expect_end(&self, what: &str) -> Result<(), ProtocolError> {
        match self.0.remaining() {
            0 => Ok(()),
            left => Err(bad(format!("{left} unexpected bytes after {what}"))),
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

/// A frame's payload length, from its 4-byte header.
pub fn frame_length(header: &[u8]) -> usize {
    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16
}

/// Takes the next complete logical packet off the front of `buf`, or None if incomplete. A packet
/// whose payload would exceed `max_payload` is an error as soon as its length is known (before the
/// bytes arrive); so is a continuation frame whose sequence id does not follow the previous one.
pub fn take_packet(
    buf: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<Packet>, ProtocolError> {
    let mut frames = 0usize;
    let mut offset = 0usize;
    let mut total = 0usize;
    let mut first_seq = 0u8;
    let mut last_seq = 0u8;
    loop {
        let Some(header) = buf.get(offset..offset.saturating_add(4)) else {
            return Ok(None);
        };
        let len = frame_length(header);
        let seq = header[3];
        if frames == 0 {
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
            return Err(bad(format!("{TOO_LARGE} {max_payload} bytes refused")));
        }
        frames += 1;
        let end = offset + 4 + len;
        if buf.len() < end {
            return Ok(None);
        }
        offset = end;
        if len < MAX_FRAME_PAYLOAD {
            break;
        }
    }
    let raw = buf.split_to(offset).freeze();
    // Nearly every packet is one frame, whose payload is a slice of its raw bytes.
    let payload = if frames == 1 {
        raw.slice(4..)
    } else {
        let mut joined = BytesMut::with_capacity(total);
        let mut at = 0;
        while let Some(header) = raw.get(at..at + 4) {
            let start = at + 4;
            at = start + frame_length(header);
            joined.extend_from_slice(&raw[start..at]);
        }
        joined.freeze()
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
    let ahead = r.0.ahead();
    let Some(block) = ahead.get(..block_len) else {
        return false;
    };
    let after = ahead.get(block_len..).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text.split_whitespace().collect::<String>()).unwrap()
    }

    /// Frames captured between `mariadb` 3.3 (Connector/C) and MariaDB 10.11, `--ssl=0`, running
    /// `select 1 as a, null as b, 'x' as c` as root without a password.
    fn captured_greeting_frame() -> Vec<u8> {
        unhex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000a000000
             6444685d7969257700fef72d0200ff81150000000000001d0000004b51334a5a667022535c536e006d79
             73716c5f6e61746976655f70617373776f726400",
        )
    }

    fn captured_response_frame() -> Vec<u8> {
        unhex(
            "bc00000184a2bf000000100021000000000000000000000000000000000000001d000000726f6f740000
             6d7973716c5f6e61746976655f70617373776f7264007f035f6f73054c696e75780c5f636c69656e745f
             6e616d650a6c69626d617269616462045f7069640531303530310f5f636c69656e745f76657273696f6e
             06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d797371
             6c0c5f7365727665725f686f7374093132372e302e302e31",
        )
    }

    /// The server's answer to the query: OK to the login, then the result set: column count (with
    /// MariaDB's metadata-follows byte), three column definitions (with an empty block of MariaDB's
    /// extended metadata), EOF, one row, EOF.
    fn captured_result_frames() -> Vec<u8> {
        unhex(
            "0700000200000002000000
             020000010301
             1800000203646566000000016100000c3f0001000000038100000000
             1800000303646566000000016200000c3f0000000000068000000000
             1800000403646566000000016300000c210003000000fd0100270000
             05000005fe00000200
             050000060131fb0178
             05000007fe00000200",
        )
    }

    fn take_all(bytes: &[u8]) -> Vec<Packet> {
        let mut buf = BytesMut::from(bytes);
        let mut packets = Vec::new();
        while let Some(packet) = take_packet(&mut buf, 1 << 20).unwrap() {
            packets.push(packet);
        }
        assert!(buf.is_empty());
        packets
    }

    #[test]
    fn reader_reads_length_encoded_integers_of_every_width() {
        let bytes = unhex("fa fc fb00 fd 010203 fe 0102030405060708");
        let mut r = Reader::new(&bytes);
        assert_eq!(r.lenenc_int().unwrap(), 0xfa);
        assert_eq!(r.lenenc_int().unwrap(), 0xfb);
        assert_eq!(r.lenenc_int().unwrap(), 0x030201);
        assert_eq!(r.lenenc_int().unwrap(), 0x0807060504030201);
        assert!(r.is_empty());
        assert!(Reader::new(&[0xfb]).lenenc_int().is_err());
        assert!(Reader::new(&[0xff]).lenenc_int().is_err());
        assert!(Reader::new(&[0xfd, 1, 2]).lenenc_int().is_err());
        assert!(Reader::new(&[0xfe, 0, 0, 0, 0, 0, 0, 0, 1])
            .lenenc_bytes()
            .is_err());
    }

    #[test]
    fn lenenc_integers_round_trip_at_every_boundary() {
        for n in [
            0,
            0xfa,
            0xfb,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int().unwrap(), n);
            assert!(r.is_empty());
        }
        let mut out = Vec::new();
        put_lenenc_bytes(&mut out, b"abc");
        assert_eq!(out, b"\x03abc");
    }

    #[test]
    fn reader_refuses_to_read_past_the_end() {
        let mut r = Reader::new(b"ab");
        assert!(r.u24_le().is_err());
        assert!(r.bytes(3).is_err());
        assert_eq!(r.u16_le().unwrap(), 0x6261);
        assert!(r.u8().is_err());
        assert!(Reader::new(b"no nul").null_terminated().is_err());
        let mut r = Reader::new(b"a\0b");
        assert_eq!(r.null_terminated().unwrap(), b"a");
        assert_eq!(r.rest(), b"b");
    }

    #[test]
    fn captured_stream_splits_into_packets() {
        let packets = take_all(&captured_result_frames());
        let seqs: Vec<u8> = packets.iter().map(|p| p.first_seq).collect();
        assert_eq!(seqs, [2, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&packets[1].payload[..], [3, 1]);
        assert_eq!(&packets[1].raw[..], unhex("020000010301"));
    }

    #[test]
    fn incomplete_packets_wait_for_more_bytes() {
        let frame = captured_greeting_frame();
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(take_packet(&mut buf, 1 << 20).unwrap(), None);
            assert_eq!(buf.len(), cut, "nothing is taken from an incomplete packet");
        }
    }

    #[test]
    fn oversized_packets_are_refused_before_their_bytes_arrive() {
        let mut buf = BytesMut::from(&[0x01, 0x00, 0x01, 0x00][..]);
        assert!(take_packet(&mut buf, 0xffff).is_err());
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0x00][..]);
        assert_eq!(take_packet(&mut buf, MAX_FRAME_PAYLOAD).unwrap(), None);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0x00][..]);
        assert!(take_packet(&mut buf, MAX_FRAME_PAYLOAD - 1).is_err());
    }

    #[test]
    fn empty_packets_round_trip() {
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 255, b""), 0);
        assert_eq!(&out[..], [0, 0, 0, 255]);
        let packet = take_packet(&mut out, 0).unwrap().unwrap();
        assert!(packet.payload.is_empty());
        assert_eq!((packet.first_seq, packet.last_seq), (255, 255));
    }

    fn round_trip_large(len: usize, frames: usize) {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        let next = write_packet(&mut out, 254, &payload);
        assert_eq!(next, 254u8.wrapping_add(frames as u8));
        assert_eq!(out.len(), len + 4 * frames);
        let mut buf = out.clone();
        buf.extend_from_slice(b"\x01\x00\x00\x07\x0e");
        let packet = take_packet(&mut buf, 2 * MAX_FRAME_PAYLOAD)
            .unwrap()
            .unwrap();
        assert_eq!(packet.payload.len(), len);
        assert!(packet.payload[..] == payload[..]);
        assert_eq!(packet.first_seq, 254);
        assert_eq!(packet.last_seq, next.wrapping_sub(1));
        assert!(packet.raw[..] == out[..]);
        assert_eq!(&buf[..], b"\x01\x00\x00\x07\x0e");
    }

    #[test]
    fn a_payload_of_exactly_one_frame_is_followed_by_an_empty_frame() {
        round_trip_large(MAX_FRAME_PAYLOAD, 2);
    }

    #[test]
    fn a_payload_over_one_frame_continues_in_the_next() {
        round_trip_large(MAX_FRAME_PAYLOAD + 5, 2);
    }

    #[test]
    fn continuation_frames_must_follow_in_sequence() {
        let mut out = BytesMut::new();
        write_packet(&mut out, 3, &vec![0; MAX_FRAME_PAYLOAD]);
        let second = MAX_FRAME_PAYLOAD + 4;
        out[second + 3] = 9;
        assert!(take_packet(&mut out, 2 * MAX_FRAME_PAYLOAD).is_err());
    }

    #[test]
    fn the_captured_mariadb_greeting_parses() {
        let packet = take_all(&captured_greeting_frame()).remove(0);
        let greeting = Greeting::parse(&packet.payload).unwrap();
        assert_eq!(greeting.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1");
        assert_eq!(greeting.connection_id, 10);
        assert_eq!(&greeting.nonce, b"dDh]yi%wKQ3JZfp\"S\\Sn");
        assert_eq!(greeting.capabilities, 0x81ff_f7fe);
        assert_eq!(greeting.capabilities & CLIENT_LONG_PASSWORD, 0, "MariaDB");
        assert_eq!(greeting.charset, 0x2d);
        assert_eq!(greeting.status, SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(greeting.auth_plugin, crate::auth::NATIVE_PASSWORD);
    }

    fn proctor_greeting() -> Greeting {
        Greeting {
            server_version: "8.0.36-proctor".to_owned(),
            connection_id: 0x0102_0304,
            nonce: *b"abcdefghijklmnopqrst",
            capabilities: CLIENT_LONG_PASSWORD
                | CLIENT_PROTOCOL_41
                | CLIENT_SECURE_CONNECTION
                | CLIENT_PLUGIN_AUTH
                | CLIENT_SSL
                | CLIENT_DEPRECATE_EOF,
            charset: 45,
            status: SERVER_STATUS_AUTOCOMMIT,
            auth_plugin: crate::auth::CACHING_SHA2.to_owned(),
        }
    }

    #[test]
    fn greetings_round_trip() {
        let greeting = proctor_greeting();
        let encoded = greeting.encode();
        assert_eq!(encoded[0], 0x0a);
        assert_eq!(Greeting::parse(&encoded).unwrap(), greeting);
        let nonce_end = encoded.len() - crate::auth::CACHING_SHA2.len() - 2;
        for cut in 0..nonce_end {
            assert!(Greeting::parse(&encoded[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_refusing_or_ancient_greeting_is_an_error() {
        let refusal = err_packet(1130, "HY000", "Host '10.0.0.9' is not allowed");
        let error = Greeting::parse(&refusal).unwrap_err();
        assert!(error.0.contains("is not allowed"), "{error}");
        let mut old = proctor_greeting().encode();
        old[0] = 9;
        assert!(Greeting::parse(&old).is_err());
    }

    #[test]
    fn the_captured_client_response_parses() {
        let packet = take_all(&captured_response_frame()).remove(0);
        assert_eq!(packet.first_seq, 1);
        let ClientHello::Response(response) = parse_client_hello(&packet.payload).unwrap() else {
            panic!("not a handshake response");
        };
        assert_eq!(response.capabilities, 0x00bf_a284);
        assert_eq!(response.capabilities & CLIENT_SSL, 0);
        assert_eq!(response.max_packet, 1 << 20);
        assert_eq!(response.charset, 0x21);
        assert_eq!(response.user, "root");
        assert!(response.auth_response.is_empty());
        assert_eq!(response.database, None);
        assert_eq!(
            response.auth_plugin.as_deref(),
            Some(crate::auth::NATIVE_PASSWORD)
        );
        assert_eq!(response.attributes.len(), 7);
        assert_eq!(response.attributes[0], ("_os".into(), "Linux".into()));
        assert_eq!(
            response.attributes[6],
            ("_server_host".into(), "127.0.0.1".into())
        );
    }

    fn proctor_response() -> HandshakeResponse {
        HandshakeResponse {
            capabilities: CLIENT_PROTOCOL_41
                | CLIENT_SECURE_CONNECTION
                | CLIENT_PLUGIN_AUTH
                | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | CLIENT_CONNECT_WITH_DB
                | CLIENT_CONNECT_ATTRS,
            max_packet: 1 << 24,
            charset: 45,
            user: "app".to_owned(),
            auth_response: (0..20).collect(),
            database: Some("shop".to_owned()),
            auth_plugin: Some(crate::auth::NATIVE_PASSWORD.to_owned()),
            attributes: vec![("program_name".to_owned(), "proctor".to_owned())],
        }
    }

    #[test]
    fn handshake_responses_round_trip() {
        let response = proctor_response();
        let encoded = response.encode();
        assert_eq!(
            parse_client_hello(&encoded).unwrap(),
            ClientHello::Response(response.clone())
        );
        let one_byte_length = HandshakeResponse {
            capabilities: response.capabilities & !CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
            ..response
        };
        assert_eq!(
            parse_client_hello(&one_byte_length.encode()).unwrap(),
            ClientHello::Response(one_byte_length)
        );
    }

    #[test]
    fn truncated_handshake_responses_are_errors() {
        let encoded = proctor_response().encode();
        for cut in 0..encoded.len() {
            if cut == SSL_REQUEST_LEN {
                continue;
            }
            let parsed = parse_client_hello(&encoded[..cut]);
            let complete = matches!(
                &parsed,
                Ok(ClientHello::Response(r)) if r.attributes.is_empty() || r.database.is_none()
            );
            assert!(parsed.is_err() || complete, "cut at {cut}: {parsed:?}");
        }
        let captured = take_all(&captured_response_frame()).remove(0).payload;
        assert!(parse_client_hello(&captured[..captured.len() - 1]).is_err());
    }

    #[test]
    fn ssl_requests_are_told_apart_from_responses() {
        let request = ssl_request(CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION, 1 << 24, 45);
        assert_eq!(request.len(), 32);
        assert_eq!(
            parse_client_hello(&request).unwrap(),
            ClientHello::SslRequest {
                capabilities: CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_SSL
            }
        );
        let after_tls = HandshakeResponse {
            capabilities: proctor_response().capabilities | CLIENT_SSL,
            ..proctor_response()
        };
        assert!(matches!(
            parse_client_hello(&after_tls.encode()).unwrap(),
            ClientHello::Response(_)
        ));
    }

    #[test]
    fn pre_41_clients_and_huge_attribute_lists_are_refused() {
        let old = HandshakeResponse {
            capabilities: CLIENT_SECURE_CONNECTION,
            ..proctor_response()
        };
        let error = parse_client_hello(&old.encode()).unwrap_err();
        assert!(error.0.contains("pre-4.1"), "{error}");
        let many = HandshakeResponse {
            attributes: (0..=MAX_CONNECT_ATTRS)
                .map(|i| (i.to_string(), String::new()))
                .collect(),
            ..proctor_response()
        };
        assert!(parse_client_hello(&many.encode()).is_err());
        let big = HandshakeResponse {
            attributes: vec![("k".to_owned(), "v".repeat(MAX_CONNECT_ATTRS_BYTES))],
            ..proctor_response()
        };
        assert!(parse_client_hello(&big.encode()).is_err());
    }

    #[test]
    fn auth_replies_are_told_apart() {
        assert_eq!(
            parse_auth_reply(&ok_packet(0, 0, 2, 0)).unwrap(),
            AuthReply::Ok
        );
        let switch = auth_switch_request(crate::auth::NATIVE_PASSWORD, b"01234567890123456789\0");
        assert_eq!(
            parse_auth_reply(&switch).unwrap(),
            AuthReply::Switch {
                plugin: crate::auth::NATIVE_PASSWORD.to_owned(),
                data: b"01234567890123456789\0"
            }
        );
        assert_eq!(
            parse_auth_reply(&[0xfe]).unwrap(),
            AuthReply::Switch {
                plugin: "mysql_old_password".to_owned(),
                data: b""
            }
        );
        assert_eq!(
            parse_auth_reply(&auth_more_data(&[crate::auth::FAST_AUTH_OK])).unwrap(),
            AuthReply::MoreData(&[0x03])
        );
        let AuthReply::Err(error) =
            parse_auth_reply(&err_packet(1045, "28000", "Access denied")).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(error.code, 1045);
        assert!(parse_auth_reply(b"").is_err());
        assert!(parse_auth_reply(b"\x00\x01").is_err());
        assert!(parse_auth_reply(b"\xfeplugin-without-nul").is_err());
        assert!(parse_auth_reply(b"\x02").is_err());
    }

    #[test]
    fn err_packets_round_trip() {
        // The ERR_Packet example of the protocol documentation.
        let documented = unhex("ff 4804 2334 3253 3032 4e6f 2074 6162 6c65 7320 7573 6564");
        let error = parse_err(&documented).unwrap();
        assert_eq!(
            error,
            ServerError {
                code: 1096,
                sqlstate: "42S02".to_owned(),
                message: "No tables used".to_owned()
            }
        );
        assert_eq!(err_packet(1096, "42S02", "No tables used"), documented);
        let made = err_packet(1, "bad", "x");
        assert_eq!(parse_err(&made).unwrap().sqlstate, "HY000");
        assert_eq!(
            parse_err(b"\xff\x10\x04Too many").unwrap().sqlstate,
            "HY000"
        );
        for cut in (0..3).chain(4..9) {
            assert!(parse_err(&documented[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            parse_err(&documented[..3]).unwrap().message,
            "",
            "a bare code"
        );
        assert!(parse_err(b"\x00\x01\x02").is_err());
    }

    #[test]
    fn ok_packets_round_trip() {
        // The OK_Packet example of the protocol documentation: one row affected, autocommit.
        let documented = unhex("00 01 00 02 00 00 00");
        let ok = parse_ok(&documented).unwrap();
        assert_eq!((ok.affected_rows, ok.last_insert_id), (1, 0));
        assert_eq!(ok.status, SERVER_STATUS_AUTOCOMMIT);
        assert_eq!(ok.warnings, 0);
        assert_eq!(ok_packet(1, 0, SERVER_STATUS_AUTOCOMMIT, 0), documented);
        let big = ok_packet(70_000, 1 << 40, 3, 7);
        let ok = parse_ok(&big).unwrap();
        assert_eq!((ok.affected_rows, ok.last_insert_id), (70_000, 1 << 40));
        assert_eq!((ok.status, ok.warnings), (3, 7));
        for cut in 0..big.len() {
            assert!(parse_ok(&big[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_ok(&err_packet(1, "HY000", "no")).is_err());
    }

    #[test]
    fn ok_info_is_read_with_or_without_session_tracking() {
        let mut plain = ok_packet(3, 0, 2, 0);
        plain.extend_from_slice(b"Rows matched: 3  Changed: 3  Warnings: 0");
        assert_eq!(
            parse_ok(&plain).unwrap().info,
            "Rows matched: 3  Changed: 3  Warnings: 0"
        );
        assert_eq!(
            parse_ok_with(&plain, false).unwrap().info,
            parse_ok(&plain).unwrap().info
        );
        let mut tracked = ok_packet(0, 0, 2 | SERVER_SESSION_STATE_CHANGED, 0);
        put_lenenc_bytes(&mut tracked, b"");
        put_lenenc_bytes(&mut tracked, b"\x01\x05\x04shop");
        assert_eq!(parse_ok(&tracked).unwrap().info, "");
        assert_eq!(parse_ok_with(&tracked, true).unwrap().info, "");
        let mut info_only = ok_packet(0, 0, 2, 0);
        put_lenenc_bytes(&mut info_only, b"done");
        assert_eq!(parse_ok(&info_only).unwrap().info, "done");
        assert_eq!(parse_ok_with(&info_only, true).unwrap().info, "done");
        let mut short_state = ok_packet(0, 0, SERVER_SESSION_STATE_CHANGED, 0);
        short_state.extend_from_slice(b"\x00\x09abc");
        assert!(parse_ok_with(&short_state, true).is_err());
    }

    #[test]
    fn eof_and_ok_as_eof_are_told_apart() {
        // The EOF_Packet example of the protocol documentation.
        let documented = unhex("fe 00 00 02 00");
        assert!(is_eof(&documented));
        assert_eq!(eof_status(&documented), Some(SERVER_STATUS_AUTOCOMMIT));
        assert_eq!(eof_packet(SERVER_STATUS_AUTOCOMMIT, 0), documented);
        let ok_as_eof = unhex("fe 00 00 22 00 00 00");
        assert!(is_eof(&ok_as_eof));
        let ok = parse_ok(&ok_as_eof).unwrap();
        assert_eq!(ok.status, 0x22);
        assert!(parse_ok(&documented).is_err(), "too short for an OK");
        assert!(!is_eof(&[0xfe; 9]));
        assert!(!is_eof(b""));
        assert_eq!(eof_status(b"\xfe\x00"), None);
        assert_eq!(eof_status(b"\x00\x00\x00\x02\x00"), None);
    }

    #[test]
    fn the_captured_result_set_parses() {
        let packets = take_all(&captured_result_frames());
        assert_eq!(parse_ok(&packets[0].payload).unwrap().status, 2);
        assert_eq!(parse_column_count(&packets[1].payload).unwrap(), 3);
        let columns: Vec<ColumnDefinition> = packets[2..5]
            .iter()
            .map(|p| parse_column_definition(&p.payload).unwrap())
            .collect();
        assert_eq!(columns[0].name, "a");
        assert_eq!(columns[0].column_type, TYPE_LONG);
        assert!(columns[0].is_binary());
        assert_eq!(columns[0].flags, 0x81);
        assert_eq!(columns[1].column_type, TYPE_NULL);
        assert_eq!(columns[2].column_type, TYPE_VAR_STRING);
        assert_eq!(columns[2].charset, 0x21);
        assert_eq!(columns[2].length, 3);
        assert_eq!(columns[2].decimals, 0x27);
        assert!(is_eof(&packets[5].payload));
        let row = text_row(&packets[6].payload, 3).unwrap();
        assert_eq!(row, [Some(&b"1"[..]), None, Some(&b"x"[..])]);
        assert_eq!(eof_status(&packets[7].payload), Some(2));
    }

    fn sample_column() -> ColumnDefinition {
        ColumnDefinition {
            schema: "shop".to_owned(),
            table: "c".to_owned(),
            org_table: "customers".to_owned(),
            name: "card".to_owned(),
            org_name: "card_number".to_owned(),
            charset: 45,
            length: 80,
            column_type: TYPE_VAR_STRING,
            flags: 0,
            decimals: 0,
        }
    }

    #[test]
    fn column_definitions_round_trip_and_truncations_are_errors() {
        let column = sample_column();
        let encoded = column.encode();
        assert_eq!(parse_column_definition(&encoded).unwrap(), column);
        for cut in 0..encoded.len() - 2 {
            assert!(
                parse_column_definition(&encoded[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut field_list = encoded.clone();
        put_lenenc_bytes(&mut field_list, b"default");
        assert_eq!(parse_column_definition(&field_list).unwrap(), column);
    }

    fn with_extended_metadata(column: &ColumnDefinition, metadata: &[u8]) -> Vec<u8> {
        let encoded = column.encode();
        let names_end = encoded.len() - 13;
        let mut out = encoded[..names_end].to_vec();
        put_lenenc_bytes(&mut out, metadata);
        out.extend_from_slice(&encoded[names_end..]);
        out
    }

    #[test]
    fn mariadb_extended_metadata_is_skipped() {
        let column = ColumnDefinition {
            column_type: TYPE_BLOB,
            ..sample_column()
        };
        let json = with_extended_metadata(&column, b"\x01\x04json");
        assert_eq!(parse_column_definition(&json).unwrap(), column);
        let linestring = with_extended_metadata(&column, b"\x00\x0alinestring");
        assert_eq!(parse_column_definition(&linestring).unwrap(), column);
        let none = with_extended_metadata(&column, b"");
        assert_eq!(parse_column_definition(&none).unwrap(), column);
        let unknown = with_extended_metadata(&column, b"\x07\x01x");
        assert!(parse_column_definition(&unknown).is_err());
    }

    #[test]
    fn text_rows_round_trip() {
        let long = vec![b'z'; 300];
        let cells: Vec<Option<&[u8]>> = vec![
            Some(b"42"),
            None,
            Some(b""),
            Some(b"-1.5e3"),
            Some(b"2024-02-29 12:00:00"),
            Some(&long),
        ];
        let encoded = encode_text_row(&cells);
        assert_eq!(text_row(&encoded, cells.len()).unwrap(), cells);
        for cut in 0..encoded.len() {
            assert!(
                text_row(&encoded[..cut], cells.len()).is_err(),
                "cut at {cut}"
            );
        }
        assert!(
            text_row(&encoded, cells.len() - 1).is_err(),
            "cells left over"
        );
        assert!(text_row(&encoded, cells.len() + 1).is_err());
        assert!(text_row(b"", 0).unwrap().is_empty());
    }

    /// One value of every column type, as binary_row returns them.
    fn one_of_every_type() -> (Vec<u8>, Vec<Option<Vec<u8>>>) {
        let cells: Vec<(u8, Option<Vec<u8>>)> = vec![
            (TYPE_DECIMAL, Some(b"12.50".to_vec())),
            (TYPE_TINY, Some(vec![0xff])),
            (TYPE_SHORT, Some(vec![0x34, 0x12])),
            (TYPE_LONG, Some(vec![1, 2, 3, 4])),
            (TYPE_FLOAT, Some(1.5f32.to_le_bytes().to_vec())),
            (TYPE_DOUBLE, Some(2.25f64.to_le_bytes().to_vec())),
            (TYPE_NULL, None),
            (TYPE_TIMESTAMP, Some(vec![0xe8, 0x07, 2, 29, 13, 14, 15])),
            (TYPE_LONGLONG, Some(u64::MAX.to_le_bytes().to_vec())),
            (TYPE_INT24, Some(vec![0xff, 0xff, 0x7f, 0])),
            (TYPE_DATE, Some(vec![0xe8, 0x07, 2, 29])),
            (
                TYPE_TIME,
                Some(vec![1, 1, 0, 0, 0, 2, 3, 4, 0x40, 0xe2, 1, 0]),
            ),
            (TYPE_DATETIME, Some(vec![])),
            (TYPE_YEAR, Some(vec![0xe8, 0x07])),
            (TYPE_NEWDATE, Some(b"odd".to_vec())),
            (TYPE_VARCHAR, Some(b"varchar".to_vec())),
            (TYPE_BIT, Some(vec![0x01, 0x00])),
            (TYPE_JSON, Some(br#"{"a":1}"#.to_vec())),
            (TYPE_NEWDECIMAL, Some(b"-0.001".to_vec())),
            (TYPE_ENUM, Some(b"red".to_vec())),
            (TYPE_SET, Some(b"a,b".to_vec())),
            (TYPE_TINY_BLOB, Some(vec![0; 3])),
            (TYPE_MEDIUM_BLOB, Some(vec![1; 300])),
            (TYPE_LONG_BLOB, Some(vec![2; 70_000])),
            (TYPE_BLOB, Some(vec![])),
            (TYPE_VAR_STRING, Some("héllo".as_bytes().to_vec())),
            (TYPE_STRING, None),
            (TYPE_GEOMETRY, Some(vec![0, 0, 0, 0, 1, 1, 0, 0, 0])),
        ];
        cells.into_iter().unzip()
    }

    #[test]
    fn binary_rows_of_every_type_round_trip() {
        let (types, owned) = one_of_every_type();
        let cells: Vec<Option<&[u8]>> = owned.iter().map(Option::as_deref).collect();
        let encoded = encode_binary_row(&cells, &types);
        assert_eq!(encoded[0], 0);
        assert_eq!(binary_row(&encoded, &types).unwrap(), cells);
        for cut in 0..encoded.len() {
            assert!(binary_row(&encoded[..cut], &types).is_err(), "cut at {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(binary_row(&longer, &types).is_err());
        assert!(binary_row(&[0x01, 0x00], &[TYPE_TINY]).is_err());
    }

    #[test]
    fn binary_rows_match_the_documented_layout() {
        // The documentation's ProtocolBinary::ResultsetRow example: a NULL bitmap whose bits start at
        // 2, then a length-encoded string and a LONGLONG.
        let documented = unhex("00 00 03 66 6f 6f 01 00 00 00 00 00 00 00");
        let types = [TYPE_VAR_STRING, TYPE_LONGLONG];
        let row = binary_row(&documented, &types).unwrap();
        assert_eq!(
            row,
            [Some(&b"foo"[..]), Some(&[1, 0, 0, 0, 0, 0, 0, 0][..])]
        );
        assert_eq!(encode_binary_row(&row, &types), documented);
        let nulls = encode_binary_row(&[None, Some(b"x"), None], &[TYPE_TINY; 3]);
        assert_eq!(nulls, [0x00, 0b0001_0100, b'x']);
    }

    #[test]
    fn prepare_answers_parse_with_or_without_warnings() {
        // The COM_STMT_PREPARE_OK example of the documentation: statement 1, one column, two params.
        let documented = unhex("00 01 00 00 00 01 00 02 00 00 00 00");
        assert_eq!(
            parse_prepare_ok(&documented).unwrap(),
            PrepareOk {
                statement_id: 1,
                columns: 1,
                params: 2,
                warnings: 0
            }
        );
        assert_eq!(parse_prepare_ok(&documented[..10]).unwrap().params, 2);
        for cut in 0..10 {
            assert!(
                parse_prepare_ok(&documented[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(parse_prepare_ok(&err_packet(1, "HY000", "x")).is_err());
    }

    /// COM_STMT_EXECUTE of statement 1 with three parameters: a NULL, a VAR_STRING and an unsigned
    /// LONGLONG, with new types.
    fn execute_with_new_types() -> Vec<u8> {
        unhex(
            "17 01000000 00 01000000
             01 01
             0600 fd00 0880
             03 666f6f ffffffffffffffff",
        )
    }

    #[test]
    fn executes_with_new_types_parse() {
        let payload = execute_with_new_types();
        let execute = parse_execute(&payload, 3, &[], &[]).unwrap();
        assert_eq!(execute.statement_id, 1);
        assert_eq!(execute.flags, 0);
        assert!(execute.new_types);
        assert_eq!(
            execute.types,
            [
                (TYPE_NULL, false),
                (TYPE_VAR_STRING, false),
                (TYPE_LONGLONG, true)
            ]
        );
        assert_eq!(
            execute.params,
            [None, Some(&b"foo"[..]), Some(&[0xff; 8][..])]
        );
        for cut in 0..payload.len() {
            assert!(
                parse_execute(&payload[..cut], 3, &[], &[]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(parse_execute(&longer, 3, &[], &[]).is_err());
        assert!(parse_execute(&payload, 4, &[], &[]).is_err());
    }

    #[test]
    fn executes_reuse_previous_types_and_skip_long_data() {
        let previous = [(TYPE_LONG, false), (TYPE_BLOB, false), (TYPE_TINY, true)];
        let payload = unhex("17 07000000 01 01000000 00 00 2a000000 ff");
        let execute = parse_execute(&payload, 3, &previous, &[false, true]).unwrap();
        assert!(!execute.new_types);
        assert_eq!(execute.flags, 1);
        assert_eq!(execute.types, previous);
        assert_eq!(
            execute.params,
            [Some(&[42, 0, 0, 0][..]), Some(&[][..]), Some(&[0xff][..])]
        );
        let error = parse_execute(&payload, 3, &[], &[false, true]).unwrap_err();
        assert!(error.0.contains("no parameter types"), "{error}");
    }

    #[test]
    fn executes_without_parameters_end_after_the_iteration_count() {
        let payload = unhex("17 02000000 00 01000000");
        let execute = parse_execute(&payload, 0, &[], &[]).unwrap();
        assert!(execute.params.is_empty() && execute.types.is_empty());
        assert!(parse_execute(&unhex("17 02000000 00 01000000 00"), 0, &[], &[]).is_err());
        assert!(parse_execute(&unhex("03 02000000 00 01000000"), 0, &[], &[]).is_err());
    }

    #[test]
    fn long_data_and_infile_requests_parse() {
        let payload = unhex("18 05000000 0100 616263");
        assert_eq!(parse_send_long_data(&payload).unwrap(), (5, 1, &b"abc"[..]));
        assert_eq!(parse_send_long_data(&payload[..7]).unwrap().2, b"");
        for cut in 0..7 {
            assert!(
                parse_send_long_data(&payload[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_local_infile_request(b"\xfb/etc/passwd"),
            Some(&b"/etc/passwd"[..])
        );
        assert_eq!(parse_local_infile_request(b"\x01\x02"), None);
        assert_eq!(parse_local_infile_request(b""), None);
    }
}
