//! SFTP version 3, as OpenSSH speaks it (draft-ietf-secsh-filexfer-02), read passively from both
//! directions of an `sftp` subsystem channel: which files were opened, the content that passed for
//! each (its size and SHA-256 in file order), how each ended, and the changes to the remote tree
//! the client asked for.
//!
//! It owns the sftp bytes only: no channel, no socket, no journal, no policy. The relay feeds it
//! each direction's bytes as they pass, cut anywhere, and records what
//! [`SftpTracker::take_records`] reports; it must not change, hold back or answer a packet itself.
//!
//! Written by hand because no maintained crate parses both directions of an sftp stream passively
//! while bounding memory: the sftp crates are clients or servers that own the exchange and its
//! files, and none pairs a server's answers with requests it did not send. Every length is checked
//! against the bytes present and against [`SftpLimits`] before anything is kept, arithmetic on wire
//! numbers is checked, and bad input is an [`SftpError`], never a panic. Once a tracker has
//! answered an error it answers the same error to every later feed: the files it would report are
//! no longer known, so the relay should end the channel.
//!
//! How a file is followed: an `SSH_FXP_OPEN` is an upload when its flags ask for writing (`WRITE`,
//! `APPEND`, `CREAT` or `TRUNC`), else a download. Its `SSH_FXP_HANDLE` answer (paired by request
//! id) opens the file; uploads count the data of `SSH_FXP_WRITE` requests as they pass, downloads
//! the data of the `SSH_FXP_DATA` answers to `SSH_FXP_READ`s (a file opened for both, as sshfs
//! opens one, is an upload, and what is read from it is not counted). The content is hashed in
//! offset order: what continues the hashed prefix is hashed at once, what arrives beyond a gap
//! waits (at most [`SftpLimits::max_pending_bytes`] across all files) until the gap is filled, as
//! when OpenSSH's client asks again for the rest of a short read. A file whose content cannot be
//! hashed in order (writes that overlap, too much waiting, a gap left at the end as a resumed
//! transfer leaves, a server-side copy into it) has no hash and a note saying why. A file opened
//! with `APPEND` is hashed in the order its writes arrive, which is the order they are appended.
//! The transfer is reported when the answer to its `SSH_FXP_CLOSE` arrives: complete when the close
//! and every read and write succeeded, failed with the server's message otherwise; files still open
//! when the channel ends are incomplete. An open the server refuses reports nothing.
//!
//! Operations are reported when their request passes, before the server has answered: `remove`,
//! `rename` (and `posix-rename@openssh.com`), `mkdir`, `rmdir`, `setstat` (and
//! `lsetstat@openssh.com`), `symlink`, `hardlink@openssh.com` and `copy-data`. OpenSSH sends
//! `SSH_FXP_SYMLINK`'s paths in the reverse of the draft's order (its `PROTOCOL` file, section
//! 4.1), the target first and the link second; they are read as OpenSSH's server reads them.
//! Everything else (`STAT`, `OPENDIR`, `READDIR`, `REALPATH`, `FSETSTAT`, other extensions) passes
//! untouched.
//!
//! An answer whose id no request is waiting for is ignored: a server may only send one in breach of
//! the protocol, and the client ignores or refuses it.

use std::collections::{BTreeMap, HashMap};

use proctor_net::cursor::Cursor;
use sha2::{Digest, Sha256};

use crate::transfer::{
    Direction, FileOperation, FileRecord, FileTransfer, COMPLETE, FAILED, INCOMPLETE,
};

const PROTOCOL: &str = "sftp";
/// The version OpenSSH speaks, the only one whose packets are read here.
const VERSION: u32 = 3;

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_VERSION: u8 = 2;
const SSH_FXP_OPEN: u8 = 3;
const SSH_FXP_CLOSE: u8 = 4;
const SSH_FXP_READ: u8 = 5;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_SETSTAT: u8 = 9;
const SSH_FXP_REMOVE: u8 = 13;
const SSH_FXP_MKDIR: u8 = 14;
const SSH_FXP_RMDIR: u8 = 15;
const SSH_FXP_RENAME: u8 = 18;
const SSH_FXP_SYMLINK: u8 = 20;
const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_DATA: u8 = 103;
const SSH_FXP_EXTENDED: u8 = 200;

const SSH_FXF_WRITE: u32 = 0x02;
const SSH_FXF_APPEND: u32 = 0x04;
const SSH_FXF_CREAT: u32 = 0x08;
const SSH_FXF_TRUNC: u32 = 0x10;

const SSH_FX_OK: u32 = 0;
const SSH_FX_EOF: u32 = 1;

/// Bytes of a packet's length field.
const LENGTH_FIELD: usize = 4;
/// The longest handle a server may give (the draft, section 3): a handle longer than this is
/// refused, so open files cost little to remember.
const MAX_HANDLE: usize = 256;
/// The longest path read: Linux's `PATH_MAX`, past which a server cannot open anything. It bounds
/// what an open file and a waiting `SSH_FXP_OPEN` keep.
const MAX_PATH: usize = 4096;
/// The longest server message kept in a note.
const MAX_MESSAGE: usize = 1024;

/// What a tracker may hold. The defaults suit OpenSSH on both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftpLimits {
    /// The longest packet, counted as its length field counts it (type, id and fields). OpenSSH's
    /// client and server refuse more than 256 KiB (`SFTP_MAX_MSG_LENGTH`), the default.
    pub max_packet: usize,
    /// Files open at once, those whose close awaits its answer included.
    pub max_open_files: usize,
    /// Bytes of content held for hashing because they arrived beyond a gap, across all open files.
    /// A file whose waiting content would pass it is not hashed. Default 8 MiB.
    pub max_pending_bytes: usize,
    /// Requests awaiting their answer. OpenSSH's client keeps at most 64 by default (`sftp -R`).
    pub max_requests: usize,
}

impl Default for SftpLimits {
    fn default() -> Self {
        Self {
            max_packet: 256 * 1024,
            max_open_files: 1024,
            max_pending_bytes: 8 * 1024 * 1024,
            max_requests: 4096,
        }
    }
}

/// Bytes that are not an sftp version 3 stream, or that pass a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sftp: {0}")]
pub struct SftpError(pub String);

fn bad(message: impl Into<String>) -> SftpError {
    SftpError(message.into())
}

/// Follows one sftp channel. See the module's documentation.
pub struct SftpTracker {
    client: Framer,
    server: Framer,
    session: Session,
    failed: Option<SftpError>,
}

impl SftpTracker {
    pub fn new(limits: SftpLimits) -> Self {
        Self {
            client: Framer::default(),
            server: Framer::default(),
            session: Session::new(limits),
            failed: None,
        }
    }

