//! The legacy scp protocol (`scp -O`, and every scp before OpenSSH 9.0), read passively from an
//! exec channel running `scp -t TARGET` (an upload: the client sends the files) or `scp -f SOURCE`
//! (a download: the server sends them): each file that passed, its path, size, SHA-256 and outcome.
//!
//! It owns the scp bytes and the exec command's words only: no channel, no socket, no journal, no
//! policy, no stderr (extended data is not part of the protocol). The relay feeds it the channel's
//! data as it passes, cut anywhere, and records what [`ScpTracker::take_records`] reports; it must
//! not change, hold back or answer anything itself.
//!
//! Written by hand because no maintained crate parses the scp protocol passively from both sides
//! while bounding memory: the scp crates are clients that run the exchange themselves. Lines are
//! cut as OpenSSH's scp cuts them (at a newline or at 2047 bytes, its buffer), directories nest at
//! most [`MAX_DEPTH`] deep, sizes are checked as OpenSSH checks them, and bad input is an
//! [`ScpError`], never a panic. Once a tracker has answered an error it answers the same error to
//! every later feed.
//!
//! The protocol is a conversation: the source sends a control line (`C<mode> <size> <name>`,
//! `D<mode> 0 <name>`, `E`, `T<mtime> 0 <atime> 0`) and waits for the sink's answer (`\0`, or
//! `\x01` and a message line for an error, another byte and a message line for a fatal one) before
//! it sends the file's bytes, then `\0` (or an error line), and waits again. Which bytes come next
//! depends on the answer, so the source's bytes are read only when the sink has answered: a source
//! that sends ahead has at most [`MAX_AHEAD`] bytes held before it is an error. A file whose
//! header the sink refuses passed nothing and is not reported, as an sftp open the server refuses.
//!
//! The path of a file:
//! - a download (`-f SOURCE...`): the directory of the source its top-level name belongs to, the
//!   directories the source sent, then the file's name. For `-f /etc/motd` that is `/etc/motd`; for
//!   `-r -f /home/u/docs` (whose first record is the directory `docs` itself),
//!   `/home/u/docs/<dirs>/<name>`.
//! - an upload (`-t TARGET`) with `-r` or `-d`, or to a TARGET that names a directory (ending in
//!   `/`, or `.`, `..`, `~`): TARGET, the directories, then the name. OpenSSH writes there when
//!   TARGET is an existing directory, the usual case (with `-r` to a TARGET that does not exist it
//!   creates TARGET itself in place of the first directory).
//! - any other upload: TARGET itself, as OpenSSH writes a single file to TARGET when TARGET is not
//!   a directory. Whether it is cannot be known from the stream, so when the name the client sent
//!   is not TARGET's last component the note gives it.

use sha2::{Digest, Sha256};

use crate::transfer::{Direction, FileRecord, FileTransfer, COMPLETE, FAILED, INCOMPLETE};

const PROTOCOL: &str = "scp";

/// The longest line, its newline included: OpenSSH's scp reads control lines and messages into
/// 2048-byte buffers, and a line that fills one is cut there, the rest read as what comes next.
pub const MAX_LINE: usize = 2047;
/// The deepest nesting of directories followed.
pub const MAX_DEPTH: usize = 128;
/// Bytes a side may send while it should be waiting for the other's answer.
pub const MAX_AHEAD: usize = 64 * 1024;
/// The largest file size OpenSSH accepts (`off_t`).
const MAX_SIZE: u64 = i64::MAX as u64;

/// Bytes that are not the scp protocol, or that pass a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scp: {0}")]
pub struct ScpError(pub String);

fn bad(message: impl Into<String>) -> ScpError {
    ScpError(message.into())
}

/// Follows one scp exec channel. See the module's documentation.
pub struct ScpTracker {
    direction: Direction,
    /// `-t`'s TARGET, or `-f`'s SOURCEs.
    operands: Vec<String>,
    /// Uploads name files inside TARGET (see the module's documentation).
    into_target: bool,
    /// The directory the current top-level entry of a download lives in.
    top_parent: String,
    /// The directories entered, by name.
    dirs: Vec<String>,
    phase: Phase,
    /// The line being read, of either side (only one speaks at a time).
    line: Vec<u8>,
    /// The first byte of an answer being read, until its message line ends.
    answer_code: Option<u8>,
    file: Option<ScpFile>,
    source_ahead: Vec<u8>,
    sink_ahead: Vec<u8>,
    records: Vec<FileRecord>,
    failed: Option<ScpError>,
}

