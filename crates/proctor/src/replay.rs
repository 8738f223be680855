//! `proctor replay` and `proctor export --format asciicast`: one SSH channel's terminal stream, as the
//! journal recorded it (`term.out` and `term.resize`, sized by the channel's `ssh.shell` or its first
//! resize), played back in the user's terminal with its timing, or written as an asciicast v2
//! recording that asciinema plays. Input (`term.in`) is not played: what the terminal echoed of it is
//! in the output. What is played is what the journal holds, secrets masked.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use proctor_core::journal::{Event, SessionRow};
use proctor_core::Config;
use serde::Serialize;
use serde_json::{json, Value};

/// The terminal size when the recording does not tell it (asciinema's own default).
const DEFAULT_SIZE: (u32, u32) = (80, 24);

/// One channel's terminal stream.
struct Recording {
    channel: u32,
    term: Option<String>,
    /// Columns and rows when the channel started.
    size: (u32, u32),
    /// In time order.
    frames: Vec<Frame>,
}

enum Frame {
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
) -> anyhow::Result<T> {
    read(&event.body[name]).ok_or_else(|| {
        anyhow::anyhow!("event {} ({}) has no valid {name:?}", event.seq, event.kind)
    })
}

fn as_u32(value: &Value) -> Option<u32> {
    u32::try_from(value.as_u64()?).ok()
}

impl Recording {
    /// The terminal stream of `channel` (default: the first channel with terminal output), from its
    /// `ssh.shell` or `ssh.exec` to the next start on the same channel number, if any.
    fn of(session: &SessionRow, events: &[Event], channel: Option<u32>) -> anyhow::Result<Self> {
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
                    anyhow::bail!(
                        "channel {channel} of session {} has no terminal output{}",
                        session.id,
                        if channels.is_empty() {
                            String::new()
                        } else {
                            format!(" (channels with terminal output: {})", channels.join(", "))
                        }
                    );
                }
                channel
            }
            None => events
                .iter()
                .filter(with_output)
                .find_map(channel_of)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "session {} has no terminal output: it recorded no SSH shell or command with a terminal",
                        session.id
                    )
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
    fn write_asciicast(&self, session: &SessionRow, out: &mut impl Write) -> anyhow::Result<()> {
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
        serde_json::to_writer(&mut *out, &header)?;
        writeln!(out)?;
        for frame in &self.frames {
            let line = match frame {
                Frame::Output { ms, data } => json!([seconds(*ms), "o", data]),
                Frame::Resize { ms, cols, rows } => {
                    json!([seconds(*ms), "r", format!("{cols}x{rows}")])
                }
            };
            serde_json::to_writer(&mut *out, &line)?;
            writeln!(out)?;
        }
        Ok(())
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn load(
    config: &Config,
    session: &str,
    channel: Option<u32>,
) -> anyhow::Result<(SessionRow, Recording)> {
    let store = crate::admin::open_store(config)?;
    let session = store.find_session(session)?;
    let events = store.events(&session.id)?;
    let recording = Recording::of(&session, &events, channel)?;
    Ok((session, recording))
}

/// `proctor replay`: writes the channel's output to standard output as it came, `speed` times
/// faster, pauses cut to `idle_limit` seconds.
pub fn replay(
    config: Config,
    session: &str,
    speed: f64,
    idle_limit: Option<f64>,
    channel: Option<u32>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        speed.is_finite() && speed > 0.0,
        "--speed must be a positive number"
    );
    anyhow::ensure!(
        idle_limit.is_none_or(|limit| limit.is_finite() && limit >= 0.0),
        "--idle-limit must be a number of seconds"
    );
    let (session, recording) = load(&config, session, channel)?;
    eprintln!(
        "replaying channel {} of session {} ({}x{} terminal)",
        recording.channel, session.id, recording.size.0, recording.size.1
    );
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    let (mut at, mut last_ms) = (0.0, 0);
    for frame in &recording.frames {
        let Frame::Output { ms, data } = frame else {
            continue;
        };
        let pause = seconds(ms.saturating_sub(last_ms));
        at += idle_limit.map_or(pause, |limit| pause.min(limit)) / speed;
        last_ms = *ms;
        let due = Duration::try_from_secs_f64(at).ok();
        if let Some(wait) = due.and_then(|due| due.checked_sub(started.elapsed())) {
            std::thread::sleep(wait);
        }
        stdout.write_all(data.as_bytes())?;
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `proctor export --format asciicast`: the channel's terminal stream as asciicast v2, to `output` or
/// standard output.
pub fn export(
    config: Config,
    session: &str,
    channel: Option<u32>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (session, recording) = load(&config, session, channel)?;
    let mut text = Vec::new();
    recording.write_asciicast(&session, &mut text)?;
    match output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {}: channel {} of session {} as asciicast v2 (`asciinema play {}`)",
                path.display(),
                recording.channel,
                session.id,
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
