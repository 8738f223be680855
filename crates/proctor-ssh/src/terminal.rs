//! A shell's terminal stream as the journal records it: output batched into `term.out` events, typed
//! input into `term.in` events unless the terminal did not echo it, and resizes; plus [`LineEditor`],
//! which rebuilds the command lines a user types for guardrails. Pure: the relay feeds bytes and
//! times in and records the events that come out (each is masked on its own before it is stored).
//!
//! # Output
//!
//! Output is batched: an event is made once the batch holds `batch_bytes`, or once its first byte is
//! `batch_ms` old ([`Terminal::tick`], or the next [`Terminal::output`]). A batch is cut after its
//! last ASCII whitespace and the rest is held for the next one, so that a secret is never split
//! between two events (masking sees one event at a time). What is held is at most `max_held_bytes`:
//! a longer run without whitespace is cut anyway, keeping its last `max_held_bytes` held. A batch
//! that spans a pause of `batch_ms` or more (a word held until the output went on) is split at the
//! first whitespace after the pause, so that each part keeps the time its first byte arrived at.
//! Output is bytes: it is never cut inside a UTF-8 sequence, and invalid bytes become U+FFFD.
//!
//! # Input, and the echo inference
//!
//! A password typed at a prompt that does not echo (`sudo`, `su`, `ssh` to a further host) must not
//! be stored. The gateway cannot read the target's terminal modes, so it infers echo from the
//! output that follows the input:
//!
//! - Typed input is held until its printable characters are seen in the output, in order, as a
//!   subsequence: escape sequences and control characters in between are skipped, and so are a few
//!   other printable characters, so that shells that redraw the line as it is typed (syntax
//!   highlighting, suggestions) are followed. Then it is recorded as `term.in`.
//! - A line (input up to `\r`, `\n` or Ctrl-C) is taken as not echoed, and recorded as
//!   `term.in {hidden: true, bytes}` (its bytes, its end included) without its text, when: the
//!   output starts a new line (LF) before its echo is complete, except for the LF that echoes the
//!   end of the line before it; more printable characters than the line has had echoed so far
//!   (plus [`ECHO_SLACK`]) come before the echo of its next one; its end was typed
//!   [`ECHO_WAIT_MS`] ago and its echo is still not complete; more than [`MAX_HELD_INPUT`] bytes of
//!   input are held (a longer paste is hidden); or the channel ends.
//! - Once a line is taken as not echoed, the rest of it is hidden too, recorded as it comes in
//!   batches of `batch_ms`.
//! - Input without printable characters (arrows, control keys, Enter alone) is recorded as it is,
//!   after any input held before it.
//!
//! Limits: the inference errs toward hiding. Input typed ahead of a prompt, typed while a program
//! prints lines, or sent to a full-screen program that does not echo keys (`vim`'s commands,
//! `less`) is recorded as hidden, though the output still shows its effect (and the echo of what
//! was hidden, if it came late). It can err the other
//! way only when the characters of a not-echoed line happen to appear in order in the output within
//! the same line, with few characters in between: a password typed ahead of its own prompt whose
//! characters the prompt spells out. Events are recorded in order and their times never go back: an
//! event held past a later one (input waiting for its echo, a held word) takes the later time.

use std::collections::VecDeque;

use serde_json::{json, Value};

/// How long after a line end is typed its echo may still come (a slow link) before the line is
/// taken as not echoed; also how long the LF that echoes a line end is waited for.
pub const ECHO_WAIT_MS: u64 = 2000;
/// Input held waiting for its echo, at most: beyond it, the oldest held input is recorded as hidden.
pub const MAX_HELD_INPUT: usize = 4096;
/// Printable output characters allowed between two echoed characters, beyond the count of the
/// characters typed on the line before them (a shell that redraws the line reprints those).
pub const ECHO_SLACK: usize = 2;
/// The longest line [`LineEditor`] rebuilds; the rest is ignored and the line is not exact.
pub const MAX_LINE: usize = 8 * 1024;
/// Characters of one escape string (OSC, DCS) followed before it is taken as ended.
const MAX_ESCAPE_STRING: u16 = 4096;
/// Arrival times kept for the output not yet recorded; closer ones are merged beyond it.
const MAX_MARKS: usize = 64;
/// Line ends whose LF echo is waited for, at most.
const MAX_NEWLINE_ECHOES: usize = 16;
/// Characters of an escape sequence [`LineEditor`] keeps to recognise bracketed paste.
const MAX_SEQUENCE: usize = 8;

/// One event of a terminal stream. `ms` counts milliseconds since the channel started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TermEvent {
    /// Output from the target; `ms` is when its first byte arrived.
    Out { ms: u64, data: String },
    /// Input typed by the user, seen echoed (or without printable characters).
    In { ms: u64, data: String },
    /// Input typed while the terminal did not echo it: only its length is recorded.
    HiddenIn { ms: u64, bytes: usize },
    /// The user's terminal changed size.
    Resize { ms: u64, cols: u32, rows: u32 },
}

impl TermEvent {
    /// The journal event kind.
    pub fn kind(&self) -> &'static str {
        match self {
            TermEvent::Out { .. } => "term.out",
            TermEvent::In { .. } | TermEvent::HiddenIn { .. } => "term.in",
            TermEvent::Resize { .. } => "term.resize",
        }
    }

    /// The event's body, for the channel `channel`.
    pub fn body(&self, channel: u32) -> Value {
        match self {
            TermEvent::Out { ms, data } | TermEvent::In { ms, data } => {
                json!({"channel": channel, "ms": ms, "data": data})
            }
            TermEvent::HiddenIn { ms, bytes } => {
                json!({"channel": channel, "ms": ms, "hidden": true, "bytes": bytes})
            }
            TermEvent::Resize { ms, cols, rows } => {
                json!({"channel": channel, "ms": ms, "cols": cols, "rows": rows})
            }
        }
    }

    fn ms_mut(&mut self) -> &mut u64 {
        match self {
            TermEvent::Out { ms, .. }
            | TermEvent::In { ms, .. }
            | TermEvent::HiddenIn { ms, .. }
            | TermEvent::Resize { ms, .. } => ms,
        }
    }
}

