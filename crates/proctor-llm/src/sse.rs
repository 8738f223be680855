//! A server-sent events reader that watches a stream as it passes, without holding it back.
//!
//! Written here rather than taken from a crate because the proxy forwards the provider's bytes as they
//! arrive and only observes them: it needs an incremental, bounded parser over byte chunks, not a
//! stream adapter that owns the body. Per the HTML living standard: lines end with LF, CR or CRLF;
//! `event:` and `data:` fields; a blank line dispatches; comments (`:`) are ignored.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Feeds chunks, returns complete events. A line longer than `max_line` or an event larger than
/// `max_event` is dropped and counted, so a hostile stream cannot grow memory.
pub struct SseReader {
    line: Vec<u8>,
    event: Option<String>,
    data: String,
    max_line: usize,
    max_event: usize,
    skipping_line: bool,
    /// Events (or lines) dropped because they were too large.
    pub oversized: u64,
    last_was_cr: bool,
}

impl SseReader {
    pub fn new(max_line: usize, max_event: usize) -> Self {
        Self {
            line: Vec::new(),
            event: None,
            data: String::new(),
            max_line,
            max_event,
            skipping_line: false,
            oversized: 0,
            last_was_cr: false,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in chunk {
            if b == b'\n' && self.last_was_cr {
                self.last_was_cr = false;
                continue;
            }
            self.last_was_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                if let Some(event) = self.end_line() {
                    events.push(event);
                }
                continue;
            }
            if self.skipping_line {
                continue;
            }
            if self.line.len() >= self.max_line {
                self.skipping_line = true;
                self.oversized += 1;
                self.line.clear();
                continue;
            }
            self.line.push(b);
        }
        events
    }

    fn end_line(&mut self) -> Option<SseEvent> {
        if self.skipping_line {
            self.skipping_line = false;
            return None;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_none() {
                return None;
            }
            let data = std::mem::take(&mut self.data);
            let data = data.strip_suffix('\n').map(str::to_owned).unwrap_or(data);
            return Some(SseEvent {
                event: self.event.take(),
                data,
            });
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    self.oversized += 1;
                } else {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut reader = SseReader::new(1024, 4096);
            let mut events = reader.feed(&stream[..split]);
            events.extend(reader.feed(&stream[split..]));
            assert_eq!(
                events,
                [
                    SseEvent {
                        event: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: None,
                        data: "x\ny".into()
                    },
                    SseEvent {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn oversized_lines_are_dropped_not_buffered() {
        let mut reader = SseReader::new(16, 64);
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 10_000));
        stream.extend(b"\n\ndata: ok\n\n");
        let events = reader.feed(&stream);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "ok");
        assert_eq!(reader.oversized, 1);
    }
}
