//! `proctor replay` and `proctor export --format asciicast`: one SSH channel's terminal stream as the
//! journal recorded it (see `proctor_core::replay`), played back in the user's terminal with its
//! timing, or written as an asciicast v2 recording that asciinema plays.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use proctor_core::journal::SessionRow;
use proctor_core::replay::{Frame, Recording};
use proctor_core::Config;

fn load(
    config: &Config,
    session: &str,
    channel: Option<u32>,
) -> anyhow::Result<(SessionRow, Recording)> {
    let store = crate::admin::open_store(config)?;
    let session = store.find_session(session)?;
    let events = store.events(&session.id)?;
    let recording = Recording::terminal(&session, &events, channel)?;
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
        let pause = ms.saturating_sub(last_ms) as f64 / 1000.0;
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
    let text = recording.asciicast(&session);
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
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