/// How output is batched. `batch_bytes` is at least 8 and `max_held_bytes` at most half of it, so
/// that every full batch makes progress.
#[derive(Clone, Copy, Debug)]
pub struct TerminalLimits {
    /// Output bytes that make a batch full.
    pub batch_bytes: usize,
    /// Age of a batch's first byte at which it is recorded.
    pub batch_ms: u64,
    /// Output held after a batch's last whitespace, at most.
    pub max_held_bytes: usize,
    /// Whether input is held until its echo is seen (a terminal), or stored as typed (no PTY:
    /// nothing is ever echoed).
    pub infer_echo: bool,
}

impl Default for TerminalLimits {
    fn default() -> Self {
        Self {
            batch_bytes: 16 * 1024,
            batch_ms: 50,
            max_held_bytes: 8 * 1024,
            infer_echo: true,
        }
    }
}

/// One terminal stream (a shell, or an exec with a PTY): bytes and times in, events out.
pub struct Terminal {
    limits: TerminalLimits,
    /// Output not yet recorded.
    out: String,
    /// Where in `out` output arrived at which time: the first at offset 0 whenever `out` is not
    /// empty, offsets and times increasing.
    marks: Vec<(usize, u64)>,
    out_utf8: Utf8Decoder,
    out_escapes: Escapes,
    in_utf8: Utf8Decoder,
    in_escapes: Escapes,
    /// The last input character was a CR (a LF after it ends no further line).
    after_cr: bool,
    /// Input not yet recorded, line by line, oldest first; only the last may be unended.
    lines: VecDeque<HeldLine>,
    /// Deadlines of the LFs expected in the output as the echo of line ends already recorded.
    newline_echoes: VecDeque<u64>,
    /// The time of the last event made: no event goes back before it.
    last_ms: u64,
}

/// A line of input not yet (entirely) recorded.
struct HeldLine {
    /// When the first byte of `text` was typed.
    ms: u64,
    /// Typed and not yet recorded.
    text: String,
    /// The printable characters of `text` not yet seen echoed, in order.
    expected: VecDeque<char>,
    /// Printable characters typed on the line so far.
    typed: usize,
    /// Printable output characters seen since the last echoed one.
    skipped: usize,
    /// When the line's end was typed.
    ended: Option<u64>,
    /// The line's end is echoed as a new line (it is not the LF of a CR LF).
    echoes_newline: bool,
    /// The terminal showed it does not echo this line.
    unechoed: bool,
}

impl HeldLine {
    fn new(ms: u64) -> Self {
        Self {
            ms,
            text: String::new(),
            expected: VecDeque::new(),
            typed: 0,
            skipped: 0,
            ended: None,
            echoes_newline: false,
            unechoed: false,
        }
    }

    /// Whether output is being matched against this line's echo.
    fn awaits_echo(&self) -> bool {
        !self.unechoed && !self.expected.is_empty()
    }

    fn hide(&mut self) {
        self.unechoed = true;
        self.expected.clear();
    }
}

impl Terminal {
    pub fn new(limits: TerminalLimits) -> Self {
        let batch_bytes = limits.batch_bytes.max(8);
        Self {
            limits: TerminalLimits {
                batch_bytes,
                batch_ms: limits.batch_ms,
                max_held_bytes: limits.max_held_bytes.min(batch_bytes / 2),
                infer_echo: limits.infer_echo,
            },
            out: String::new(),
            marks: Vec::new(),
            out_utf8: Utf8Decoder::default(),
            out_escapes: Escapes::default(),
            in_utf8: Utf8Decoder::default(),
            in_escapes: Escapes::default(),
            after_cr: false,
            lines: VecDeque::new(),
            newline_echoes: VecDeque::new(),
            last_ms: 0,
        }
    }

    /// Bytes from the target, arrived at `now_ms`.
    pub fn output(&mut self, now_ms: u64, data: &[u8]) -> Vec<TermEvent> {
        let mut events = Vec::new();
        let text = self.out_utf8.decode(data);
        self.watch_echo(now_ms, &text, &mut events);
        self.flush_aged(now_ms, &mut events);
        self.append_output(now_ms, &text);
        while self.out.len() >= self.limits.batch_bytes {
            let mut window = self.limits.batch_bytes;
            while !self.out.is_char_boundary(window) {
                window -= 1;
            }
            let cut = safe_cut(&self.out[..window], self.limits.max_held_bytes);
            if cut == 0 {
                break;
            }
            self.flush_output(cut, &mut events);
        }
        events
    }

    /// Bytes the user typed, at `now_ms`.
    pub fn input(&mut self, now_ms: u64, data: &[u8]) -> Vec<TermEvent> {
        let mut events = Vec::new();
        self.flush_output(safe_cut(&self.out, self.limits.max_held_bytes), &mut events);
        let text = self.in_utf8.decode(data);
        if !self.limits.infer_echo {
            if !text.is_empty() {
                let data = text.to_string();
                self.push(TermEvent::In { ms: now_ms, data }, &mut events);
            }
            return events;
        }
        for c in text.chars() {
            self.type_char(now_ms, c);
        }
        self.settle(&mut events);
        events
    }

    /// The user's terminal is now `cols` by `rows`.
    pub fn resize(&mut self, now_ms: u64, cols: u32, rows: u32) -> Vec<TermEvent> {
        let mut events = Vec::new();
        self.flush_output(safe_cut(&self.out, self.limits.max_held_bytes), &mut events);
        self.push(
            TermEvent::Resize {
                ms: now_ms,
                cols,
                rows,
            },
            &mut events,
        );
        events
    }