/// Where the conversation is, and so whose bytes are read next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The sink's first answer, that it is ready.
    Ready,
    /// The source's next control line.
    Control,
    /// The sink's answer to a control line.
    ControlAnswer(Control),
    /// The file's bytes, this many still to come.
    Data(u64),
    /// The source's `\0` (or error) after a file's bytes.
    Trailer,
    /// The sink's answer to a file.
    FileAnswer,
    /// One side has stopped reading: nothing more is read.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    File { name: String, size: u64 },
    Directory { name: String },
    EndDirectory,
    Times,
}

enum Answer {
    Ok,
    Error(String),
    Fatal(String),
}

/// The file whose bytes are passing.
struct ScpFile {
    path: String,
    sha: Sha256,
    size: u64,
    failure: Option<String>,
    note: Option<String>,
}

impl ScpTracker {
    /// A tracker for an exec command `scp [options] -t [--] TARGET` or `scp [options] -f [--]
    /// SOURCE...` (the program may be named by its path), or `None` for anything else, a command
    /// with more to it than scp (`;`, `|`, `&&`, redirections, substitutions) included. Words are
    /// read as a POSIX shell splits them, with quotes and backslashes; `$VAR` stays as written.
    pub fn from_command(command: &str) -> Option<ScpTracker> {
        let words = shell_words(command)?;
        let (program, arguments) = words.split_first()?;
        if program != "scp" && !program.ends_with("/scp") {
            return None;
        }
        let options = read_options(arguments)?;
        let direction = if options.from {
            Direction::Download
        } else if options.to {
            Direction::Upload
        } else {
            return None;
        };
        let operands = options.operands;
        let into_target = match direction {
            Direction::Upload if operands.len() == 1 => {
                options.recursive || options.into_directory || names_directory(&operands[0])
            }
            Direction::Download if !operands.is_empty() => false,
            _ => return None,
        };
        Some(ScpTracker {
            direction,
            operands,
            into_target,
            top_parent: String::new(),
            dirs: Vec::new(),
            phase: Phase::Ready,
            line: Vec::new(),
            answer_code: None,
            file: None,
            source_ahead: Vec::new(),
            sink_ahead: Vec::new(),
            records: Vec::new(),
            failed: None,
        })
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Bytes from the side that sends the files (the client for `-t`, the server for `-f`), in the
    /// order they pass.
    pub fn source_bytes(&mut self, data: &[u8]) -> Result<(), ScpError> {
        self.feed(data, Side::Source)
    }

    /// Bytes from the side that receives them and answers, in the order they pass.
    pub fn sink_bytes(&mut self, data: &[u8]) -> Result<(), ScpError> {
        self.feed(data, Side::Sink)
    }

    /// The transfers finished since the last call.
    pub fn take_records(&mut self) -> Vec<FileRecord> {
        std::mem::take(&mut self.records)
    }

    /// The channel ended: what was not taken yet, then the file whose bytes were passing, if any,
    /// as incomplete.
    pub fn finish(mut self) -> Vec<FileRecord> {
        if let Some(file) = self.file.take() {
            let transfer = file.into_transfer(self.direction, INCOMPLETE);
            self.records.push(FileRecord::Transfer(transfer));
        }
        self.records
    }

    fn feed(&mut self, data: &[u8], side: Side) -> Result<(), ScpError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.run(data, side);
        self.failed = result.as_ref().err().cloned();
        result
    }

    /// Reads what it is `side`'s turn to send, holds the rest, then reads whatever was held and
    /// has become readable, until neither side can go on.
    fn run(&mut self, data: &[u8], side: Side) -> Result<(), ScpError> {
        let ahead = self.ahead(side);
        let rest = if ahead.is_empty() {
            let used = self.read(data, side)?;
            &data[used..]
        } else {
            data
        };
        self.hold(rest, side)?;
        loop {
            let mut progress = false;
            for side in [Side::Source, Side::Sink] {
                let held = std::mem::take(self.ahead(side));
                let used = self.read(&held, side)?;
                progress |= used > 0;
                *self.ahead(side) = held;
                self.ahead(side).drain(..used);
            }
            if !progress {
                return Ok(());
            }
        }
    }

    fn ahead(&mut self, side: Side) -> &mut Vec<u8> {
        match side {
            Side::Source => &mut self.source_ahead,
            Side::Sink => &mut self.sink_ahead,
        }
    }

    fn hold(&mut self, data: &[u8], side: Side) -> Result<(), ScpError> {
        if self.phase == Phase::Ended {
            return Ok(());
        }
        let ahead = self.ahead(side);
        if ahead.len() + data.len() > MAX_AHEAD {
            return Err(bad(format!(
                "the {} sent more than {MAX_AHEAD} bytes without waiting for an answer",
                side.name()
            )));
        }
        ahead.extend_from_slice(data);
        Ok(())
    }