    /// Bytes from the client (requests), in the order they pass. Feed them before forwarding
    /// them, so that the operations they ask for are recorded first.
    pub fn client_bytes(&mut self, data: &[u8]) -> Result<(), SftpError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let max_packet = self.session.limits.max_packet;
        let session = &mut self.session;
        let result = self
            .client
            .feed(data, max_packet, |packet| session.on_request(packet));
        self.failed = result.as_ref().err().cloned();
        result
    }

    /// Bytes from the server (answers), in the order they pass.
    pub fn server_bytes(&mut self, data: &[u8]) -> Result<(), SftpError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let max_packet = self.session.limits.max_packet;
        let session = &mut self.session;
        let result = self
            .server
            .feed(data, max_packet, |packet| session.on_answer(packet));
        self.failed = result.as_ref().err().cloned();
        result
    }

    /// The transfers and operations learned of since the last call, in that order.
    pub fn take_records(&mut self) -> Vec<FileRecord> {
        std::mem::take(&mut self.session.records)
    }

    /// The channel ended: what was not taken yet, then every file still open, as incomplete.
    pub fn finish(self) -> Vec<FileRecord> {
        let mut session = self.session;
        let files = std::mem::take(&mut session.files);
        for file in files.into_values() {
            let transfer = file.into_transfer(INCOMPLETE, &mut session.budget);
            session.records.push(FileRecord::Transfer(transfer));
        }
        session.records
    }
}

/// One direction's bytes cut into packets. It holds at most one packet: the one a feed ended in.
#[derive(Default)]
struct Framer {
    partial: Vec<u8>,
}

impl Framer {
    fn feed(
        &mut self,
        mut data: &[u8],
        max_packet: usize,
        mut packet: impl FnMut(&[u8]) -> Result<(), SftpError>,
    ) -> Result<(), SftpError> {
        if !self.partial.is_empty() {
            let head = LENGTH_FIELD
                .saturating_sub(self.partial.len())
                .min(data.len());
            self.partial.extend_from_slice(&data[..head]);
            data = &data[head..];
            let Some(&length) = self.partial.first_chunk::<LENGTH_FIELD>() else {
                return Ok(());
            };
            let whole = packet_length(length, max_packet)?.saturating_add(LENGTH_FIELD);
            let body = whole.saturating_sub(self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..body]);
            data = &data[body..];
            if self.partial.len() < whole {
                return Ok(());
            }
            let mut complete = std::mem::take(&mut self.partial);
            packet(&complete[LENGTH_FIELD..])?;
            complete.clear();
            self.partial = complete;
        }
        while let Some(&length) = data.first_chunk::<LENGTH_FIELD>() {
            let whole = packet_length(length, max_packet)?.saturating_add(LENGTH_FIELD);
            let Some(body) = data.get(LENGTH_FIELD..whole) else {
                break;
            };
            packet(body)?;
            data = &data[whole..];
        }
        self.partial.extend_from_slice(data);
        Ok(())
    }
}

/// A packet's length field, checked: at least the type byte, at most the limit.
fn packet_length(field: [u8; LENGTH_FIELD], max_packet: usize) -> Result<usize, SftpError> {
    let length = u32::from_be_bytes(field);
    match usize::try_from(length) {
        Ok(0) => Err(bad("a packet of length 0")),
        Ok(length) if length <= max_packet => Ok(length),
        _ => Err(bad(format!(
            "a packet of {length} bytes, more than the limit of {max_packet}"
        ))),
    }
}

fn packet_name(kind: u8) -> &'static str {
    match kind {
        SSH_FXP_INIT => "SSH_FXP_INIT",
        SSH_FXP_VERSION => "SSH_FXP_VERSION",
        SSH_FXP_OPEN => "SSH_FXP_OPEN",
        SSH_FXP_CLOSE => "SSH_FXP_CLOSE",
        SSH_FXP_READ => "SSH_FXP_READ",
        SSH_FXP_WRITE => "SSH_FXP_WRITE",
        SSH_FXP_SETSTAT => "SSH_FXP_SETSTAT",
        SSH_FXP_REMOVE => "SSH_FXP_REMOVE",
        SSH_FXP_MKDIR => "SSH_FXP_MKDIR",
        SSH_FXP_RMDIR => "SSH_FXP_RMDIR",
        SSH_FXP_RENAME => "SSH_FXP_RENAME",
        SSH_FXP_SYMLINK => "SSH_FXP_SYMLINK",
        SSH_FXP_STATUS => "SSH_FXP_STATUS",
        SSH_FXP_HANDLE => "SSH_FXP_HANDLE",
        SSH_FXP_DATA => "SSH_FXP_DATA",
        SSH_FXP_EXTENDED => "SSH_FXP_EXTENDED",
        _ => "a packet",
    }
}

/// A cursor over one packet's fields, naming the packet in its errors.
struct Reader<'a> {
    cursor: Cursor<'a>,
    packet: &'static str,
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8], kind: u8) -> Self {
        Self {
            cursor: Cursor::new(body),
            packet: packet_name(kind),
        }
    }

    fn ends_early(&self) -> SftpError {
        bad(format!("{} ends early", self.packet))
    }

    fn u32(&mut self) -> Result<u32, SftpError> {
        let bytes = self.cursor.array().ok_or_else(|| self.ends_early())?;
        Ok(u32::from_be_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, SftpError> {
        let bytes = self.cursor.array().ok_or_else(|| self.ends_early())?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn string(&mut self) -> Result<&'a [u8], SftpError> {
        let length = usize::try_from(self.u32()?).map_err(|_| self.ends_early())?;
        self.cursor.bytes(length).ok_or_else(|| self.ends_early())
    }

    fn path(&mut self) -> Result<String, SftpError> {
        let path = self.string()?;
        if path.len() > MAX_PATH {
            return Err(bad(format!(
                "{} names a path of {} bytes, more than {MAX_PATH}",
                self.packet,
                path.len()
            )));
        }
        Ok(String::from_utf8_lossy(path).into_owned())
    }

    fn handle(&mut self) -> Result<&'a [u8], SftpError> {
        let handle = self.string()?;
        if handle.len() > MAX_HANDLE {
            return Err(bad(format!(
                "{} carries a handle of {} bytes, more than {MAX_HANDLE}",
                self.packet,
                handle.len()
            )));
        }
        Ok(handle)
    }
}

/// A request awaiting its answer, and what the answer means for it.
enum Request {
    Open {
        path: String,
        direction: Direction,
        append: bool,
    },
    Read {
        file: u64,
        offset: u64,
    },
    Write {
        file: u64,
    },
    Close {
        file: u64,
    },
    /// Any other request: its id is taken until the answer comes.
    Other,
}

impl Request {
    fn packet(&self) -> &'static str {
        match self {
            Request::Open { .. } => "SSH_FXP_OPEN",
            Request::Read { .. } => "SSH_FXP_READ",
            Request::Write { .. } => "SSH_FXP_WRITE",
            Request::Close { .. } => "SSH_FXP_CLOSE",
            Request::Other => "a request",
        }
    }
}

/// An `SSH_FXP_STATUS` answer.
struct Status {
    code: u32,
    message: String,
}

impl Status {
    fn read(reader: &mut Reader) -> Result<Self, SftpError> {
        let code = reader.u32()?;
        let sent = reader
            .string()
            .ok()
            .filter(|message| !message.is_empty())
            .map(|message| {
                let kept = &message[..message.len().min(MAX_MESSAGE)];
                String::from_utf8_lossy(kept).into_owned()
            });
        let message = sent.unwrap_or_else(|| status_name(code).to_owned());
        Ok(Self { code, message })
    }
}

