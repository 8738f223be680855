//! Recordings as terminal streams, for replay: an SSH channel's terminal (`term.out` and
//! `term.resize`, sized by the channel's `ssh.shell` or its first resize), or a database session
//! drawn as its client's screen (prompt, statement, result sample as a table, outcome) at the times
//! the journal recorded. Both are written as asciicast v2, which `asciinema` and the console's player
//! play. What is played is what the journal holds: secrets masked. Input (`term.in`) is not played:
//! what the terminal echoed of it is in the output.

use std::collections::BTreeSet;

use proctor_journal::{Event, SessionRow};
use serde::Serialize;
use serde_json::{json, Value};

/// Why a session has no recording to play.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplayError(String);

/// The terminal size when the recording does not tell it (asciinema's own default).
const DEFAULT_SIZE: (u32, u32) = (80, 24);

/// One channel's terminal stream.
#[derive(Debug)]
pub struct Recording {
    pub channel: u32,
    term: Option<String>,
    /// Columns and rows when the channel started.
    pub size: (u32, u32),
    /// In time order.
    pub frames: Vec<Frame>,
}

#[derive(Debug)]
pub enum Frame {
    Output { ms: u64, data: String },
    Resize { ms: u64, cols: u32, rows: u32 },
}

/// The first line of an asciicast v2 file.
#[derive(Serialize)]
struct AsciicastHeader {
    version: u8,
    width: u32,
    height: u32,
    timestamp: i64,
    env: Value,
    title: String,
}

fn channel_of(event: &Event) -> Option<u32> {
    as_u32(&event.body["channel"])
}

fn field<'e, T>(
    event: &'e Event,
    name: &str,
    read: impl Fn(&'e Value) -> Option<T>,
) -> Result<T, ReplayError> {
    read(&event.body[name]).ok_or_else(|| {
        ReplayError(format!(
            "event {} ({}) has no valid {name:?}",
            event.seq, event.kind
        ))
    })
}

fn as_u32(value: &Value) -> Option<u32> {
    u32::try_from(value.as_u64()?).ok()
}

impl Recording {
    /// The terminal stream of `channel` (default: the first channel with terminal output), from its
    /// `ssh.shell` or `ssh.exec` to the next start on the same channel number, if any.
    pub fn terminal(
        session: &SessionRow,
        events: &[Event],
        channel: Option<u32>,
    ) -> Result<Self, ReplayError> {
        let with_output = |event: &&Event| event.kind == "term.out";
        let channel = match channel {
            Some(channel) => {
                if !events
                    .iter()
                    .filter(with_output)
                    .any(|e| channel_of(e) == Some(channel))
                {
                    let channels: Vec<_> = events
                        .iter()
                        .filter(with_output)
                        .filter_map(channel_of)
                        .collect::<BTreeSet<_>>()
                        .iter()
                        .map(u32::to_string)
                        .collect();
                    return Err(ReplayError(format!(
                        "channel {channel} of session {} has no terminal output{}",
                        session.id,
                        if channels.is_empty() {
                            String::new()
                        } else {
                            format!(" (channels with terminal output: {})", channels.join(", "))
                        }
                    )));
                }
                channel
            }
            None => events
                .iter()
                .filter(with_output)
                .find_map(channel_of)
                .ok_or_else(|| {
                    ReplayError(format!(
                        "session {} has no terminal output: it recorded no SSH shell or command with a terminal",
                        session.id
                    ))
                })?,
        };
        let (mut term, mut seen) = (None, false);
        // The size at the start, and the size now.
        let (mut size, mut current) = (None, None);
        let mut frames = Vec::new();
        let mut last_ms = 0;
        for event in events.iter().filter(|e| channel_of(e) == Some(channel)) {
            let first = !std::mem::replace(&mut seen, true);
            let ms = match event.kind.as_str() {
                "ssh.shell" | "ssh.exec" if first => {
                    term = event.body["term"].as_str().map(str::to_owned);
                    size = as_u32(&event.body["cols"]).zip(as_u32(&event.body["rows"]));
                    current = size;
                    continue;
                }
                // SSH numbers a new channel like a closed one: the stream ends where another starts.
                "ssh.shell" | "ssh.exec" => break,
                // Times never go back, as players expect.
                "term.out" | "term.resize" => field(event, "ms", Value::as_u64)?.max(last_ms),
                _ => continue,
            };
            let frame = if event.kind == "term.out" {
                let data = field(event, "data", Value::as_str)?;
                Frame::Output {
                    ms,
                    data: data.to_owned(),
                }
            } else {
                let cols = field(event, "cols", as_u32)?;
                let rows = field(event, "rows", as_u32)?;
                // The gateway records a terminal's size as a resize when the channel starts.
                if current.replace((cols, rows)) == Some((cols, rows)) {
                    continue;
                }
                // Without a size at the start, the first resize tells it.
                if size.is_none() {
                    size = current;
                    continue;
                }
                Frame::Resize { ms, cols, rows }
            };
            last_ms = ms;
            frames.push(frame);
        }
        Ok(Self {
            channel,
            term,
            size: size.unwrap_or(DEFAULT_SIZE),
            frames,
        })
    }