    /// Reads `side`'s bytes for as long as it is its turn; returns how many were read.
    fn read(&mut self, data: &[u8], side: Side) -> Result<usize, ScpError> {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            if self.phase == Phase::Ended {
                return Ok(data.len());
            }
            if self.turn() != side {
                break;
            }
            used += match &self.phase {
                Phase::Control => self.read_control(rest)?,
                Phase::Data(remaining) => self.read_data(rest, *remaining),
                _ => self.read_answer(rest)?,
            };
        }
        Ok(used)
    }

    fn turn(&self) -> Side {
        match self.phase {
            Phase::Control | Phase::Data(_) | Phase::Trailer => Side::Source,
            _ => Side::Sink,
        }
    }

    fn read_data(&mut self, data: &[u8], remaining: u64) -> usize {
        let take = usize::try_from(remaining).map_or(data.len(), |left| left.min(data.len()));
        if let Some(file) = &mut self.file {
            file.sha.update(&data[..take]);
            file.size += take as u64;
        }
        let remaining = remaining - take as u64;
        self.phase = if remaining == 0 {
            Phase::Trailer
        } else {
            Phase::Data(remaining)
        };
        take
    }

    /// Takes bytes of the line being read; true when it ended (at a newline, or full).
    fn take_line(&mut self, data: &[u8], used: &mut usize) -> bool {
        let room = MAX_LINE - self.line.len();
        let window = &data[..data.len().min(room)];
        match window.iter().position(|&byte| byte == b'\n') {
            Some(newline) => {
                self.line.extend_from_slice(&window[..=newline]);
                *used += newline + 1;
                true
            }
            None => {
                self.line.extend_from_slice(window);
                *used += window.len();
                self.line.len() == MAX_LINE
            }
        }
    }

    fn read_control(&mut self, data: &[u8]) -> Result<usize, ScpError> {
        if self.line.is_empty() && data.first() == Some(&b'\n') {
            return Err(bad("an empty control line"));
        }
        let mut used = 0;
        if !self.take_line(data, &mut used) {
            return Ok(used);
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        self.on_control(&line)?;
        Ok(used)
    }

    fn on_control(&mut self, line: &[u8]) -> Result<(), ScpError> {
        let Some((&kind, rest)) = line.split_first() else {
            return Err(bad("an empty control line"));
        };
        let control = match kind {
            // The source's own error: the sink shows it and reads on, or, if fatal, stops.
            1 => return Ok(()),
            2 => {
                self.phase = Phase::Ended;
                return Ok(());
            }
            b'E' => Control::EndDirectory,
            b'T' => {
                check_times(rest)?;
                Control::Times
            }
            b'C' | b'D' => {
                let (size, name) = parse_entry(rest)?;
                if kind == b'C' {
                    Control::File { name, size }
                } else if self.dirs.len() >= MAX_DEPTH {
                    return Err(bad(format!(
                        "directories nested more than {MAX_DEPTH} deep"
                    )));
                } else {
                    Control::Directory { name }
                }
            }
            other => {
                return Err(bad(format!(
                    "expected a control line, got one starting with 0x{other:02x}"
                )))
            }
        };
        self.phase = Phase::ControlAnswer(control);
        Ok(())
    }

    /// Reads an answer (the sink's, or the source's trailer after a file), as OpenSSH's
    /// `response()` reads one: `\0`, or a code byte and a message line.
    fn read_answer(&mut self, data: &[u8]) -> Result<usize, ScpError> {
        let mut used = 0;
        let code = match self.answer_code {
            Some(code) => code,
            None => {
                let Some(&code) = data.first() else {
                    return Ok(0);
                };
                used = 1;
                if code == 0 {
                    self.on_answer(Answer::Ok)?;
                    return Ok(used);
                }
                if code != 1 && code != 2 {
                    self.line.push(code);
                }
                self.answer_code = Some(code);
                code
            }
        };
        if !self.take_line(&data[used..], &mut used) {
            return Ok(used);
        }
        self.answer_code = None;
        let line = std::mem::take(&mut self.line);
        let message = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line))
            .trim()
            .to_owned();
        self.on_answer(if code == 1 {
            Answer::Error(message)
        } else {
            Answer::Fatal(message)
        })?;
        Ok(used)
    }

    fn on_answer(&mut self, answer: Answer) -> Result<(), ScpError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Control);
        match (phase, answer) {
            (_, Answer::Fatal(message)) => {
                self.fail_file(message);
                self.end_file(FAILED);
                self.phase = Phase::Ended;
            }
            (Phase::Ready | Phase::ControlAnswer(Control::Times), _) => {}
            (Phase::ControlAnswer(control), Answer::Ok) => self.accepted(control),
            (Phase::ControlAnswer(Control::EndDirectory), Answer::Error(_)) => {
                return Err(bad("the sink refused the end of a directory"));
            }
            (Phase::ControlAnswer(_), Answer::Error(_)) => {}
            (Phase::Trailer, answer) => {
                if let Answer::Error(message) = answer {
                    self.fail_file(message);
                }
                self.phase = Phase::FileAnswer;
            }
            (Phase::FileAnswer, answer) => {
                if let Answer::Error(message) = answer {
                    self.fail_file(message);
                }
                let failed = self
                    .file
                    .as_ref()
                    .is_some_and(|file| file.failure.is_some());
                self.end_file(if failed { FAILED } else { COMPLETE });
            }
            (phase @ (Phase::Control | Phase::Data(_) | Phase::Ended), _) => self.phase = phase,
        }
        Ok(())
    }

    /// The sink accepted a control line.
    fn accepted(&mut self, control: Control) {
        match control {
            Control::File { name, size } => {
                let (path, note) = self.path_of(&name);
                self.file = Some(ScpFile {
                    path,
                    sha: Sha256::new(),
                    size: 0,
                    failure: None,
                    note,
                });
                self.phase = if size == 0 {
                    Phase::Trailer
                } else {
                    Phase::Data(size)
                };
            }
            Control::Directory { name } => {
                if self.dirs.is_empty() && self.direction == Direction::Download {
                    self.top_parent = self.parent_of(&name);
                }
                self.dirs.push(name);
            }
            Control::EndDirectory => {
                // An `E` outside any directory ends the sink's reading.
                if self.dirs.pop().is_none() {
                    self.phase = Phase::Ended;
                }
            }
            Control::Times => {}
        }
    }

    fn fail_file(&mut self, message: String) {
        if let Some(file) = &mut self.file {
            file.failure.get_or_insert(message);
        }
    }

    fn end_file(&mut self, outcome: &'static str) {
        if let Some(file) = self.file.take() {
            let transfer = file.into_transfer(self.direction, outcome);
            self.records.push(FileRecord::Transfer(transfer));
        }
    }

    /// A file's path and the note that goes with it (see the module's documentation).
    fn path_of(&mut self, name: &str) -> (String, Option<String>) {
        match self.direction {
            Direction::Download => {
                if self.dirs.is_empty() {
                    self.top_parent = self.parent_of(name);
                }
                (nest(&self.top_parent, &self.dirs, name), None)
            }
            Direction::Upload => {
                let target = self.operands.first().map_or("", String::as_str);
                if self.into_target {
                    (nest(target, &self.dirs, name), None)
                } else {
                    let note = (last_component(target) != name)
                        .then(|| format!("the client sent the file as {name:?}"));
                    (target.to_owned(), note)
                }
            }
        }
    }

    /// The directory a download's top-level entry comes from: that of the source it is named
    /// after, else that of the first source (a pattern the remote shell expanded).
    fn parent_of(&self, name: &str) -> String {
        let source = self
            .operands
            .iter()
            .find(|source| last_component(source) == name)
            .or(self.operands.first())
            .map_or("", String::as_str);
        let trimmed = trim_slashes(source);
        match trimmed.rfind('/') {
            Some(slash) => trimmed[..=slash].to_owned(),
            None => String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Sink,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Sink => "sink",
        }
    }
}