fn status_name(code: u32) -> &'static str {
    match code {
        SSH_FX_OK => "ok",
        SSH_FX_EOF => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "unknown error",
    }
}

/// Out-of-order content held across all files, against its limit.
struct Budget {
    held: usize,
    max: usize,
}

impl Budget {
    fn take(&mut self, bytes: usize) -> bool {
        if bytes > self.max.saturating_sub(self.held) {
            return false;
        }
        self.held += bytes;
        true
    }

    fn give(&mut self, bytes: usize) {
        self.held = self.held.saturating_sub(bytes);
    }
}

/// Everything but the framing: requests awaiting answers, open files, what to report.
struct Session {
    limits: SftpLimits,
    initialized: bool,
    version: Option<u32>,
    requests: HashMap<u32, Request>,
    handles: HashMap<Vec<u8>, u64>,
    /// Open files by the order they were opened in.
    files: BTreeMap<u64, OpenFile>,
    next_file: u64,
    budget: Budget,
    records: Vec<FileRecord>,
}

impl Session {
    fn new(limits: SftpLimits) -> Self {
        Self {
            limits,
            initialized: false,
            version: None,
            requests: HashMap::new(),
            handles: HashMap::new(),
            files: BTreeMap::new(),
            next_file: 0,
            budget: Budget {
                held: 0,
                max: limits.max_pending_bytes,
            },
            records: Vec::new(),
        }
    }

    fn on_request(&mut self, packet: &[u8]) -> Result<(), SftpError> {
        let Some((&kind, body)) = packet.split_first() else {
            return Err(bad("a packet of length 0"));
        };
        if !self.initialized {
            if kind != SSH_FXP_INIT {
                return Err(bad(format!(
                    "the client began with {} rather than SSH_FXP_INIT",
                    packet_name(kind)
                )));
            }
            self.initialized = true;
            return Ok(());
        }
        if kind == SSH_FXP_INIT {
            return Err(bad("a second SSH_FXP_INIT"));
        }
        let mut reader = Reader::new(body, kind);
        let id = reader.u32()?;
        let request = match kind {
            SSH_FXP_OPEN => {
                let path = reader.path()?;
                let flags = reader.u32()?;
                let writes = SSH_FXF_WRITE | SSH_FXF_APPEND | SSH_FXF_CREAT | SSH_FXF_TRUNC;
                let direction = if flags & writes != 0 {
                    Direction::Upload
                } else {
                    Direction::Download
                };
                Request::Open {
                    path,
                    direction,
                    append: flags & SSH_FXF_APPEND != 0,
                }
            }
            SSH_FXP_CLOSE => {
                let handle = reader.handle()?;
                match self.handles.remove(handle) {
                    Some(file) => Request::Close { file },
                    None => Request::Other,
                }
            }
            SSH_FXP_READ => {
                let handle = reader.handle()?;
                let offset = reader.u64()?;
                match self.file_for(handle, Direction::Download) {
                    Some(file) => Request::Read { file, offset },
                    None => Request::Other,
                }
            }
            SSH_FXP_WRITE => {
                let handle = reader.handle()?;
                let offset = reader.u64()?;
                let data = reader.string()?;
                match self.file_for(handle, Direction::Upload) {
                    Some(file) => {
                        if let Some(open) = self.files.get_mut(&file) {
                            open.content(offset, data, &mut self.budget);
                        }
                        Request::Write { file }
                    }
                    None => Request::Other,
                }
            }
            SSH_FXP_REMOVE => {
                let path = reader.path()?;
                self.operation("remove", path, None)
            }
            SSH_FXP_RENAME => {
                let from = reader.path()?;
                let to = reader.path()?;
                self.operation("rename", from, Some(to))
            }
            SSH_FXP_MKDIR => {
                let path = reader.path()?;
                self.operation("mkdir", path, None)
            }
            SSH_FXP_RMDIR => {
                let path = reader.path()?;
                self.operation("rmdir", path, None)
            }
            SSH_FXP_SETSTAT => {
                let path = reader.path()?;
                self.operation("setstat", path, None)
            }
            SSH_FXP_SYMLINK => {
                let target = reader.path()?;
                let link = reader.path()?;
                self.operation("symlink", link, Some(target))
            }
            SSH_FXP_EXTENDED => self.on_extended(&mut reader)?,
            _ => Request::Other,
        };
        self.expect(id, request)
    }

    fn on_extended(&mut self, reader: &mut Reader) -> Result<Request, SftpError> {
        match reader.string()? {
            b"posix-rename@openssh.com" => {
                let from = reader.path()?;
                let to = reader.path()?;
                Ok(self.operation("rename", from, Some(to)))
            }
            b"hardlink@openssh.com" => {
                let existing = reader.path()?;
                let link = reader.path()?;
                Ok(self.operation("hardlink", link, Some(existing)))
            }
            b"lsetstat@openssh.com" => {
                let path = reader.path()?;
                Ok(self.operation("setstat", path, None))
            }
            b"copy-data" => {
                let source = reader.handle()?;
                reader.u64()?;
                reader.u64()?;
                let destination = reader.handle()?;
                reader.u64()?;
                self.copy(source, destination);
                Ok(Request::Other)
            }
            _ => Ok(Request::Other),
        }
    }

    /// A server-side copy between two open files: reported, and the destination's content is no
    /// longer known. A copy naming a handle that is not an open file is refused by the server.
    fn copy(&mut self, source: &[u8], destination: &[u8]) {
        let Some(from) = self
            .handles
            .get(source)
            .and_then(|file| self.files.get(file))
            .map(|file| file.path.clone())
        else {
            return;
        };
        let Some(to) = self
            .handles
            .get(destination)
            .and_then(|file| self.files.get_mut(file))
        else {
            return;
        };
        let note = format!("not hashed: written by a server-side copy from {from}");
        to.unhash(note, &mut self.budget);
        let to = to.path.clone();
        self.operation("copy", from, Some(to));
    }

    fn operation(&mut self, op: &'static str, path: String, to: Option<String>) -> Request {
        self.records
            .push(FileRecord::Operation(FileOperation { op, path, to }));
        Request::Other
    }

    /// The open file a handle names, if it goes the given way.
    fn file_for(&self, handle: &[u8], direction: Direction) -> Option<u64> {
        let file = *self.handles.get(handle)?;
        (self.files.get(&file)?.direction == direction).then_some(file)
    }

    fn expect(&mut self, id: u32, request: Request) -> Result<(), SftpError> {
        if self.requests.contains_key(&id) {
            return Err(bad(format!("request id {id} used again before its answer")));
        }
        if self.requests.len() >= self.limits.max_requests {
            return Err(bad(format!(
                "more than {} requests awaiting an answer",
                self.limits.max_requests
            )));
        }
        self.requests.insert(id, request);
        Ok(())
    }