    /// asciicast v2: a header line, then one line per output (`"o"`) or resize (`"r"`) event.
    pub fn asciicast(&self, session: &SessionRow) -> String {
        let header = AsciicastHeader {
            version: 2,
            width: self.size.0,
            height: self.size.1,
            timestamp: session.started_at.div_euclid(1_000_000_000),
            env: match &self.term {
                Some(term) => json!({ "TERM": term }),
                None => json!({}),
            },
            title: format!("{}@{} {}", session.identity, session.connection, session.id),
        };
        let mut text = serde_json::to_string(&header).unwrap_or_default();
        text.push('\n');
        for frame in &self.frames {
            let line = match frame {
                Frame::Output { ms, data } => json!([seconds(*ms), "o", data]),
                Frame::Resize { ms, cols, rows } => {
                    json!([seconds(*ms), "r", format!("{cols}x{rows}")])
                }
            };
            text.push_str(&line.to_string());
            text.push('\n');
        }
        text
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The screen size a database session is drawn on.
const DATABASE_SCREEN: (u32, u32) = (120, 32);
/// The widest a result cell is drawn; longer values are cut, as the journal's samples already are.
const CELL_WIDTH: usize = 40;

/// The SSH channels of a session that have terminal output to replay, in order.
pub fn terminal_channels(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e.kind == "term.out")
        .filter_map(channel_of)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Recording {
    /// What a session replays as: an SSH session its terminal (`channel`, or the first with output),
    /// any other session its client's screen.
    pub fn of_session(
        session: &SessionRow,
        events: &[Event],
        channel: Option<u32>,
    ) -> Result<Self, ReplayError> {
        match session.protocol.as_str() {
            "ssh" => Self::terminal(session, events, channel),
            _ if channel.is_some() => Err(ReplayError(format!(
                "session {} is a {} session: it has no terminal channels",
                session.id, session.protocol
            ))),
            _ => Ok(Self::database_screen(session, events)),
        }
    }

    /// A database session drawn as its client's screen: each statement typed at a prompt when it was
    /// received, its result (the recorded sample as a table, or its tag), error or guardrail decision
    /// when it was recorded.
    pub fn database_screen(session: &SessionRow, events: &[Event]) -> Self {
        let prompt = match session.protocol.as_str() {
            "postgres" => format!("{}=> ", session.connection),
            "mysql" => format!("{} [{}]> ", session.protocol, session.connection),
            _ => "> ".to_owned(),
        };
        let mut frames = Vec::new();
        let mut last_ms = 0;
        let mut push = |at: i64, data: String| {
            let ms = u64::try_from((at - session.started_at).div_euclid(1_000_000))
                .unwrap_or(0)
                .max(last_ms);
            last_ms = ms;
            frames.push(Frame::Output { ms, data });
        };
        push(session.started_at, prompt.clone());
        for event in events {
            let b = &event.body;
            let shown = match event.kind.as_str() {
                "db.query" => format!("{}\r\n", screen_lines(text_of(&b["sql"]))),
                "db.result" => format!("{}{prompt}", result_screen(b)),
                "db.error" => format!(
                    "ERROR:  {}\r\n{prompt}",
                    screen_lines(text_of(&b["message"]))
                ),
                "policy.decision" => match b["action"].as_str() {
                    Some("deny") => format!(
                        "{}\r\nERROR:  denied by guardrail rule {}\r\n{prompt}",
                        screen_lines(text_of(&b["sql"])),
                        text_of(&b["rule"])
                    ),
                    Some("require_approval") => format!(
                        "{}\r\n-- held for approval by rule {} (request {})\r\n",
                        screen_lines(text_of(&b["sql"])),
                        text_of(&b["rule"]),
                        text_of(&b["approval"])
                    ),
                    _ => continue,
                },
                "approval" => format!(
                    "-- request {} {}{}\r\n",
                    text_of(&b["approval"]),
                    text_of(&b["outcome"]),
                    b["by"]
                        .as_str()
                        .map(|by| format!(" by {by}"))
                        .unwrap_or_default()
                ),
                "session.end" => format!("\r\n-- session ended: {}\r\n", text_of(&b["reason"])),
                _ => continue,
            };
            push(event.at, shown);
        }
        Self {
            channel: 0,
            term: None,
            size: DATABASE_SCREEN,
            frames,
        }
    }
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Text as a terminal shows it: each line break a carriage return and a line feed.
fn screen_lines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// A cell as one line of at most [`CELL_WIDTH`] characters.
fn cell_text(cell: &Value) -> String {
    let text = match cell {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(CELL_WIDTH) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// A `db.result` as psql shows it: the sample as an aligned table with its row count, or the tag.
fn result_screen(result: &Value) -> String {
    let columns: Vec<String> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(cell_text)
        .collect();
    let rows = result["rows"].as_u64().unwrap_or(0);
    if columns.is_empty() {
        return format!("{}\r\n\r\n", text_of(&result["tag"]));
    }
    let sample: Vec<Vec<String>> = result["sample"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| match row {
            Value::Array(cells) => cells.iter().map(cell_text).collect(),
            other => vec![cell_text(other)],
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in &sample {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, width)| {
                let cell = cells.get(i).map(String::as_str).unwrap_or_default();
                format!(
                    " {cell}{} ",
                    " ".repeat(width - cell.chars().count().min(*width))
                )
            })
            .collect();
        format!("{}\r\n", padded.join("|").trim_end())
    };
    let mut screen = line(&columns);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    screen.push_str(&rule.join("+"));
    screen.push_str("\r\n");
    for row in &sample {
        screen.push_str(&line(row));
    }
    let shown = sample.len() as u64;
    screen.push_str(&match (rows, shown) {
        (1, 1) => "(1 row)\r\n\r\n".to_owned(),
        (rows, shown) if shown < rows => {
            format!("({rows} rows, the first {shown} recorded)\r\n\r\n")
        }
        (rows, _) => format!("({rows} rows)\r\n\r\n"),
    });
    screen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(protocol: &str) -> SessionRow {
        SessionRow {
            id: "s1".into(),
            protocol: protocol.into(),
            identity: "ana".into(),
            connection: "app".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: 1_000_000_000,
            ended_at: None,
            end_reason: None,
            authenticated: true,
            events: 0,
            queries: 0,
            errors: 0,
            findings: 0,
            denials: 0,
        }
    }

    fn event(seq: u64, at_ms: i64, kind: &str, body: Value) -> Event {
        Event {
            session_id: "s1".into(),
            seq,
            at: 1_000_000_000 + at_ms * 1_000_000,
            kind: kind.into(),
            body,
            findings: Vec::new(),
            prev: String::new(),
            hash: String::new(),
        }
    }

    fn screen(recording: &Recording) -> String {
        recording
            .frames
            .iter()
            .map(|frame| match frame {
                Frame::Output { data, .. } => data.as_str(),
                Frame::Resize { .. } => "",
            })
            .collect()
    }

    #[test]
    fn a_database_session_replays_as_its_clients_screen_with_its_timing() {
        let events = vec![
            event(1, 0, "session.start", json!({})),
            event(
                2,
                1500,
                "db.query",
                json!({"sql": "select name, secret\nfrom t"}),
            ),
            event(
                3,
                1520,
                "db.result",
                json!({"query": 2, "columns": ["name", "secret"], "rows": 3,
                       "sample": [["ana", "[MASKED:aws_key]"], ["bo", null]], "tag": "SELECT 3"}),
            ),
            event(4, 4000, "db.query", json!({"sql": "delete from t"})),
            event(
                5,
                4010,
                "db.error",
                json!({"query": 4, "message": "permission denied"}),
            ),
            event(
                6,
                5000,
                "policy.decision",
                json!({"sql": "drop table t", "action": "deny", "rule": "no-drop"}),
            ),
            event(7, 6000, "session.end", json!({"reason": "client closed"})),
        ];
        let recording = Recording::of_session(&session("postgres"), &events, None).unwrap();
        let times: Vec<u64> = recording
            .frames
            .iter()
            .map(|frame| match frame {
                Frame::Output { ms, .. } | Frame::Resize { ms, .. } => *ms,
            })
            .collect();
        assert_eq!(times, [0, 1500, 1520, 4000, 4010, 5000, 6000]);
        let shown = screen(&recording);
        assert!(
            shown.starts_with("app=> select name, secret\r\nfrom t\r\n"),
            "{shown}"
        );
        assert!(
            shown.contains(" name | secret\r\n------+------------------\r\n"),
            "{shown}"
        );
        assert!(
            shown.contains(" ana  | [MASKED:aws_key]\r\n bo   |\r\n"),
            "{shown}"
        );
        assert!(shown.contains("(3 rows, the first 2 recorded)"), "{shown}");
        assert!(
            shown.contains("app=> delete from t\r\nERROR:  permission denied\r\n"),
            "{shown}"
        );
        assert!(
            shown.contains("drop table t\r\nERROR:  denied by guardrail rule no-drop"),
            "{shown}"
        );
        assert!(
            shown.ends_with("-- session ended: client closed\r\n"),
            "{shown}"
        );
        let cast = recording.asciicast(&session("postgres"));
        let header: Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
        assert_eq!(
            (header["width"].as_u64(), header["version"].as_u64()),
            (Some(120), Some(2))
        );
        assert_eq!(cast.lines().count(), 1 + times.len());
    }

    #[test]
    fn only_ssh_sessions_have_terminal_channels() {
        let events = vec![event(1, 0, "db.query", json!({"sql": "select 1"}))];
        let refused = Recording::of_session(&session("postgres"), &events, Some(0));
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("no terminal channels"));
        let none = Recording::of_session(&session("ssh"), &events, None);
        assert!(none.unwrap_err().to_string().contains("no terminal output"));
    }
}