    /// Records what has waited long enough: output batches `batch_ms` old, lines whose echo did not
    /// come in [`ECHO_WAIT_MS`], hidden input `batch_ms` old. Call it every `batch_ms` or so.
    pub fn tick(&mut self, now_ms: u64) -> Vec<TermEvent> {
        let mut events = Vec::new();
        while let Some(line) = self.lines.front_mut() {
            let expired = line
                .ended
                .is_some_and(|ended| now_ms.saturating_sub(ended) >= ECHO_WAIT_MS);
            if !(line.awaits_echo() && expired) {
                break;
            }
            line.hide();
            self.settle(&mut events);
        }
        if let Some(line) = self.lines.front_mut() {
            if line.unechoed
                && !line.text.is_empty()
                && now_ms.saturating_sub(line.ms) >= self.limits.batch_ms
            {
                let bytes = std::mem::take(&mut line.text).len();
                let ms = line.ms;
                self.push(TermEvent::HiddenIn { ms, bytes }, &mut events);
            }
        }
        self.flush_aged(now_ms, &mut events);
        events
    }

    /// Whether the printable input typed so far has been seen echoed: false while some waits for
    /// its echo, or once the current line was taken as not echoed. True when nothing printable is
    /// pending.
    pub fn echoing(&self) -> bool {
        self.lines
            .iter()
            .all(|line| line.expected.is_empty() && !line.unechoed)
    }

    /// The channel ended at `now_ms`: records everything. Input whose echo was not seen is hidden.
    pub fn finish(mut self, now_ms: u64) -> Vec<TermEvent> {
        let mut events = Vec::new();
        if self.in_utf8.finish() {
            self.type_char(now_ms, char::REPLACEMENT_CHARACTER);
        }
        if self.out_utf8.finish() {
            let replacement = char::REPLACEMENT_CHARACTER.to_string();
            self.append_output(now_ms, &replacement);
        }
        for line in &mut self.lines {
            if !line.expected.is_empty() {
                line.hide();
            }
            line.ended.get_or_insert(now_ms);
            line.echoes_newline = false;
        }
        let input_first = match (self.lines.front(), self.marks.first()) {
            (Some(line), Some(&(_, out_ms))) => line.ms <= out_ms,
            _ => true,
        };
        if input_first {
            self.settle(&mut events);
        }
        self.flush_output(self.out.len(), &mut events);
        self.settle(&mut events);
        events
    }

    /// Adds `event`, its time moved up to the last event's if it is earlier.
    fn push(&mut self, mut event: TermEvent, events: &mut Vec<TermEvent>) {
        let ms = event.ms_mut();
        *ms = (*ms).max(self.last_ms);
        self.last_ms = *ms;
        events.push(event);
    }

    fn append_output(&mut self, now_ms: u64, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.marks.last().is_none_or(|&(_, ms)| now_ms > ms) {
            self.marks.push((self.out.len(), now_ms));
            if self.marks.len() > MAX_MARKS {
                // Merge the mark closest in time to the one before it into that one.
                let closest = (1..self.marks.len())
                    .min_by_key(|&i| self.marks[i].1.saturating_sub(self.marks[i - 1].1))
                    .unwrap_or(1);
                self.marks.remove(closest);
            }
        }
        self.out.push_str(text);
    }

    /// Records the output batch if its first byte is `batch_ms` old, up to its safe cut.
    fn flush_aged(&mut self, now_ms: u64, events: &mut Vec<TermEvent>) {
        if let Some(&(_, first)) = self.marks.first() {
            if now_ms.saturating_sub(first) >= self.limits.batch_ms {
                self.flush_output(safe_cut(&self.out, self.limits.max_held_bytes), events);
            }
        }
    }

    /// Records `out[..cut]`, split where the output paused for `batch_ms` or more (at whitespace),
    /// and keeps the rest.
    fn flush_output(&mut self, cut: usize, events: &mut Vec<TermEvent>) {
        let Some(&(_, first_ms)) = self.marks.first() else {
            return;
        };
        if cut == 0 {
            return;
        }
        let mut start = 0;
        let mut start_ms = first_ms;
        for i in 1..self.marks.len() {
            let (at, ms) = self.marks[i];
            if at >= cut {
                break;
            }
            if at <= start || ms < start_ms.saturating_add(self.limits.batch_ms) {
                continue;
            }
            let Some(split) = boundary_from(&self.out[..cut], at) else {
                break;
            };
            if split >= cut {
                break;
            }
            let data = self.out[start..split].to_owned();
            self.push(TermEvent::Out { ms: start_ms, data }, events);
            start = split;
            start_ms = arrival(&self.marks, split);
        }
        let data = self.out[start..cut].to_owned();
        self.push(TermEvent::Out { ms: start_ms, data }, events);
        let rest_ms = arrival(&self.marks, cut);
        self.out.drain(..cut);
        self.marks.retain(|&(at, _)| at > cut);
        for mark in &mut self.marks {
            mark.0 -= cut;
        }
        if !self.out.is_empty() {
            self.marks.insert(0, (0, rest_ms));
        }
    }

    /// Adds one typed character to the held input.
    fn type_char(&mut self, now_ms: u64, c: char) {
        let class = self.in_escapes.classify(c);
        if self.lines.back().is_none_or(|line| line.ended.is_some()) {
            self.lines.push_back(HeldLine::new(now_ms));
        }
        let Some(line) = self.lines.back_mut() else {
            return;
        };
        if line.text.is_empty() {
            line.ms = now_ms;
        }
        line.text.push(c);
        match class {
            Class::Text => {
                line.typed += 1;
                if !line.unechoed {
                    line.expected.push_back(c);
                }
            }
            Class::Control if matches!(c, '\r' | '\n' | '\u{3}') => {
                line.ended = Some(now_ms);
                line.echoes_newline = !(c == '\n' && self.after_cr);
            }
            Class::Control | Class::Escape => {}
        }
        self.after_cr = c == '\r';
    }