    fn on_answer(&mut self, packet: &[u8]) -> Result<(), SftpError> {
        let Some((&kind, body)) = packet.split_first() else {
            return Err(bad("a packet of length 0"));
        };
        let mut reader = Reader::new(body, kind);
        if kind == SSH_FXP_VERSION {
            return self.on_version(&mut reader);
        }
        if self.version.is_none() {
            return Err(bad(format!(
                "the server sent {} before SSH_FXP_VERSION",
                packet_name(kind)
            )));
        }
        let id = reader.u32()?;
        let Some(request) = self.requests.remove(&id) else {
            return Ok(());
        };
        match (request, kind) {
            (Request::Other, _) | (Request::Open { .. }, SSH_FXP_STATUS) => {}
            (
                Request::Open {
                    path,
                    direction,
                    append,
                },
                SSH_FXP_HANDLE,
            ) => {
                let handle = reader.handle()?;
                self.open(handle, path, direction, append)?;
            }
            (Request::Read { file, offset }, SSH_FXP_DATA) => {
                let data = reader.string()?;
                if let Some(open) = self.files.get_mut(&file) {
                    open.content(offset, data, &mut self.budget);
                }
            }
            (Request::Read { file, .. }, SSH_FXP_STATUS) => {
                let status = Status::read(&mut reader)?;
                if status.code != SSH_FX_OK && status.code != SSH_FX_EOF {
                    self.fail(file, format!("read failed: {}", status.message));
                }
            }
            (Request::Write { file }, SSH_FXP_STATUS) => {
                let status = Status::read(&mut reader)?;
                if status.code != SSH_FX_OK {
                    self.fail(file, format!("write failed: {}", status.message));
                }
            }
            (Request::Close { file }, SSH_FXP_STATUS) => {
                let status = Status::read(&mut reader)?;
                if status.code != SSH_FX_OK {
                    self.fail(file, format!("close failed: {}", status.message));
                }
                if let Some(open) = self.files.remove(&file) {
                    let outcome = if open.failure.is_none() {
                        COMPLETE
                    } else {
                        FAILED
                    };
                    let transfer = open.into_transfer(outcome, &mut self.budget);
                    self.records.push(FileRecord::Transfer(transfer));
                }
            }
            (request, kind) => {
                return Err(bad(format!(
                    "the server answered {} with {}",
                    request.packet(),
                    packet_name(kind)
                )));
            }
        }
        Ok(())
    }

    fn on_version(&mut self, reader: &mut Reader) -> Result<(), SftpError> {
        if !self.initialized {
            return Err(bad(
                "the server sent SSH_FXP_VERSION before the client's SSH_FXP_INIT",
            ));
        }
        if self.version.is_some() {
            return Err(bad("a second SSH_FXP_VERSION"));
        }
        let version = reader.u32()?;
        if version != VERSION {
            return Err(bad(format!(
                "the server speaks version {version}; only version {VERSION} is read"
            )));
        }
        self.version = Some(version);
        Ok(())
    }

    fn open(
        &mut self,
        handle: &[u8],
        path: String,
        direction: Direction,
        append: bool,
    ) -> Result<(), SftpError> {
        if self.handles.contains_key(handle) {
            return Err(bad("the server gave out a handle that is still open"));
        }
        if self.files.len() >= self.limits.max_open_files {
            return Err(bad(format!(
                "more than {} files open at once",
                self.limits.max_open_files
            )));
        }
        let file = self.next_file;
        self.next_file += 1;
        self.files
            .insert(file, OpenFile::new(path, direction, append));
        self.handles.insert(handle.to_vec(), file);
        Ok(())
    }

    /// The first error of a file is the one its transfer reports.
    fn fail(&mut self, file: u64, message: String) {
        if let Some(open) = self.files.get_mut(&file) {
            open.failure.get_or_insert(message);
        }
    }
}

/// One open file: what passed of it and how it went.
struct OpenFile {
    path: String,
    direction: Direction,
    size: u64,
    content: Content,
    failure: Option<String>,
}

enum Content {
    InOrder(InOrder),
    /// Opened with `APPEND`: hashed in the order the writes arrive.
    Appended(Sha256),
    /// Why the content cannot be hashed.
    Unhashed(String),
}

impl OpenFile {
    fn new(path: String, direction: Direction, append: bool) -> Self {
        let content = if append {
            Content::Appended(Sha256::new())
        } else {
            Content::InOrder(InOrder::default())
        };
        Self {
            path,
            direction,
            size: 0,
            content,
            failure: None,
        }
    }

    /// Content at `offset` passed (a write's data, or a read's answer).
    fn content(&mut self, offset: u64, data: &[u8], budget: &mut Budget) {
        let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.size = self.size.saturating_add(length);
        let overlap_breaks = self.direction == Direction::Upload;
        let unhashed = match &mut self.content {
            Content::InOrder(order) => match order.add(offset, data, overlap_breaks, budget) {
                Ok(()) => return,
                Err(note) => note,
            },
            Content::Appended(sha) => {
                sha.update(data);
                return;
            }
            Content::Unhashed(_) => return,
        };
        self.unhash(unhashed, budget);
    }

    fn unhash(&mut self, note: String, budget: &mut Budget) {
        if let Content::Unhashed(_) = self.content {
            return;
        }
        if let Content::InOrder(order) =
            std::mem::replace(&mut self.content, Content::Unhashed(note))
        {
            budget.give(order.held);
        }
    }

    fn into_transfer(self, outcome: &'static str, budget: &mut Budget) -> FileTransfer {
        let (sha256, about_hash) = match self.content {
            Content::InOrder(order) => {
                budget.give(order.held);
                match order.ahead.first_key_value() {
                    None => (Some(hex::encode(order.sha.finalize())), None),
                    Some((&resumes, _)) => (
                        None,
                        Some(format!(
                            "not hashed: bytes {}..{resumes} did not pass (a resumed or partial \
                             transfer)",
                            order.next
                        )),
                    ),
                }
            }
            Content::Appended(sha) => (
                Some(hex::encode(sha.finalize())),
                Some("appended to the file: the hash covers the appended bytes".to_owned()),
            ),
            Content::Unhashed(note) => (None, Some(note)),
        };
        let note = match (self.failure, about_hash) {
            (Some(failure), Some(about_hash)) => Some(format!("{failure}; {about_hash}")),
            (failure, about_hash) => failure.or(about_hash),
        };
        FileTransfer {
            protocol: PROTOCOL,
            path: self.path,
            direction: self.direction,
            size: self.size,
            sha256,
            outcome,
            note,
        }
    }
}

/// Content hashed in offset order: `next` is where the hashed prefix ends; `ahead` holds what
/// arrived beyond it, by offset.
#[derive(Default)]
struct InOrder {
    sha: Sha256,
    next: u64,
    ahead: BTreeMap<u64, Vec<u8>>,
    held: usize,
}

const OVERLAP: &str = "not hashed: writes were not sequential (some overlapped)";