impl ScpFile {
    fn into_transfer(self, direction: Direction, outcome: &'static str) -> FileTransfer {
        let note = match (self.failure, self.note) {
            (Some(failure), Some(note)) => Some(format!("{failure}; {note}")),
            (failure, note) => failure.or(note),
        };
        FileTransfer {
            protocol: PROTOCOL,
            path: self.path,
            direction,
            size: self.size,
            sha256: Some(hex::encode(self.sha.finalize())),
            outcome,
            note,
        }
    }
}

/// `<mode> <size> <name>` after `C` or `D`, checked as OpenSSH's sink checks it: four octal
/// digits, a size of digits that fits an `off_t`, a name that is not empty, `.` or `..` and has no
/// `/`.
fn parse_entry(rest: &[u8]) -> Result<(u64, String), ScpError> {
    let mode = rest.get(..4).unwrap_or(rest);
    if mode.len() != 4 || !mode.iter().all(|digit| (b'0'..=b'7').contains(digit)) {
        return Err(bad("a control line with a bad mode"));
    }
    let Some(rest) = rest[4..].strip_prefix(b" ") else {
        return Err(bad("a control line whose mode is not followed by a space"));
    };
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0 {
        return Err(bad("a control line without a size"));
    }
    let size = rest[..digits]
        .iter()
        .try_fold(0u64, |size, digit| {
            size.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .filter(|&size| size <= MAX_SIZE)
        .ok_or_else(|| bad("a control line whose size is out of range"))?;
    let Some(name) = rest[digits..].strip_prefix(b" ") else {
        return Err(bad("a control line whose size is not followed by a space"));
    };
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(bad(format!(
            "a control line naming an unexpected file: {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok((size, String::from_utf8_lossy(name).into_owned()))
}

/// `<mtime> <usec> <atime> <usec>` after `T`: four numbers apart by single spaces.
fn check_times(rest: &[u8]) -> Result<(), ScpError> {
    let fields: Vec<&[u8]> = rest.split(|&byte| byte == b' ').collect();
    let numbers = |field: &&[u8]| !field.is_empty() && field.iter().all(u8::is_ascii_digit);
    if fields.len() == 4 && fields.iter().all(numbers) {
        Ok(())
    } else {
        Err(bad("a malformed times line"))
    }
}

/// `base`, then each directory, then `name`, joined by `/`.
fn nest(base: &str, dirs: &[String], name: &str) -> String {
    let mut path = base.to_owned();
    for part in dirs.iter().map(String::as_str).chain([name]) {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(part);
    }
    path
}

/// A path without its trailing slashes (`/` stays `/`).
fn trim_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && !path.is_empty() {
        "/"
    } else {
        trimmed
    }
}

fn last_component(path: &str) -> &str {
    let trimmed = trim_slashes(path);
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// A TARGET that can only be a directory.
fn names_directory(target: &str) -> bool {
    target.ends_with('/') || matches!(last_component(target), "." | "..") || target == "~"
}

struct Options {
    to: bool,
    from: bool,
    recursive: bool,
    into_directory: bool,
    operands: Vec<String>,
}

/// The options OpenSSH's scp takes (`12346ABCTdfOpqRrstvD:F:J:M:P:S:c:i:l:o:X:`), read as its
/// getopt reads them: up to `--` or the first operand.
fn read_options(arguments: &[String]) -> Option<Options> {
    let mut options = Options {
        to: false,
        from: false,
        recursive: false,
        into_directory: false,
        operands: Vec::new(),
    };
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let Some(letters) = word.strip_prefix('-').filter(|letters| !letters.is_empty()) else {
            options.operands.push(word.clone());
            break;
        };
        for (at, letter) in letters.char_indices() {
            match letter {
                't' => options.to = true,
                'f' => options.from = true,
                'r' => options.recursive = true,
                'd' => options.into_directory = true,
                '2' | '3' | '4' | '6' | 'A' | 'B' | 'C' | 'T' | 'O' | 'p' | 'q' | 'R' | 's'
                | 'v' => {}
                'D' | 'F' | 'J' | 'M' | 'P' | 'S' | 'c' | 'i' | 'l' | 'o' | 'X' => {
                    if at + 1 == letters.len() {
                        words.next()?;
                    }
                    break;
                }
                _ => return None,
            }
        }
    }
    options.operands.extend(words.cloned());
    Some(options)
}

/// Splits a command line into words as a POSIX shell does, or `None` when it is more than one
/// simple command: an unquoted `;`, `&`, `|`, `<`, `>`, `(`, `)`, a newline, a comment, or a
/// command substitution anywhere but inside single quotes.
fn shell_words(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '`' => return None,
                        '$' if chars.peek() == Some(&'(') => return None,
                        '\\' => match chars.next()? {
                            escaped @ ('$' | '`' | '"' | '\\') => word.push(escaped),
                            '\n' => {}
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => {}
                    escaped => word.push(escaped),
                }
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '\n' => return None,
            '#' if !in_word => return None,
            '$' if chars.peek() == Some(&'(') => return None,
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum By {
        Source,
        Sink,
    }
    use By::{Sink, Source};

    fn tracker(command: &str) -> ScpTracker {
        ScpTracker::from_command(command).unwrap()
    }

    /// Feeds the conversation, each message cut into pieces of at most `piece` bytes, and
    /// finishes the channel.
    fn run(command: &str, conversation: &[(By, &[u8])], piece: usize) -> Vec<FileRecord> {
        let mut tracker = tracker(command);
        feed(&mut tracker, conversation, piece).unwrap();
        tracker.finish()
    }

    fn feed(
        tracker: &mut ScpTracker,
        conversation: &[(By, &[u8])],
        piece: usize,
    ) -> Result<(), ScpError> {
        for (by, bytes) in conversation {
            for chunk in bytes.chunks(piece) {
                match by {
                    Source => tracker.source_bytes(chunk)?,
                    Sink => tracker.sink_bytes(chunk)?,
                }
            }
        }
        Ok(())
    }

    fn transfers(records: &[FileRecord]) -> Vec<(&str, u64, Option<String>, &'static str)> {
        records
            .iter()
            .map(|record| match record {
                FileRecord::Transfer(t) => (t.path.as_str(), t.size, t.sha256.clone(), t.outcome),
                FileRecord::Operation(o) => panic!("an operation: {o:?}"),
            })
            .collect()
    }

    fn sha256(bytes: &[u8]) -> Option<String> {
        Some(hex::encode(Sha256::digest(bytes)))
    }

    const ONE_FILE: &[(By, &[u8])] = &[
        (Sink, b"\0"),
        (Source, b"T1700000000 0 1700000000 0\n"),
        (Sink, b"\0"),
        (Source, b"C0644 11 notes.txt\n"),
        (Sink, b"\0"),
        (Source, b"hello world"),
        (Source, b"\0"),
        (Sink, b"\0"),
    ];

    #[test]
    fn an_upload_is_reported_with_its_path_size_and_hash() {
        let records = run("scp -t /srv/inbox/", ONE_FILE, usize::MAX);
        assert_eq!(
            records,
            vec![FileRecord::Transfer(FileTransfer {
                protocol: "scp",
                path: "/srv/inbox/notes.txt".into(),
                direction: Direction::Upload,
                size: 11,
                sha256: sha256(b"hello world"),
                outcome: COMPLETE,
                note: None,
            })]
        );
    }

    #[test]
    fn the_same_stream_cut_anywhere_or_run_together_gives_the_same_records() {
        let whole = run("scp -t /srv/inbox/", ONE_FILE, usize::MAX);
        for piece in [1, 2, 3, 7] {
            assert_eq!(run("scp -t /srv/inbox/", ONE_FILE, piece), whole);
        }
        let mut tracker = tracker("scp -t /srv/inbox/");
        let source: Vec<u8> = ONE_FILE
            .iter()
            .filter(|(by, _)| *by == Source)
            .flat_map(|(_, bytes)| bytes.to_vec())
            .collect();
        tracker.source_bytes(&source).unwrap();
        tracker.sink_bytes(b"\0\0\0\0").unwrap();
        assert_eq!(
            tracker.finish(),
            whole,
            "a source that does not wait is read once the answers come"
        );
    }

    #[test]
    fn a_single_file_upload_is_recorded_at_its_target_with_the_name_sent_in_a_note() {
        let records = run("scp -t /srv/report.csv", ONE_FILE, usize::MAX);
        let FileRecord::Transfer(upload) = &records[0] else {
            panic!("a transfer")
        };
        assert_eq!(upload.path, "/srv/report.csv");
        assert_eq!(
            upload.note.as_deref(),
            Some("the client sent the file as \"notes.txt\"")
        );
        let records = run("scp -t /srv/notes.txt", ONE_FILE, usize::MAX);
        assert_eq!(transfers(&records)[0].0, "/srv/notes.txt");
        let records = run("scp -t .", ONE_FILE, usize::MAX);
        assert_eq!(transfers(&records)[0].0, "./notes.txt");
        let records = run("scp -d -t /srv", ONE_FILE, usize::MAX);
        assert_eq!(transfers(&records)[0].0, "/srv/notes.txt");
    }

    const TREE: &[(By, &[u8])] = &[
        (Sink, b"\0"),
        (Source, b"D0755 0 docs\n"),
        (Sink, b"\0"),
        (Source, b"C0644 3 a\n"),
        (Sink, b"\0"),
        (Source, b"abc\0"),
        (Sink, b"\0"),
        (Source, b"D0700 0 inner\n"),
        (Sink, b"\0"),
        (Source, b"C0600 0 empty\n"),
        (Sink, b"\0"),
        (Source, b"\0"),
        (Sink, b"\0"),
        (Source, b"E\n"),
        (Sink, b"\0"),
        (Source, b"C0644 1 b\n"),
        (Sink, b"\0"),
        (Source, b"z\0"),
        (Sink, b"\0"),
        (Source, b"E\n"),
        (Sink, b"\0"),
    ];

    #[test]
    fn a_recursive_upload_names_files_inside_the_target() {
        let records = run("scp -r -p -t /backup", TREE, usize::MAX);
        assert_eq!(
            transfers(&records),
            vec![
                ("/backup/docs/a", 3, sha256(b"abc"), COMPLETE),
                ("/backup/docs/inner/empty", 0, sha256(b""), COMPLETE),
                ("/backup/docs/b", 1, sha256(b"z"), COMPLETE),
            ]
        );
    }

    #[test]
    fn a_download_names_files_where_the_source_is() {
        let records = run("scp -f /etc/motd", ONE_FILE, usize::MAX);
        assert_eq!(transfers(&records)[0].0, "/etc/notes.txt");
        let records = run("scp -r -f -- /home/u/docs/", TREE, 1);
        assert_eq!(
            transfers(&records)
                .into_iter()
                .map(|t| t.0)
                .collect::<Vec<_>>(),
            vec![
                "/home/u/docs/a",
                "/home/u/docs/inner/empty",
                "/home/u/docs/b"
            ]
        );
        let FileRecord::Transfer(download) = &records[0] else {
            panic!("a transfer")
        };
        assert_eq!(download.direction, Direction::Download);
        let records = run("scp -f notes.txt", ONE_FILE, usize::MAX);
        assert_eq!(transfers(&records)[0].0, "notes.txt");
    }

    #[test]
    fn a_refused_header_passes_nothing_and_the_next_file_is_followed() {
        let records = run(
            "scp -t /srv/",
            &[
                (Sink, b"\0"),
                (Source, b"C0644 5 locked\n"),
                (Sink, b"\x01scp: /srv/locked: Permission denied\n"),
                (Source, b"C0644 2 open\n"),
                (Sink, b"\0"),
                (Source, b"ok\0"),
                (Sink, b"\0"),
            ],
            usize::MAX,
        );
        assert_eq!(
            transfers(&records),
            vec![("/srv/open", 2, sha256(b"ok"), COMPLETE)]
        );
    }

    #[test]
    fn an_error_after_the_bytes_fails_the_file_with_its_message() {
        let sink_error = run(
            "scp -t /srv/",
            &[
                (Sink, b"\0"),
                (Source, b"C0644 2 f\n"),
                (Sink, b"\0"),
                (Source, b"ab\0"),
                (Sink, b"\x01scp: /srv/f: No space left on device\n"),
            ],
            usize::MAX,
        );
        let source_error = run(
            "scp -f /var/log/f",
            &[
                (Sink, b"\0"),
                (Source, b"C0644 2 f\n"),
                (Sink, b"\0"),
                (Source, b"\0\0\x01scp: /var/log/f: Input/output error\n"),
                (Sink, b"\0"),
            ],
            usize::MAX,
        );
        for (records, message) in [
            (sink_error, "scp: /srv/f: No space left on device"),
            (source_error, "scp: /var/log/f: Input/output error"),
        ] {
            let FileRecord::Transfer(transfer) = &records[0] else {
                panic!("a transfer")
            };
            assert_eq!(transfer.outcome, FAILED);
            assert_eq!(transfer.note.as_deref(), Some(message));
        }
    }

    #[test]
    fn a_channel_cut_mid_file_reports_it_incomplete_with_what_passed() {
        let records = run(
            "scp -t /srv/",
            &[
                (Sink, b"\0"),
                (Source, b"C0644 100 big\n"),
                (Sink, b"\0"),
                (Source, b"part"),
            ],
            usize::MAX,
        );
        assert_eq!(
            transfers(&records),
            vec![("/srv/big", 4, sha256(b"part"), INCOMPLETE)]
        );
    }

    #[test]
    fn a_fatal_answer_or_the_end_of_the_top_directory_ends_the_reading() {
        let records = run(
            "scp -t /srv/",
            &[
                (Sink, b"\0"),
                (Source, b"C0644 1 f\n"),
                (Sink, b"\0"),
                (Source, b"x\0"),
                (Sink, b"\x02scp: fatal\n"),
                (Source, b"anything at all"),
            ],
            usize::MAX,
        );
        assert_eq!(
            transfers(&records),
            vec![("/srv/f", 1, sha256(b"x"), FAILED)]
        );
        let mut tracker = tracker("scp -t /srv/");
        feed(
            &mut tracker,
            &[(Sink, b"\0"), (Source, b"E\n"), (Sink, b"\0")],
            usize::MAX,
        )
        .unwrap();
        tracker.source_bytes(b"not a control line").unwrap();
        assert_eq!(tracker.finish(), vec![]);
    }

    #[test]
    fn scp_commands_are_recognized_and_others_are_not() {
        for (command, direction) in [
            ("scp -t .", Direction::Upload),
            ("scp -v -r -p -d -t -- -odd-name", Direction::Upload),
            ("/usr/bin/scp -rpt '/srv/my files'", Direction::Upload),
            ("scp -l 100 -f \"a b\" c", Direction::Download),
            ("scp -f /etc/*.conf", Direction::Download),
        ] {
            assert_eq!(
                ScpTracker::from_command(command).map(|t| t.direction()),
                Some(direction),
                "{command}"
            );
        }
        assert_eq!(
            tracker("/usr/bin/scp -rpt '/srv/my files'").operands,
            ["/srv/my files"]
        );
        assert_eq!(tracker("scp -t -- -odd-name").operands, ["-odd-name"]);
        for command in [
            "ls -l",
            "scp -t",
            "scp -t a b",
            "scp -f",
            "scp a b",
            "scp -Z -t x",
            "scp -t x; rm -rf /",
            "scp -t x && cat > y",
            "scp -t $(whoami)",
            "scp -t \"`id`\"",
            "scp -t 'unterminated",
            "scp -t x # comment",
            "rsync --server -t x",
        ] {
            assert!(ScpTracker::from_command(command).is_none(), "{command}");
        }
    }

    #[test]
    fn bad_control_lines_are_errors_that_say_what_was_wrong() {
        for (line, expected) in [
            (&b"C644 1 f\n"[..], "bad mode"),
            (b"C0648 1 f\n", "bad mode"),
            (b"C0644 -1 f\n", "without a size"),
            (b"C0644 99999999999999999999 f\n", "out of range"),
            (b"C0644 9223372036854775808 f\n", "out of range"),
            (b"C0644 1 ../../etc/passwd\n", "unexpected file"),
            (b"C0644 1 ..\n", "unexpected file"),
            (b"D0755 0 \n", "unexpected file"),
            (b"C0644 1\n", "not followed by a space"),
            (b"T1 0 2\n", "malformed times"),
            (b"\n", "empty control line"),
            (b"Xhello\n", "expected a control line"),
        ] {
            let mut tracker = tracker("scp -r -t /srv");
            tracker.sink_bytes(b"\0").unwrap();
            let error = tracker.source_bytes(line).unwrap_err();
            assert!(
                error.0.contains(expected),
                "{error} should say {expected:?}"
            );
            assert_eq!(tracker.sink_bytes(b"\0"), Err(error), "the error stays");
        }
    }

    #[test]
    fn lines_nesting_and_bytes_sent_ahead_are_bounded() {
        let mut tracker = ScpTracker::from_command("scp -r -t /srv").unwrap();
        tracker.sink_bytes(b"\0").unwrap();
        for _ in 0..MAX_DEPTH {
            tracker.source_bytes(b"D0755 0 d\n").unwrap();
            tracker.sink_bytes(b"\0").unwrap();
        }
        let error = tracker.source_bytes(b"D0755 0 d\n").unwrap_err();
        assert!(error.0.contains("nested more than"), "{error}");

        let mut tracker = ScpTracker::from_command("scp -t /srv/").unwrap();
        tracker.sink_bytes(b"\0").unwrap();
        tracker.source_bytes(b"C0644 1 f\n").unwrap();
        let error = tracker
            .source_bytes(&vec![b'x'; MAX_AHEAD + 1])
            .unwrap_err();
        assert!(error.0.contains("without waiting"), "{error}");

        // A line longer than OpenSSH's buffer is cut where OpenSSH cuts it.
        let mut tracker = ScpTracker::from_command("scp -t /srv/").unwrap();
        tracker.sink_bytes(b"\0").unwrap();
        let mut long = b"C0644 1 ".to_vec();
        long.resize(MAX_LINE, b'n');
        tracker.source_bytes(&long).unwrap();
        assert_eq!(
            tracker.phase,
            Phase::ControlAnswer(Control::File {
                name: "n".repeat(MAX_LINE - 8),
                size: 1,
            })
        );
        assert!(tracker.line.is_empty());
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

        fn control() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["C", "D", "E", "T", "\u{1}", "\u{2}"])
        }

        fn answer() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["\0", "\u{1}x\n", ""])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn random_bytes_never_panic(
                recursive in any::<bool>(),
                feeds in feeds(),
            ) {
                let command = if recursive { "scp -r -t /srv" } else { "scp -f /srv/x" };
                let mut tracker = tracker(command);
                for (from_source, bytes) in feeds {
                    let _ = if from_source {
                        tracker.source_bytes(&bytes)
                    } else {
                        tracker.sink_bytes(&bytes)
                    };
                    tracker.take_records();
                }
                tracker.finish();
            }

            #[test]
            fn random_control_lines_never_panic(
                lines in prop::collection::vec((control(), "[0-9 a-z./]{0,24}", answer()), 0..30),
            ) {
                let mut tracker = tracker("scp -r -t /srv");
                let _ = tracker.sink_bytes(b"\0");
                for (kind, rest, answer) in lines {
                    let _ = tracker.source_bytes(format!("{kind}{rest}\n").as_bytes());
                    let _ = tracker.sink_bytes(answer.as_bytes());
                }
                tracker.finish();
            }

            #[test]
            fn random_commands_never_panic(command in "\\PC{0,60}") {
                let _ = ScpTracker::from_command(&command);
                let _ = ScpTracker::from_command(&format!("scp -t {command}"));
            }
        }
    }
}