    /// Follows the output `text`, arrived at `now_ms`, for the echo of the held input.
    fn watch_echo(&mut self, now_ms: u64, text: &str, events: &mut Vec<TermEvent>) {
        for c in text.chars() {
            match self.out_escapes.classify(c) {
                Class::Escape => {}
                Class::Control if c == '\n' => {
                    self.newline_echoes.retain(|&deadline| deadline >= now_ms);
                    if self.newline_echoes.pop_front().is_some() {
                        continue;
                    }
                    if let Some(line) = self.lines.front_mut().filter(|l| l.awaits_echo()) {
                        line.hide();
                        self.settle(events);
                    }
                }
                Class::Control => {}
                Class::Text => {
                    let Some(line) = self.lines.front_mut().filter(|l| l.awaits_echo()) else {
                        continue;
                    };
                    if line.expected.front() == Some(&c) {
                        line.expected.pop_front();
                        line.skipped = 0;
                        if line.expected.is_empty() {
                            self.settle(events);
                        }
                    } else {
                        line.skipped += 1;
                        let echoed_before = line.typed.saturating_sub(line.expected.len());
                        if line.skipped > echoed_before + ECHO_SLACK {
                            line.hide();
                            self.settle(events);
                        }
                    }
                }
            }
        }
    }

    /// Records the held input that is resolved, oldest first: echoed input as `term.in`, ended
    /// lines taken as not echoed as hidden; and hides the oldest input while too much is held.
    fn settle(&mut self, events: &mut Vec<TermEvent>) {
        loop {
            let held: usize = self.lines.iter().map(|line| line.text.len()).sum();
            let Some(line) = self.lines.front_mut() else {
                return;
            };
            let over = held > MAX_HELD_INPUT;
            if over && line.awaits_echo() {
                line.hide();
            }
            if line.awaits_echo() {
                return;
            }
            let record = !line.text.is_empty() && (!line.unechoed || line.ended.is_some() || over);
            let ended = line.ended.is_some();
            let echoes_newline = line.echoes_newline && !line.unechoed;
            let event = record.then(|| {
                let text = std::mem::take(&mut line.text);
                if line.unechoed {
                    TermEvent::HiddenIn {
                        ms: line.ms,
                        bytes: text.len(),
                    }
                } else {
                    TermEvent::In {
                        ms: line.ms,
                        data: text,
                    }
                }
            });
            let deadline = line.ended.map(|at| at.saturating_add(ECHO_WAIT_MS));
            if let Some(event) = event {
                self.push(event, events);
            }
            if !ended {
                if over {
                    continue;
                }
                return;
            }
            self.lines.pop_front();
            if let (true, Some(deadline)) = (echoes_newline, deadline) {
                if self.newline_echoes.len() == MAX_NEWLINE_ECHOES {
                    self.newline_echoes.pop_front();
                }
                self.newline_echoes.push_back(deadline);
            }
        }
    }
}