impl InOrder {
    /// Adds content at `offset`, or says why the file cannot be hashed. Content a download
    /// receives twice is hashed once; content an upload writes twice makes the file unhashable,
    /// as the second write may change it.
    fn add(
        &mut self,
        offset: u64,
        data: &[u8],
        overlap_breaks: bool,
        budget: &mut Budget,
    ) -> Result<(), String> {
        if data.is_empty() {
            return Ok(());
        }
        let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let Some(end) = offset.checked_add(length) else {
            return Err("not hashed: content past offset 2^64".to_owned());
        };
        if offset > self.next {
            return self.hold(offset, end, data, overlap_breaks, budget);
        }
        if overlap_breaks && offset < self.next {
            return Err(OVERLAP.to_owned());
        }
        self.extend(offset, data);
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (offset, chunk) = entry.remove_entry();
            self.held -= chunk.len();
            budget.give(chunk.len());
            if overlap_breaks && offset < self.next {
                return Err(OVERLAP.to_owned());
            }
            self.extend(offset, &chunk);
        }
        Ok(())
    }

    /// Hashes what of `data` (at `offset`, not beyond `next`) lies past the hashed prefix.
    fn extend(&mut self, offset: u64, data: &[u8]) {
        let seen = usize::try_from(self.next - offset).unwrap_or(usize::MAX);
        if let Some(fresh) = data.get(seen..).filter(|fresh| !fresh.is_empty()) {
            self.sha.update(fresh);
            self.next += u64::try_from(fresh.len()).unwrap_or(u64::MAX);
        }
    }

    fn hold(
        &mut self,
        offset: u64,
        end: u64,
        data: &[u8],
        overlap_breaks: bool,
        budget: &mut Budget,
    ) -> Result<(), String> {
        if overlap_breaks {
            let before = self
                .ahead
                .range(..offset)
                .next_back()
                .is_some_and(|(&start, chunk)| start.saturating_add(chunk.len() as u64) > offset);
            let after = self
                .ahead
                .range(offset..)
                .next()
                .is_some_and(|(&start, _)| start < end);
            if before || after {
                return Err(OVERLAP.to_owned());
            }
        }
        if self
            .ahead
            .get(&offset)
            .is_some_and(|held| held.len() >= data.len())
        {
            return Ok(());
        }
        if !budget.take(data.len()) {
            return Err(format!(
                "not hashed: more than {} bytes arrived beyond a gap (out of order, or a resumed \
                 transfer)",
                budget.max
            ));
        }
        self.held += data.len();
        if let Some(shorter) = self.ahead.insert(offset, data.to_vec()) {
            self.held -= shorter.len();
            budget.give(shorter.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH_FXP_STAT: u8 = 17;
    const SSH_FXP_OPENDIR: u8 = 11;
    const SSH_FXF_READ: u32 = 0x01;
    const UPLOAD: u32 = SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC;
    const PERMISSION_DENIED: u32 = 3;
    const FAILURE: u32 = 4;

    fn string(bytes: &[u8]) -> Vec<u8> {
        let mut field = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        field.extend_from_slice(bytes);
        field
    }

    fn packet(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = fields.concat();
        let mut packet = u32::try_from(body.len() + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        packet.push(kind);
        packet.extend_from_slice(&body);
        packet
    }

    fn init() -> Vec<u8> {
        packet(SSH_FXP_INIT, &[&3u32.to_be_bytes()])
    }

    fn version() -> Vec<u8> {
        packet(SSH_FXP_VERSION, &[&3u32.to_be_bytes()])
    }

    fn open(id: u32, path: &str, flags: u32) -> Vec<u8> {
        let attrs = 0u32.to_be_bytes();
        packet(
            SSH_FXP_OPEN,
            &[
                &id.to_be_bytes(),
                &string(path.as_bytes()),
                &flags.to_be_bytes(),
                &attrs,
            ],
        )
    }

    fn handle(id: u32, handle: &[u8]) -> Vec<u8> {
        packet(SSH_FXP_HANDLE, &[&id.to_be_bytes(), &string(handle)])
    }

    fn write(id: u32, handle: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
        packet(
            SSH_FXP_WRITE,
            &[
                &id.to_be_bytes(),
                &string(handle),
                &offset.to_be_bytes(),
                &string(data),
            ],
        )
    }

    fn read(id: u32, handle: &[u8], offset: u64, length: u32) -> Vec<u8> {
        packet(
            SSH_FXP_READ,
            &[
                &id.to_be_bytes(),
                &string(handle),
                &offset.to_be_bytes(),
                &length.to_be_bytes(),
            ],
        )
    }

    fn data(id: u32, data: &[u8]) -> Vec<u8> {
        packet(SSH_FXP_DATA, &[&id.to_be_bytes(), &string(data)])
    }

    fn close(id: u32, handle: &[u8]) -> Vec<u8> {
        packet(SSH_FXP_CLOSE, &[&id.to_be_bytes(), &string(handle)])
    }

    fn status(id: u32, code: u32, message: &str) -> Vec<u8> {
        packet(
            SSH_FXP_STATUS,
            &[
                &id.to_be_bytes(),
                &code.to_be_bytes(),
                &string(message.as_bytes()),
                &string(b""),
            ],
        )
    }

    fn ok(id: u32) -> Vec<u8> {
        status(id, SSH_FX_OK, "")
    }

    fn with_paths(kind: u8, id: u32, paths: &[&str]) -> Vec<u8> {
        let mut fields = vec![id.to_be_bytes().to_vec()];
        fields.extend(paths.iter().map(|path| string(path.as_bytes())));
        let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        packet(kind, &fields)
    }

    fn extended(id: u32, name: &str, fields: &[&[u8]]) -> Vec<u8> {
        let mut all: Vec<&[u8]> = Vec::new();
        let id = id.to_be_bytes();
        let name = string(name.as_bytes());
        all.push(&id);
        all.push(&name);
        all.extend_from_slice(fields);
        packet(SSH_FXP_EXTENDED, &all)
    }

    fn sha256(bytes: &[u8]) -> Option<String> {
        Some(hex::encode(Sha256::digest(bytes)))
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Side {
        Client,
        Server,
    }
    use Side::{Client, Server};

    /// Packets in the order they pass, each with the side that sent it.
    type Packets = Vec<(Side, Vec<u8>)>;

    /// The handshake, then `body`.
    fn conversation(body: Packets) -> Packets {
        let mut all = vec![(Client, init()), (Server, version())];
        all.extend(body);
        all
    }

    /// Feeds each packet whole and finishes the channel.
    fn run(packets: &[(Side, Vec<u8>)]) -> Vec<FileRecord> {
        let mut tracker = SftpTracker::new(SftpLimits::default());
        feed(&mut tracker, packets, usize::MAX).unwrap();
        tracker.finish()
    }

    /// Feeds the packets cut into pieces of at most `piece` bytes, a side's consecutive packets
    /// run together.
    fn feed(
        tracker: &mut SftpTracker,
        packets: &[(Side, Vec<u8>)],
        piece: usize,
    ) -> Result<(), SftpError> {
        let mut runs: Packets = Vec::new();
        for (from, bytes) in packets {
            match runs.last_mut() {
                Some((last, run)) if *last == *from => run.extend_from_slice(bytes),
                _ => runs.push((*from, bytes.clone())),
            }
        }
        for (from, bytes) in runs {
            for chunk in bytes.chunks(piece) {
                match from {
                    Client => tracker.client_bytes(chunk)?,
                    Server => tracker.server_bytes(chunk)?,
                }
            }
        }
        Ok(())
    }

    fn transfer(record: &FileRecord) -> &FileTransfer {
        match record {
            FileRecord::Transfer(transfer) => transfer,
            FileRecord::Operation(operation) => panic!("an operation: {operation:?}"),
        }
    }

    fn upload_of_hello_world() -> Packets {
        conversation(vec![
            (Client, open(1, "/tmp/greeting.txt", UPLOAD)),
            (Server, handle(1, b"h1")),
            (Client, write(2, b"h1", 0, b"hello ")),
            (Client, write(3, b"h1", 6, b"world")),
            (Server, ok(2)),
            (Server, ok(3)),
            (Client, close(4, b"h1")),
            (Server, ok(4)),
        ])
    }

    #[test]
    fn an_upload_is_reported_with_its_path_size_and_hash_when_its_close_succeeds() {
        let packets = upload_of_hello_world();
        let mut tracker = SftpTracker::new(SftpLimits::default());
        feed(&mut tracker, &packets[..packets.len() - 1], usize::MAX).unwrap();
        assert!(
            tracker.take_records().is_empty(),
            "nothing before the close is answered"
        );
        feed(&mut tracker, &packets[packets.len() - 1..], usize::MAX).unwrap();
        let records = tracker.take_records();
        assert_eq!(
            records,
            vec![FileRecord::Transfer(FileTransfer {
                protocol: "sftp",
                path: "/tmp/greeting.txt".into(),
                direction: Direction::Upload,
                size: 11,
                sha256: sha256(b"hello world"),
                outcome: COMPLETE,
                note: None,
            })]
        );
        assert!(tracker.finish().is_empty(), "records are taken once");
    }

    #[test]
    fn the_same_stream_cut_anywhere_gives_the_same_records() {
        let packets = download_with_a_short_read();
        let whole = run(&packets);
        for piece in [1, 2, 3, 5, 7, 64] {
            let mut tracker = SftpTracker::new(SftpLimits::default());
            feed(&mut tracker, &packets, piece).unwrap();
            assert_eq!(tracker.finish(), whole, "cut into pieces of {piece}");
        }
    }

    fn download_with_a_short_read() -> Packets {
        conversation(vec![
            (Client, open(1, "/etc/motd", SSH_FXF_READ)),
            (Server, handle(1, b"\0\0\0\x07")),
            (Client, read(2, b"\0\0\0\x07", 0, 8)),
            (Client, read(3, b"\0\0\0\x07", 8, 8)),
            (Client, read(4, b"\0\0\0\x07", 16, 8)),
            // A short read: OpenSSH's client asks again for the rest.
            (Server, data(2, b"abcde")),
            (Server, data(3, b"ijklmnop")),
            (Server, status(4, SSH_FX_EOF, "")),
            (Client, read(5, b"\0\0\0\x07", 5, 3)),
            (Server, data(5, b"fgh")),
            (Client, close(6, b"\0\0\0\x07")),
            (Server, ok(6)),
        ])
    }

    #[test]
    fn a_download_with_a_short_read_asked_again_is_hashed_in_file_order() {
        let records = run(&download_with_a_short_read());
        let download = transfer(&records[0]);
        assert_eq!(download.path, "/etc/motd");
        assert_eq!(download.direction, Direction::Download);
        assert_eq!(download.size, 16);
        assert_eq!(download.sha256, sha256(b"abcdefghijklmnop"));
        assert_eq!((download.outcome, &download.note), (COMPLETE, &None));
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn writes_out_of_order_are_hashed_in_file_order() {
        let records = run(&conversation(vec![
            (Client, open(1, "out-of-order", UPLOAD)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 6, b"world")),
            (Client, write(3, b"h", 11, b"!")),
            (Client, write(4, b"h", 0, b"hello ")),
            (Client, close(5, b"h")),
            (Server, ok(2)),
            (Server, ok(3)),
            (Server, ok(4)),
            (Server, ok(5)),
        ]));
        let upload = transfer(&records[0]);
        assert_eq!(upload.size, 12);
        assert_eq!(upload.sha256, sha256(b"hello world!"));
        assert_eq!(upload.note, None);
    }

    #[test]
    fn two_files_open_at_once_are_reported_apart() {
        let records = run(&conversation(vec![
            (Client, open(1, "a", UPLOAD)),
            (Client, open(2, "b", SSH_FXF_READ)),
            (Server, handle(1, b"1")),
            (Server, handle(2, b"2")),
            (Client, write(3, b"1", 0, b"to a")),
            (Client, read(4, b"2", 0, 100)),
            (Server, ok(3)),
            (Server, data(4, b"from b")),
            (Client, close(5, b"2")),
            (Client, close(6, b"1")),
            (Server, ok(5)),
            (Server, ok(6)),
        ]));
        let reported: Vec<_> = records
            .iter()
            .map(transfer)
            .map(|t| (t.path.as_str(), t.direction, t.sha256.clone()))
            .collect();
        assert_eq!(
            reported,
            vec![
                ("b", Direction::Download, sha256(b"from b")),
                ("a", Direction::Upload, sha256(b"to a")),
            ]
        );
    }

    #[test]
    fn a_refused_open_reports_nothing() {
        let records = run(&conversation(vec![
            (Client, open(1, "/root/secret", SSH_FXF_READ)),
            (Server, status(1, PERMISSION_DENIED, "Permission denied")),
            (Client, read(2, b"h", 0, 10)),
            (Server, status(2, FAILURE, "bad handle")),
        ]));
        assert_eq!(records, vec![]);
    }

    #[test]
    fn a_failed_write_fails_the_file_with_the_servers_message() {
        let records = run(&conversation(vec![
            (Client, open(1, "/full/disk", UPLOAD)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 0, b"abc")),
            (Server, status(2, FAILURE, "No space left on device")),
            (Client, close(3, b"h")),
            (Server, ok(3)),
        ]));
        let upload = transfer(&records[0]);
        assert_eq!(upload.outcome, FAILED);
        assert_eq!(
            upload.note.as_deref(),
            Some("write failed: No space left on device")
        );
        assert_eq!(upload.size, 3);
    }

    #[test]
    fn a_failed_close_or_read_fails_the_file() {
        let records = run(&conversation(vec![
            (Client, open(1, "a", UPLOAD)),
            (Server, handle(1, b"h")),
            (Client, close(2, b"h")),
            (Server, status(2, FAILURE, "")),
            (Client, open(3, "b", SSH_FXF_READ)),
            (Server, handle(3, b"h")),
            (Client, read(4, b"h", 0, 10)),
            (Server, status(4, PERMISSION_DENIED, "")),
            (Client, close(5, b"h")),
            (Server, ok(5)),
        ]));
        let notes: Vec<_> = records
            .iter()
            .map(transfer)
            .map(|t| (t.outcome, t.note.as_deref()))
            .collect();
        assert_eq!(
            notes,
            vec![
                (FAILED, Some("close failed: failure")),
                (FAILED, Some("read failed: permission denied")),
            ]
        );
    }

    #[test]
    fn a_channel_cut_mid_file_reports_it_incomplete_with_what_passed() {
        let mut tracker = SftpTracker::new(SftpLimits::default());
        let packets = conversation(vec![
            (Client, open(1, "big.iso", UPLOAD)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 0, b"first part")),
        ]);
        feed(&mut tracker, &packets, usize::MAX).unwrap();
        tracker
            .client_bytes(&write(3, b"h", 10, b"second part")[..20])
            .unwrap();
        let records = tracker.finish();
        let upload = transfer(&records[0]);
        assert_eq!(upload.outcome, INCOMPLETE);
        assert_eq!(upload.size, 10, "a write not seen whole did not pass");
        assert_eq!(upload.sha256, sha256(b"first part"));
    }

    #[test]
    fn a_resumed_upload_has_no_hash_and_says_which_bytes_did_not_pass() {
        let records = run(&conversation(vec![
            (Client, open(1, "resumed", SSH_FXF_WRITE | SSH_FXF_CREAT)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 1000, b"rest")),
            (Client, close(3, b"h")),
            (Server, ok(2)),
            (Server, ok(3)),
        ]));
        let upload = transfer(&records[0]);
        assert_eq!(
            (upload.outcome, upload.size, &upload.sha256),
            (COMPLETE, 4, &None)
        );
        assert_eq!(
            upload.note.as_deref(),
            Some("not hashed: bytes 0..1000 did not pass (a resumed or partial transfer)")
        );
    }

    #[test]
    fn content_beyond_a_gap_past_the_limit_is_not_hashed_and_its_memory_is_given_back() {
        let limits = SftpLimits {
            max_pending_bytes: 8,
            ..SftpLimits::default()
        };
        let mut tracker = SftpTracker::new(limits);
        let packets = conversation(vec![
            (Client, open(1, "a", UPLOAD)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 4, b"12345")),
            (Client, write(3, b"h", 9, b"6789")),
            (Client, write(4, b"h", 0, b"abcd")),
            (Client, close(5, b"h")),
            (Server, ok(5)),
        ]);
        feed(&mut tracker, &packets, usize::MAX).unwrap();
        let records = tracker.take_records();
        let upload = transfer(&records[0]);
        assert_eq!((upload.size, &upload.sha256), (13, &None));
        assert!(upload
            .note
            .as_deref()
            .unwrap()
            .contains("more than 8 bytes"));
        assert_eq!(tracker.session.budget.held, 0);

        let again = conversation(vec![
            (Client, open(6, "b", UPLOAD)),
            (Server, handle(6, b"h")),
            (Client, write(7, b"h", 4, b"1234")),
            (Client, write(8, b"h", 0, b"abcd")),
            (Client, close(9, b"h")),
            (Server, ok(9)),
        ]);
        feed(&mut tracker, &again[2..], usize::MAX).unwrap();
        let records = tracker.take_records();
        assert_eq!(transfer(&records[0]).sha256, sha256(b"abcd1234"));
    }

    #[test]
    fn overlapping_writes_leave_an_upload_unhashed() {
        let records = run(&conversation(vec![
            (Client, open(1, "a", UPLOAD)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 0, b"abcd")),
            (Client, write(3, b"h", 2, b"XY")),
            (Client, close(4, b"h")),
            (Server, ok(4)),
        ]));
        let upload = transfer(&records[0]);
        assert_eq!(upload.sha256, None);
        assert_eq!(
            upload.note.as_deref(),
            Some("not hashed: writes were not sequential (some overlapped)")
        );
    }

    #[test]
    fn an_append_is_hashed_in_the_order_of_its_writes() {
        let records = run(&conversation(vec![
            (Client, open(1, "log", SSH_FXF_WRITE | SSH_FXF_APPEND)),
            (Server, handle(1, b"h")),
            (Client, write(2, b"h", 0, b"one ")),
            (Client, write(3, b"h", 0, b"two")),
            (Client, close(4, b"h")),
            (Server, ok(4)),
        ]));
        let upload = transfer(&records[0]);
        assert_eq!(upload.sha256, sha256(b"one two"));
        assert!(upload.note.as_deref().unwrap().starts_with("appended"));
    }

    #[test]
    fn operations_are_reported_when_asked_and_other_requests_pass() {
        let mut tracker = SftpTracker::new(SftpLimits::default());
        let packets = conversation(vec![
            (Client, with_paths(SSH_FXP_STAT, 1, &["/etc"])),
            (Client, with_paths(SSH_FXP_OPENDIR, 2, &["/etc"])),
            (Client, with_paths(SSH_FXP_REMOVE, 3, &["/tmp/old"])),
            (Client, with_paths(SSH_FXP_RENAME, 4, &["a", "b"])),
            (Client, with_paths(SSH_FXP_MKDIR, 5, &["d"])),
            (Client, with_paths(SSH_FXP_RMDIR, 6, &["d"])),
            (Client, with_paths(SSH_FXP_SETSTAT, 7, &["f"])),
            (
                Client,
                with_paths(SSH_FXP_SYMLINK, 8, &["/etc/passwd", "link"]),
            ),
            (
                Client,
                extended(
                    9,
                    "posix-rename@openssh.com",
                    &[&string(b"c"), &string(b"d")],
                ),
            ),
            (
                Client,
                extended(10, "hardlink@openssh.com", &[&string(b"f"), &string(b"g")]),
            ),
            (
                Client,
                extended(11, "statvfs@openssh.com", &[&string(b"/")]),
            ),
        ]);
        feed(&mut tracker, &packets, usize::MAX).unwrap();
        let reported: Vec<_> = tracker
            .take_records()
            .into_iter()
            .map(|record| match record {
                FileRecord::Operation(o) => (o.op, o.path, o.to),
                FileRecord::Transfer(t) => panic!("a transfer: {t:?}"),
            })
            .collect();
        let expected: Vec<(&str, &str, Option<&str>)> = vec![
            ("remove", "/tmp/old", None),
            ("rename", "a", Some("b")),
            ("mkdir", "d", None),
            ("rmdir", "d", None),
            ("setstat", "f", None),
            ("symlink", "link", Some("/etc/passwd")),
            ("rename", "c", Some("d")),
            ("hardlink", "g", Some("f")),
        ];
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(op, path, to)| (op, path.to_owned(), to.map(str::to_owned)))
            .collect();
        assert_eq!(reported, expected);
        let answers: Vec<_> = (1..=11)
            .map(|id| (Server, status(id, SSH_FX_OK, "")))
            .collect();
        feed(&mut tracker, &answers, usize::MAX).unwrap();
        assert_eq!(tracker.finish(), vec![]);
    }

    #[test]
    fn a_server_side_copy_is_reported_and_leaves_its_destination_unhashed() {
        let records = run(&conversation(vec![
            (Client, open(1, "src", SSH_FXF_READ)),
            (Client, open(2, "dst", UPLOAD)),
            (Server, handle(1, b"r")),
            (Server, handle(2, b"w")),
            (
                Client,
                extended(
                    3,
                    "copy-data",
                    &[
                        &string(b"r"),
                        &0u64.to_be_bytes(),
                        &0u64.to_be_bytes(),
                        &string(b"w"),
                        &0u64.to_be_bytes(),
                    ],
                ),
            ),
            (Server, ok(3)),
            (Client, close(4, b"w")),
            (Server, ok(4)),
        ]));
        assert_eq!(
            records[0],
            FileRecord::Operation(FileOperation {
                op: "copy",
                path: "src".into(),
                to: Some("dst".into()),
            })
        );
        let destination = transfer(&records[1]);
        assert_eq!(
            (destination.path.as_str(), &destination.sha256),
            ("dst", &None)
        );
        assert_eq!(
            destination.note.as_deref(),
            Some("not hashed: written by a server-side copy from src")
        );
        let source = transfer(&records[2]);
        assert_eq!((source.path.as_str(), source.outcome), ("src", INCOMPLETE));
    }

    #[test]
    fn an_answer_no_request_waits_for_is_ignored() {
        let records = run(&conversation(vec![
            (Server, handle(99, b"h")),
            (Server, data(98, b"unasked")),
            (Client, write(1, b"h", 0, b"x")),
            (Server, ok(1)),
        ]));
        assert_eq!(records, vec![]);
    }

    fn error_of(packets: &[(Side, Vec<u8>)], limits: SftpLimits) -> SftpError {
        let mut tracker = SftpTracker::new(limits);
        let error = feed(&mut tracker, packets, usize::MAX).unwrap_err();
        assert_eq!(
            tracker.client_bytes(&init()),
            Err(error.clone()),
            "an error is answered again"
        );
        error
    }

    #[test]
    fn bad_streams_are_errors_that_say_what_was_wrong() {
        let limits = SftpLimits::default();
        let cases: Vec<(Packets, &str)> = vec![
            (
                vec![(Client, b"GET / HTTP/1.1\r\n".to_vec())],
                "more than the limit",
            ),
            (vec![(Client, vec![0, 0, 0, 0])], "length 0"),
            (vec![(Client, open(1, "x", 0))], "rather than SSH_FXP_INIT"),
            (
                vec![(Server, version())],
                "before the client's SSH_FXP_INIT",
            ),
            (
                vec![
                    (Client, init()),
                    (Server, packet(SSH_FXP_VERSION, &[&4u32.to_be_bytes()])),
                ],
                "version 4",
            ),
            (
                conversation(vec![(
                    Client,
                    packet(SSH_FXP_OPEN, &[&1u32.to_be_bytes(), &[0, 0, 0, 9, b'x']]),
                )]),
                "SSH_FXP_OPEN ends early",
            ),
            (
                conversation(vec![(Client, open(1, "a", 0)), (Client, open(1, "b", 0))]),
                "request id 1 used again",
            ),
            (
                conversation(vec![(Client, open(1, "a", 0)), (Server, data(1, b"x"))]),
                "answered SSH_FXP_OPEN with SSH_FXP_DATA",
            ),
            (
                conversation(vec![(Client, open(1, &"p".repeat(MAX_PATH + 1), 0))]),
                "a path of 4097 bytes",
            ),
            (
                conversation(vec![
                    (Client, open(1, "a", 0)),
                    (Server, handle(1, &[7; 300])),
                ]),
                "a handle of 300 bytes",
            ),
            (
                conversation(vec![
                    (Client, open(1, "a", 0)),
                    (Client, open(2, "b", 0)),
                    (Server, handle(1, b"h")),
                    (Server, handle(2, b"h")),
                ]),
                "a handle that is still open",
            ),
            (
                conversation(vec![(Client, init())]),
                "a second SSH_FXP_INIT",
            ),
            (
                vec![(Client, init()), (Server, ok(1))],
                "SSH_FXP_STATUS before SSH_FXP_VERSION",
            ),
        ];
        for (packets, expected) in cases {
            let error = error_of(&packets, limits);
            assert!(
                error.0.contains(expected),
                "{error} should say {expected:?}"
            );
        }
    }

    #[test]
    fn limits_on_packets_files_and_requests_are_errors() {
        let small = SftpLimits {
            max_packet: 64,
            max_open_files: 1,
            max_requests: 2,
            ..SftpLimits::default()
        };
        let too_long = conversation(vec![(Client, write(1, b"h", 0, &[0; 64]))]);
        assert!(error_of(&too_long, small)
            .0
            .contains("more than the limit of 64"));
        let too_many_files = conversation(vec![
            (Client, open(1, "a", 0)),
            (Client, open(2, "b", 0)),
            (Server, handle(1, b"1")),
            (Server, handle(2, b"2")),
        ]);
        assert!(error_of(&too_many_files, small)
            .0
            .contains("more than 1 files open"));
        let too_many_requests = conversation(vec![
            (Client, open(1, "a", 0)),
            (Client, open(2, "b", 0)),
            (Client, open(3, "c", 0)),
        ]);
        assert!(error_of(&too_many_requests, small)
            .0
            .contains("more than 2 requests"));
    }

    #[test]
    fn a_packet_length_past_the_limit_is_refused_before_its_bytes_arrive() {
        let mut tracker = SftpTracker::new(SftpLimits::default());
        tracker.client_bytes(&[0xff, 0xff]).unwrap();
        let error = tracker.client_bytes(&[0xff, 0xff]).unwrap_err();
        assert!(error.0.contains("4294967295 bytes"), "{error}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Feeds of random bytes, each from a random side.
        fn feeds() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
            prop::collection::vec(
                (any::<bool>(), prop::collection::vec(any::<u8>(), 0..200)),
                0..20,
            )
        }

        /// The packet types the tracker reads.
        fn kind() -> impl Strategy<Value = u8> {
            prop::sample::select(vec![3, 4, 5, 6, 9, 13, 18, 20, 101, 102, 103, 200])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn random_bytes_never_panic(
                feeds in feeds(),
            ) {
                let mut tracker = SftpTracker::new(SftpLimits::default());
                for (from_client, bytes) in feeds {
                    let _ = if from_client {
                        tracker.client_bytes(&bytes)
                    } else {
                        tracker.server_bytes(&bytes)
                    };
                    tracker.take_records();
                }
                tracker.finish();
            }

            #[test]
            fn random_packets_after_a_handshake_never_panic(
                packets in prop::collection::vec(
                    (any::<bool>(), kind(), prop::collection::vec(any::<u8>(), 0..40)),
                    0..30,
                ),
            ) {
                let mut tracker = SftpTracker::new(SftpLimits::default());
                tracker.client_bytes(&init()).unwrap();
                tracker.server_bytes(&version()).unwrap();
                for (from_client, kind, body) in packets {
                    let packet = packet(kind, &[&body]);
                    let _ = if from_client {
                        tracker.client_bytes(&packet)
                    } else {
                        tracker.server_bytes(&packet)
                    };
                }
                tracker.finish();
            }

            #[test]
            fn where_a_stream_is_cut_does_not_change_its_records(
                cuts in prop::collection::vec(1usize..40, 1..8),
            ) {
                let packets = download_with_a_short_read();
                let mut tracker = SftpTracker::new(SftpLimits::default());
                for (at, (from, bytes)) in packets.iter().enumerate() {
                    let mut rest = bytes.as_slice();
                    let mut turn = at;
                    while !rest.is_empty() {
                        let (piece, more) = rest.split_at(cuts[turn % cuts.len()].min(rest.len()));
                        match from {
                            Client => tracker.client_bytes(piece).unwrap(),
                            Server => tracker.server_bytes(piece).unwrap(),
                        }
                        rest = more;
                        turn += 1;
                    }
                }
                prop_assert_eq!(tracker.finish(), run(&download_with_a_short_read()));
            }
        }
    }
}