/// Where a batch may be cut without splitting a word: after its last ASCII whitespace, or, if that
/// leaves more than `max_held` bytes, `max_held` bytes (rounded to a character) before its end.
fn safe_cut(text: &str, max_held: usize) -> usize {
    let after_space = text
        .bytes()
        .rposition(|b| b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let mut forced = text.len().saturating_sub(max_held);
    while !text.is_char_boundary(forced) {
        forced += 1;
    }
    after_space.max(forced)
}

/// The first place at or after `at` that follows whitespace: `at` itself if whitespace ends there,
/// else the end of the next run of whitespace.
fn boundary_from(text: &str, at: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if at > 0 && bytes[at - 1].is_ascii_whitespace() {
        return Some(at);
    }
    let space = at + bytes[at..].iter().position(u8::is_ascii_whitespace)?;
    Some(
        bytes[space..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(bytes.len(), |n| space + n),
    )
}

/// When the output byte at `offset` arrived.
fn arrival(marks: &[(usize, u64)], offset: usize) -> u64 {
    marks
        .iter()
        .take_while(|&&(at, _)| at <= offset)
        .last()
        .map_or(0, |&(_, ms)| ms)
}

/// UTF-8 decoding of a byte stream that arrives in pieces: an incomplete sequence at the end of a
/// piece waits for the next, invalid bytes become U+FFFD (as `String::from_utf8_lossy` does).
#[derive(Debug, Default)]
struct Utf8Decoder {
    /// The start of a sequence cut by the end of the last piece: at most 3 bytes.
    partial: Vec<u8>,
}

impl Utf8Decoder {
    fn decode(&mut self, data: &[u8]) -> String {
        let joined;
        let mut rest = if self.partial.is_empty() {
            data
        } else {
            let mut bytes = std::mem::take(&mut self.partial);
            bytes.extend_from_slice(data);
            joined = bytes;
            &joined[..]
        };
        let mut text = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    return text;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    text.push_str(&String::from_utf8_lossy(valid));
                    match error.error_len() {
                        Some(len) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                        None => {
                            self.partial = after.to_vec();
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// Whether an incomplete sequence was left at the end (it stands for one U+FFFD).
    fn finish(&mut self) -> bool {
        !std::mem::take(&mut self.partial).is_empty()
    }
}

/// What a character of a terminal stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Printed.
    Text,
    /// A control character acted on (CR, LF, backspace...).
    Control,
    /// Part of an escape sequence.
    Escape,
}

/// The escape sequences of a terminal stream (ECMA-48 as xterm speaks it): ESC sequences, CSI,
/// SS3, and the strings OSC, DCS, SOS, PM and APC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Escapes {
    #[default]
    Ground,
    Escape,
    Intermediate,
    Csi,
    Ss3,
    /// Inside a string, with the count of its characters so far.
    String(u16),
    /// An ESC inside a string: `\` ends it.
    StringEscape,
}

impl Escapes {
    fn classify(&mut self, c: char) -> Class {
        use Escapes::*;
        match (*self, c) {
            (Ground, '\u{1b}') => {
                *self = Escape;
                Class::Escape
            }
            (Ground, c) if c.is_control() => Class::Control,
            (Ground, _) => Class::Text,
            // CAN and SUB abort a sequence; ESC starts another.
            (_, '\u{18}' | '\u{1a}') => {
                *self = Ground;
                Class::Escape
            }
            (String(_), '\u{1b}') => {
                *self = StringEscape;
                Class::Escape
            }
            (_, '\u{1b}') => {
                *self = Escape;
                Class::Escape
            }
            (String(count), c) => {
                *self = if c == '\u{7}' || count >= MAX_ESCAPE_STRING {
                    Ground
                } else {
                    String(count + 1)
                };
                Class::Escape
            }
            (StringEscape, '\\') => {
                *self = Ground;
                Class::Escape
            }
            (StringEscape, c) => {
                *self = Escape;
                self.classify(c)
            }
            // C0 controls inside a sequence are acted on, and the sequence goes on.
            (_, c) if c.is_ascii_control() && c != '\u{7f}' => Class::Control,
            (Escape, c) => {
                *self = match c {
                    '[' => Csi,
                    ']' | 'P' | 'X' | '^' | '_' => String(0),
                    'O' => Ss3,
                    ' '..='/' => Intermediate,
                    _ => Ground,
                };
                Class::Escape
            }
            (Intermediate, ' '..='/') | (Csi, ' '..='?') => Class::Escape,
            (Intermediate | Csi | Ss3, _) => {
                *self = Ground;
                Class::Escape
            }
        }
    }
}

/// A command line as typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedLine {
    pub text: String,
    /// False when the line may differ from `text`: it was edited with keys whose effect depends on
    /// the shell (arrows, history, Tab completion, other control keys) or it was too long.
    pub exact: bool,
}

/// Rebuilds, best effort, the command line a user types in a shell from the keys typed, for
/// guardrails: printable characters, backspace, Ctrl-U (kill the line), Ctrl-W (kill the word
/// before), Ctrl-C (discard the line). It assumes the cursor stays at the end of the line: escape
/// sequences (arrows, Home, Alt-keys), Tab and other control keys are skipped and make the line
/// inexact. Bracketed paste markers are skipped and keep it exact.
#[derive(Debug)]
pub struct LineEditor {
    text: String,
    exact: bool,
    escapes: Escapes,
    /// The escape sequence being typed, after its ESC (its first [`MAX_SEQUENCE`] characters).
    sequence: String,
    utf8: Utf8Decoder,
    after_cr: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub fn new() -> Self {
        Self {
            text: String::new(),
            exact: true,
            escapes: Escapes::Ground,
            sequence: String::new(),
            utf8: Utf8Decoder::default(),
            after_cr: false,
        }
    }

    /// One typed byte; the line when it ends (`\r` or `\n`, a CR LF ending one line).
    pub fn feed(&mut self, byte: u8) -> Option<TypedLine> {
        let mut line = None;
        for c in self.utf8.decode(&[byte]).chars() {
            if let Some(ended) = self.feed_char(c) {
                line = Some(ended);
            }
        }
        line
    }

    fn feed_char(&mut self, c: char) -> Option<TypedLine> {
        let after_cr = std::mem::replace(&mut self.after_cr, c == '\r');
        match self.escapes.classify(c) {
            Class::Escape => {
                if c == '\u{1b}' {
                    self.sequence.clear();
                } else if self.sequence.len() < MAX_SEQUENCE {
                    self.sequence.push(c);
                }
                if self.escapes == Escapes::Ground
                    && !matches!(self.sequence.as_str(), "[200~" | "[201~")
                {
                    self.exact = false;
                }
            }
            Class::Control => match c {
                '\n' if after_cr => {}
                '\r' | '\n' => {
                    let text = std::mem::take(&mut self.text);
                    let exact = std::mem::replace(&mut self.exact, true);
                    return Some(TypedLine { text, exact });
                }
                '\u{7f}' | '\u{8}' => {
                    self.text.pop();
                }
                '\u{15}' => self.text.clear(),
                '\u{17}' => {
                    let word_end = self.text.trim_end_matches(char::is_whitespace).len();
                    self.text.truncate(word_end);
                    let word_start = self
                        .text
                        .char_indices()
                        .rev()
                        .find(|&(_, c)| c.is_whitespace())
                        .map_or(0, |(i, c)| i + c.len_utf8());
                    self.text.truncate(word_start);
                }
                '\u{3}' => {
                    self.text.clear();
                    self.exact = true;
                }
                '\u{c}' => {}
                _ => self.exact = false,
            },
            Class::Text => {
                if self.text.len() + c.len_utf8() <= MAX_LINE {
                    self.text.push(c);
                } else {
                    self.exact = false;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_data(events: &[TermEvent]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| match e {
                TermEvent::Out { data, .. } => Some(data.as_str()),
                _ => None,
            })
            .collect()
    }

    fn typed(events: &[TermEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                TermEvent::In { data, .. } => Some(data.as_str()),
                _ => None,
            })
            .collect()
    }

    fn hidden(events: &[TermEvent]) -> Vec<usize> {
        events
            .iter()
            .filter_map(|e| match e {
                TermEvent::HiddenIn { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .collect()
    }

    fn ms(event: &TermEvent) -> u64 {
        event.body(0)["ms"].as_u64().unwrap()
    }

    /// Types `keys` one byte every 100 ms from `at`, the target answering each with `echo(key)`
    /// 5 ms later; returns the events and the time after the last key.
    fn type_keys(
        terminal: &mut Terminal,
        mut at: u64,
        keys: &str,
        echo: impl Fn(u8) -> Vec<u8>,
    ) -> (Vec<TermEvent>, u64) {
        let mut events = Vec::new();
        for &key in keys.as_bytes() {
            events.extend(terminal.input(at, &[key]));
            events.extend(terminal.output(at + 5, &echo(key)));
            events.extend(terminal.tick(at + 50));
            at += 100;
        }
        (events, at)
    }

    #[test]
    fn many_small_writes_make_few_events() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = Vec::new();
        let mut expected = String::new();
        for i in 0..1000u64 {
            let line = format!("line {i}\r\n");
            expected.push_str(&line);
            events.extend(terminal.output(i, line.as_bytes()));
            if i % 50 == 49 {
                events.extend(terminal.tick(i));
            }
        }
        events.extend(terminal.finish(1000));
        assert!(events.len() <= 25, "{} events", events.len());
        assert_eq!(out_data(&events).concat(), expected);
        assert!(events.windows(2).all(|w| ms(&w[0]) <= ms(&w[1])));
    }

    #[test]
    fn a_large_write_is_cut_into_full_batches_at_whitespace() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let text = "0123456789abcdef ".repeat(4000);
        let mut events = terminal.output(0, text.as_bytes());
        events.extend(terminal.finish(1));
        let data = out_data(&events);
        assert_eq!(data.concat(), text);
        assert!(data.len() >= 4 && data.len() <= 6, "{} events", data.len());
        assert!(data
            .iter()
            .all(|d| d.len() <= 16 * 1024 && d.ends_with(' ')));
    }

    #[test]
    fn a_secret_written_in_pieces_across_ticks_comes_out_whole() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"$ cat creds\r\naws_access_key_id = AKIA");
        events.extend(terminal.tick(60));
        events.extend(terminal.output(70, b"IOSFODNN"));
        events.extend(terminal.tick(130));
        events.extend(terminal.tick(190));
        events.extend(terminal.output(200, b"7EXAMPLE"));
        events.extend(terminal.tick(260));
        events.extend(terminal.output(300, b"\r\n$ "));
        events.extend(terminal.tick(360));
        let data = out_data(&events);
        assert_eq!(
            data.concat(),
            "$ cat creds\r\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\r\n$ "
        );
        let with_key: Vec<_> = data.iter().filter(|d| d.contains("AKIA")).collect();
        assert_eq!(with_key.len(), 1);
        assert!(with_key[0].contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(terminal.finish(400).is_empty());
    }

    #[test]
    fn without_a_terminal_input_is_recorded_as_sent() {
        // No PTY: nothing is echoed, and what a command reads is not a password prompt's answer.
        let mut terminal = Terminal::new(TerminalLimits {
            infer_echo: false,
            ..TerminalLimits::default()
        });
        let events = terminal.input(3, b"SELECT 1;\n");
        assert_eq!(
            events,
            vec![TermEvent::In {
                ms: 3,
                data: "SELECT 1;\n".into()
            }]
        );
    }

    #[test]
    fn a_word_without_whitespace_is_held_no_further_than_the_limit() {
        let limits = TerminalLimits {
            batch_bytes: 64,
            batch_ms: 50,
            max_held_bytes: 16,
            ..TerminalLimits::default()
        };
        let mut terminal = Terminal::new(limits);
        let mut events = terminal.output(0, "x".repeat(40).as_bytes());
        events.extend(terminal.tick(100));
        assert_eq!(out_data(&events), ["x".repeat(24)]);
        events.extend(terminal.finish(200));
        assert_eq!(out_data(&events).concat(), "x".repeat(40));
    }

    #[test]
    fn a_prompt_ending_in_a_space_is_recorded_whole() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        assert!(terminal.output(0, b"alice@db1:~$ ").is_empty());
        let events = terminal.tick(50);
        assert_eq!(
            events,
            [TermEvent::Out {
                ms: 0,
                data: "alice@db1:~$ ".into()
            }]
        );
    }

    #[test]
    fn a_character_split_between_writes_is_not_cut() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"caf\xc3");
        events.extend(terminal.tick(100));
        events.extend(terminal.output(120, b"\xa9 \xe2\x82"));
        events.extend(terminal.tick(200));
        events.extend(terminal.output(210, b"\xac\r\n"));
        events.extend(terminal.finish(300));
        assert_eq!(out_data(&events).concat(), "café €\r\n");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"a\xffb \xe2\x82");
        events.extend(terminal.finish(10));
        assert_eq!(out_data(&events).concat(), "a\u{fffd}b \u{fffd}");
    }

    #[test]
    fn a_held_word_keeps_its_time_and_the_output_after_a_pause_keeps_its_own() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"$ ");
        events.extend(terminal.tick(50));
        events.extend(terminal.output(1000, b"l"));
        events.extend(terminal.output(1100, b"s"));
        events.extend(terminal.tick(1150));
        events.extend(terminal.output(4000, b"\r\na.txt  b.txt\r\n$ "));
        events.extend(terminal.tick(4050));
        let out: Vec<_> = events
            .iter()
            .filter(|e| e.kind() == "term.out")
            .map(|e| (ms(e), e.body(0)["data"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            out,
            [
                (0, "$ ".to_owned()),
                (1000, "ls\r\n".to_owned()),
                (4000, "a.txt  b.txt\r\n$ ".to_owned())
            ]
        );
    }

    #[test]
    fn a_resize_or_input_comes_after_the_output_before_it() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        assert!(terminal
            .output(0, b"top - 10:00:00 up 1 day\r\n")
            .is_empty());
        let events = terminal.resize(10, 120, 40);
        assert_eq!(
            events,
            [
                TermEvent::Out {
                    ms: 0,
                    data: "top - 10:00:00 up 1 day\r\n".into()
                },
                TermEvent::Resize {
                    ms: 10,
                    cols: 120,
                    rows: 40
                }
            ]
        );
        assert!(terminal.output(20, b"Tasks: 1 total\r\n").is_empty());
        let events = terminal.input(30, b"q");
        assert_eq!(out_data(&events), ["Tasks: 1 total\r\n"]);
    }

    #[test]
    fn input_echoed_by_the_shell_is_recorded() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"$ ");
        let (typing, at) = type_keys(&mut terminal, 100, "ls -la", |key| vec![key]);
        events.extend(typing);
        assert!(terminal.echoing());
        events.extend(terminal.input(at, b"\r"));
        events.extend(terminal.output(at + 5, b"\r\ntotal 0\r\n$ "));
        events.extend(terminal.finish(at + 100));
        assert_eq!(typed(&events), "ls -la\r");
        assert!(hidden(&events).is_empty());
        assert!(events.windows(2).all(|w| ms(&w[0]) <= ms(&w[1])));
    }

    #[test]
    fn input_echoed_with_colors_and_redraws_between_its_characters_is_recorded() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"$ ");
        // The way zsh-syntax-highlighting answers: each key redraws the word in its color.
        let (typing, at) = type_keys(&mut terminal, 100, "ls", |key| match key {
            b'l' => b"\x1b[31ml\x1b[39m".to_vec(),
            _ => b"\x08\x1b[32mls\x1b[39m".to_vec(),
        });
        events.extend(typing);
        events.extend(terminal.input(at, b"\r"));
        events.extend(terminal.output(at + 5, b"\x1b[?2004l\r\r\na.txt\r\n$ "));
        events.extend(terminal.finish(at + 100));
        assert_eq!(typed(&events), "ls\r");
        assert!(hidden(&events).is_empty());
    }

    #[test]
    fn a_pasted_line_is_recorded_once_its_echo_comes() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"$ ");
        events.extend(terminal.input(100, b"echo hi\r"));
        assert!(!terminal.echoing());
        assert!(typed(&events).is_empty());
        events.extend(terminal.output(110, b"echo hi\r\nhi\r\n$ "));
        assert!(terminal.echoing());
        assert_eq!(typed(&events), "echo hi\r");
        // Typed ahead in canonical mode, both lines are echoed at once.
        events.extend(terminal.input(200, b"id\rpwd\r"));
        events.extend(terminal.output(210, b"id\r\npwd\r\nuid=0(root)\r\n/root\r\n"));
        events.extend(terminal.finish(300));
        assert_eq!(typed(&events), "echo hi\rid\rpwd\r");
        assert!(hidden(&events).is_empty());
    }

    #[test]
    fn keys_without_printable_characters_are_recorded_as_they_are() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let events = terminal.input(0, b"\x1b[A");
        assert_eq!(
            events,
            [TermEvent::In {
                ms: 0,
                data: "\x1b[A".into()
            }]
        );
        assert_eq!(typed(&terminal.input(10, b"\r")), "\r");
        assert_eq!(typed(&terminal.input(20, b"\x03")), "\x03");
    }

    fn assert_never_recorded(events: &[TermEvent], secret: &str) {
        for event in events {
            let body = event.body(1).to_string();
            assert!(!body.contains(secret), "{body}");
            for piece in [&secret[..3], &secret[secret.len() - 3..]] {
                assert!(event.kind() != "term.in" || !body.contains(piece), "{body}");
            }
        }
    }

    #[test]
    fn a_password_typed_without_echo_is_hidden() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"$ sudo -i\r\n[sudo] password for alice: ");
        let (typing, at) = type_keys(&mut terminal, 100, "hunter2", |_| Vec::new());
        events.extend(typing);
        assert!(!terminal.echoing());
        events.extend(terminal.input(at, b"\r"));
        // sudo prints the new line the terminal did not echo; the shell's prompt follows.
        events.extend(terminal.output(at + 5, b"\n"));
        events.extend(terminal.output(at + 300, b"root@db1:~# "));
        assert!(terminal.echoing());
        events.extend(terminal.finish(at + 400));
        assert_eq!(hidden(&events), [8]);
        assert!(typed(&events).is_empty());
        assert_never_recorded(&events, "hunter2");
    }

    #[test]
    fn a_password_whose_characters_the_output_spells_after_its_line_is_still_hidden() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"Password: ");
        events.extend(terminal.input(100, b"root\r"));
        events.extend(terminal.output(200, b"\r\nWelcome root\r\n# "));
        events.extend(terminal.finish(300));
        assert_eq!(hidden(&events), [5]);
        assert_never_recorded(&events[..events.len() - 1], "root\r");
        assert!(typed(&events).is_empty());
    }

    #[test]
    fn a_password_with_no_answer_is_hidden_once_the_echo_is_overdue() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = terminal.output(0, b"Enter passphrase: ");
        events.extend(terminal.input(100, b"correct horse\r"));
        events.extend(terminal.tick(100 + ECHO_WAIT_MS - 1));
        assert!(hidden(&events).is_empty());
        events.extend(terminal.tick(100 + ECHO_WAIT_MS));
        assert_eq!(hidden(&events), [14]);
        assert_never_recorded(&events, "correct horse");
    }

    #[test]
    fn keys_a_full_screen_program_does_not_echo_are_hidden_in_batches() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let mut events = Vec::new();
        let mut at = 0;
        for key in b"jjjjkkkk" {
            events.extend(terminal.input(at, &[*key]));
            events.extend(terminal.output(at + 5, b"\x1b[5;1Hsome other text on screen"));
            events.extend(terminal.tick(at + 50));
            at += 100;
        }
        events.extend(terminal.finish(at));
        assert_eq!(hidden(&events).iter().sum::<usize>(), 8);
        assert!(typed(&events).is_empty());
    }

    #[test]
    fn too_much_input_held_without_echo_is_hidden() {
        let mut terminal = Terminal::new(TerminalLimits::default());
        let events = terminal.input(0, "a".repeat(MAX_HELD_INPUT + 1).as_bytes());
        assert_eq!(hidden(&events), [MAX_HELD_INPUT + 1]);
    }

    #[test]
    fn event_bodies_name_the_channel() {
        let event = TermEvent::HiddenIn { ms: 7, bytes: 3 };
        assert_eq!(event.kind(), "term.in");
        assert_eq!(
            event.body(2),
            json!({"channel": 2, "ms": 7, "hidden": true, "bytes": 3})
        );
        let event = TermEvent::Resize {
            ms: 1,
            cols: 80,
            rows: 24,
        };
        assert_eq!(event.kind(), "term.resize");
        assert_eq!(
            event.body(0),
            json!({"channel": 0, "ms": 1, "cols": 80, "rows": 24})
        );
    }

    fn typed_lines(keys: &[u8]) -> Vec<TypedLine> {
        let mut editor = LineEditor::new();
        keys.iter().filter_map(|&b| editor.feed(b)).collect()
    }

    fn line(text: &str, exact: bool) -> TypedLine {
        TypedLine {
            text: text.into(),
            exact,
        }
    }

    #[test]
    fn the_line_editor_follows_edits() {
        assert_eq!(typed_lines(b"ls -lx\x7fa\r"), [line("ls -la", true)]);
        assert_eq!(
            typed_lines(b"rm -rf /tmp/x\x17\x17/\r"),
            [line("rm /", true)]
        );
        assert_eq!(
            typed_lines(b"rm -rf  \x17\x08\x08\x08mv\r"),
            [line("mv", true)]
        );
        assert_eq!(
            typed_lines(b"drop\x15select 1\r\n"),
            [line("select 1", true)]
        );
        assert_eq!(typed_lines(b"rm -rf /\x03ls\r"), [line("ls", true)]);
        assert_eq!(typed_lines("écho\r".as_bytes()), [line("écho", true)]);
        assert_eq!(typed_lines(b"a\rb\n"), [line("a", true), line("b", true)]);
    }

    #[test]
    fn the_line_editor_marks_lines_it_cannot_follow() {
        assert_eq!(typed_lines(b"ls\x1b[Dx\r"), [line("lsx", false)]);
        assert_eq!(
            typed_lines(b"cat /et\tpasswd\r"),
            [line("cat /etpasswd", false)]
        );
        assert_eq!(typed_lines(b"\x1bOAy\r"), [line("y", false)]);
        assert_eq!(typed_lines(b"x\x01y\r"), [line("xy", false)]);
        // The next line is exact again; a bracketed paste keeps it exact.
        assert_eq!(
            typed_lines(b"\x1b[A\recho \x1b[200~hi there\x1b[201~\r"),
            [line("", false), line("echo hi there", true)]
        );
        let long = typed_lines(&[b"x".repeat(MAX_LINE + 10), b"\r".to_vec()].concat());
        assert_eq!(long.len(), 1);
        assert_eq!(long[0].text.len(), MAX_LINE);
        assert!(!long[0].exact);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Out(Vec<u8>),
            In(Vec<u8>),
            Resize(u32, u32),
            Tick,
        }

        fn terminal_bytes() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    Just(b'\x1b'),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b' '),
                    Just(b'['),
                    Just(b']'),
                    Just(0x7f),
                    Just(0xc3),
                    Just(0xa9),
                    b'a'..=b'e',
                ],
                0..24,
            )
        }

        fn ops() -> impl Strategy<Value = Vec<(u64, Op)>> {
            prop::collection::vec(
                (
                    0..300u64,
                    prop_oneof![
                        4 => terminal_bytes().prop_map(Op::Out),
                        3 => terminal_bytes().prop_map(Op::In),
                        1 => (any::<u32>(), any::<u32>()).prop_map(|(c, r)| Op::Resize(c, r)),
                        2 => Just(Op::Tick),
                    ],
                ),
                0..60,
            )
        }

        fn run(limits: TerminalLimits, ops: &[(u64, Op)]) -> (Vec<TermEvent>, Vec<u8>, Vec<u8>) {
            let mut terminal = Terminal::new(limits);
            let (mut events, mut output, mut input) = (Vec::new(), Vec::new(), Vec::new());
            let mut now = 0;
            for (step, op) in ops {
                now += step;
                events.extend(match op {
                    Op::Out(data) => {
                        output.extend_from_slice(data);
                        terminal.output(now, data)
                    }
                    Op::In(data) => {
                        input.extend_from_slice(data);
                        terminal.input(now, data)
                    }
                    Op::Resize(cols, rows) => terminal.resize(now, *cols, *rows),
                    Op::Tick => terminal.tick(now),
                });
                let _ = terminal.echoing();
            }
            events.extend(terminal.finish(now));
            (events, output, input)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn every_byte_is_accounted_for_in_time_order(
                ops in ops(),
                batch_bytes in 0..64usize,
                batch_ms in 0..100u64,
                max_held_bytes in 0..64usize,
            ) {
                let limits = TerminalLimits { batch_bytes, batch_ms, max_held_bytes, ..TerminalLimits::default() };
                let (events, output, input) = run(limits, &ops);
                prop_assert_eq!(out_data(&events).concat(), String::from_utf8_lossy(&output));
                let recorded: usize = typed(&events).len() + hidden(&events).iter().sum::<usize>();
                prop_assert_eq!(recorded, String::from_utf8_lossy(&input).len());
                prop_assert!(events.windows(2).all(|w| ms(&w[0]) <= ms(&w[1])));
                let none_empty = events.iter().all(|e| match e {
                    TermEvent::Out { data, .. } | TermEvent::In { data, .. } => !data.is_empty(),
                    TermEvent::HiddenIn { bytes, .. } => *bytes > 0,
                    TermEvent::Resize { .. } => true,
                });
                prop_assert!(none_empty);
            }

            #[test]
            fn output_is_only_cut_after_whitespace(
                words in prop::collection::vec(
                    ("[A-Za-z0-9+/=_-]{1,20}", prop::sample::select(vec![" ", "\r\n", "\t", "  "])),
                    1..80,
                ),
                pieces in prop::collection::vec((1..30usize, 0..120u64, any::<bool>()), 1..200),
            ) {
                let text: String = words.iter().map(|(word, space)| format!("{word}{space}")).collect();
                let limits = TerminalLimits { batch_bytes: 64, batch_ms: 50, max_held_bytes: 32, ..TerminalLimits::default() };
                let mut terminal = Terminal::new(limits);
                let mut events = Vec::new();
                let (mut at, mut now) = (0, 0);
                for (len, step, tick) in pieces {
                    if at == text.len() {
                        break;
                    }
                    let end = (at + len).min(text.len());
                    now += step;
                    events.extend(terminal.output(now, &text.as_bytes()[at..end]));
                    if tick {
                        events.extend(terminal.tick(now + 50));
                    }
                    at = end;
                }
                events.extend(terminal.output(now, &text.as_bytes()[at..]));
                events.extend(terminal.finish(now));
                let data = out_data(&events);
                prop_assert_eq!(data.concat(), text.clone());
                for piece in &data[..data.len() - 1] {
                    prop_assert!(piece.ends_with(|c: char| c.is_ascii_whitespace()), "{:?}", piece);
                }
            }

            #[test]
            fn the_line_editor_never_panics_and_stays_bounded(keys in terminal_bytes()) {
                let mut editor = LineEditor::new();
                for key in keys {
                    if let Some(line) = editor.feed(key) {
                        prop_assert!(line.text.len() <= MAX_LINE);
                    }
                }
            }
        }
    }
}
