//! One session channel between a user and the target: its requests (PTY, shell, exec, subsystem,
//! window changes, signals) passed on in order with their replies, its bytes copied both ways with
//! the target's flow control, and everything recorded as it passes.
//!
//! What a channel records depends on what it runs: a shell or a command is a terminal stream
//! (`term.out`, `term.in`, `term.resize`, batched by [`Terminal`]); sftp and scp are file
//! transfers, recorded file by file; `rsync --server` and other binary streams only by their
//! bytes. An exec command is judged by the guardrails and recorded (`ssh.exec`, committed) before
//! it is sent; a command line typed in a shell is judged when its Enter is typed, and the Enter is
//! held back until the guardrails allow it (best effort: see the README).
//!
//! Each direction runs as its own loop, so that a side slow to read never stops the other.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_core::guard::{Judgement, Refusal};
use proctor_core::journal::Body;
use proctor_core::Gate;
use russh::server::Msg as ServerMsg;
use russh::{client, Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use serde_json::{json, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

use crate::journal::SessionJournal;
use crate::scp::ScpTracker;
use crate::server::Ready;
use crate::sftp::{SftpLimits, SftpTracker};
use crate::terminal::{LineEditor, TermEvent, Terminal, TerminalLimits};
use crate::transfer::{Direction, FileRecord};

/// What a channel needs of its session.
pub struct ChannelContext {
    pub journal: SessionJournal,
    pub ready: Arc<Ready>,
    pub server: russh::server::Handle,
    pub gate: Arc<Gate>,
    pub alive: mpsc::Sender<()>,
}

/// The number the user's side gives a channel, as records name it.
pub fn channel_number(id: ChannelId) -> u32 {
    u32::from(id)
}

/// Output and input of a command run without a terminal that is recorded; beyond it, bytes are
/// only counted (a command that streams a large file would otherwise fill the journal).
const EXEC_RECORD_BYTES: u64 = 1024 * 1024;
/// How often a terminal's batches are flushed when nothing else flushes them.
const TICK: Duration = Duration::from_millis(50);
/// How long a typed line's Enter waits for the line's echo: a line the terminal does not echo
/// (a password) is neither judged nor stored.
const ECHO_WAIT: Duration = Duration::from_millis(250);
/// Exit status of a command that the guardrails refused.
const REFUSED_STATUS: u32 = 126;

/// How a channel's bytes are recorded, once its first request says what it runs.
enum Recording {
    Pending,
    Terminal {
        terminal: Terminal,
        /// Without a PTY: what is left of [`EXEC_RECORD_BYTES`].
        budget: Option<u64>,
    },
    Sftp(SftpTracker),
    Scp(ScpTracker),
    /// Bytes counted only (`rsync --server`, other subsystems).
    Counted,
}

/// Which side of the channel sent bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    User,
    Target,
}

/// What passing bytes leave in the record: terminal events and file records.
type Recorded = (Vec<TermEvent>, Vec<FileRecord>);

impl Recording {
    /// Feeds bytes that `from` sent to what records the channel.
    fn feed(&mut self, from: Side, ms: u64, data: &[u8]) -> Result<Recorded, Stop> {
        let protocol = |e: &dyn std::fmt::Display| Stop::Protocol(e.to_string());
        Ok(match self {
            Recording::Terminal { terminal, budget } => {
                if let Some(left) = budget {
                    if *left == 0 {
                        return Ok(Default::default());
                    }
                    *left = left.saturating_sub(data.len() as u64);
                }
                let events = match from {
                    Side::User => terminal.input(ms, data),
                    Side::Target => terminal.output(ms, data),
                };
                (events, Vec::new())
            }
            Recording::Sftp(tracker) => {
                match from {
                    Side::User => tracker.client_bytes(data),
                    Side::Target => tracker.server_bytes(data),
                }
                .map_err(|e| protocol(&e))?;
                (Vec::new(), tracker.take_records())
            }
            Recording::Scp(tracker) => {
                let source = match tracker.direction() {
                    Direction::Upload => Side::User,
                    Direction::Download => Side::Target,
                };
                if from == source {
                    tracker.source_bytes(data)
                } else {
                    tracker.sink_bytes(data)
                }
                .map_err(|e| protocol(&e))?;
                (Vec::new(), tracker.take_records())
            }
            Recording::Pending | Recording::Counted => Default::default(),
        })
    }
}

/// Where the reply to one of the user's requests comes from, in the order they were made.
enum Reply {
    Target,
    Local(bool),
}

#[derive(Default)]
struct Exit {
    status: Option<u32>,
    signal: Option<String>,
}

struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
}

/// What both directions of one channel share.
struct Shared {
    number: u32,
    id: ChannelId,
    started: Instant,
    recording: Mutex<Recording>,
    replies: std::sync::Mutex<VecDeque<Reply>>,
    exit: std::sync::Mutex<Exit>,
    pty: std::sync::Mutex<Option<PtyRequest>>,
    to_target: AtomicU64,
    from_target: AtomicU64,
    /// Whether the channel runs an interactive shell, whose typed lines the guardrails judge.
    shell: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn replies(&self) -> std::sync::MutexGuard<'_, VecDeque<Reply>> {
        self.replies.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a channel stopped before its sides closed it.
enum Stop {
    /// The journal failed: nothing more may pass.
    Journal,
    /// The user or the target went away.
    Gone,
    /// The bytes broke their protocol (sftp, scp): what was wrong.
    Protocol(String),
}

impl From<proctor_core::RecordError> for Stop {
    fn from(_: proctor_core::RecordError) -> Self {
        Stop::Journal
    }
}

/// Answers a channel of a login that cannot be served: the reason on stderr, exit status 255.
pub async fn refuse(channel: Channel<ServerMsg>, why: String, alive: mpsc::Sender<()>) {
    let message = format!("Proctor: {why}\r\n");
    let _ = channel.extended_data(1, message.as_bytes()).await;
    let _ = channel.exit_status(255).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
    drop(alive);
}

/// Relays one session channel until both sides closed it, then records how it ended.
pub async fn relay(
    context: ChannelContext,
    user: Channel<ServerMsg>,
    upstream: Channel<client::Msg>,
) {
    let shared = Shared {
        number: channel_number(user.id()),
        id: user.id(),
        started: Instant::now(),
        recording: Mutex::new(Recording::Pending),
        replies: Default::default(),
        exit: Default::default(),
        pty: Default::default(),
        to_target: AtomicU64::new(0),
        from_target: AtomicU64::new(0),
        shell: Default::default(),
    };
    let (user_rx, user_tx) = user.split();
    let (upstream_rx, upstream_tx) = upstream.split();
    let upward = from_user(&context, &shared, user_rx, &upstream_tx, &user_tx);
    let downward = from_target(&context, &shared, upstream_rx, &user_tx);
    let (up, down) = tokio::join!(upward, downward);
    let stopped = [up, down].into_iter().find_map(|r| r.err());
    let mut records = Vec::new();
    let mut truncated = false;
    match std::mem::replace(&mut *shared.recording.lock().await, Recording::Counted) {
        Recording::Terminal { terminal, budget } => {
            truncated = budget == Some(0);
            records.extend(
                terminal
                    .finish(shared.ms())
                    .into_iter()
                    .map(|event| (event.kind(), event.body(shared.number))),
            );
        }
        Recording::Sftp(tracker) => records.extend(file_records(tracker.finish(), &shared)),
        Recording::Scp(tracker) => records.extend(file_records(tracker.finish(), &shared)),
        Recording::Pending | Recording::Counted => {}
    }
    for (kind, body) in records {
        let _ = context.journal.queue(kind, body).await;
    }
    if let Some(Stop::Protocol(message)) = &stopped {
        let _ = context
            .journal
            .queue(
                "protocol.error",
                json!({"channel": shared.number, "message": message}),
            )
            .await;
    }
    let exit = std::mem::take(&mut *shared.exit.lock().unwrap_or_else(|p| p.into_inner()));
    let problem = match &stopped {
        Some(Stop::Journal) => Some("the journal failed".to_owned()),
        Some(Stop::Protocol(message)) => Some(message.clone()),
        Some(Stop::Gone) | None => None,
    };
    let _ = context
        .journal
        .queue(
            "ssh.exit",
            json!({"bytes_from_target": shared.from_target.load(Ordering::Relaxed),
                   "bytes_to_target": shared.to_target.load(Ordering::Relaxed),
                   "channel": shared.number, "error": problem, "exit_status": exit.status,
                   "ms": shared.ms(), "record_truncated": truncated, "signal": exit.signal}),
        )
        .await;
    drop(context.alive);
}

fn file_records<'a>(
    records: Vec<FileRecord>,
    shared: &'a Shared,
) -> impl Iterator<Item = (&'static str, Value)> + 'a {
    records.into_iter().map(move |record| {
        let (kind, mut body) = match &record {
            FileRecord::Transfer(transfer) => ("file.transfer", transfer.to_json()),
            FileRecord::Operation(operation) => ("file.op", operation.to_json()),
        };
        if let Value::Object(fields) = &mut body {
            fields.insert("channel".into(), shared.number.into());
        }
        (kind, body)
    })
}

/// Sends the reply to one of the user's requests now, or after the replies still due before it.
async fn reply_locally(context: &ChannelContext, shared: &Shared, success: bool) {
    let now = {
        let mut replies = shared.replies();
        if replies.is_empty() {
            true
        } else {
            replies.push_back(Reply::Local(success));
            false
        }
    };
    if now {
        send_reply(context, shared.id, success).await;
    }
}

async fn send_reply(context: &ChannelContext, id: ChannelId, success: bool) {
    let _ = if success {
        context.server.channel_success(id).await
    } else {
        context.server.channel_failure(id).await
    };
}

/// The target answered a request: its reply goes to the user, then any local ones queued behind it.
async fn target_replied(context: &ChannelContext, shared: &Shared, success: bool) {
    let mut due = Vec::new();
    {
        let mut replies = shared.replies();
        if matches!(replies.front(), Some(Reply::Target)) {
            replies.pop_front();
            due.push(success);
        }
        while let Some(Reply::Local(local)) = replies.front() {
            due.push(*local);
            replies.pop_front();
        }
    }
    for success in due {
        send_reply(context, shared.id, success).await;
    }
}

/// The user's side: requests and typed or uploaded bytes, toward the target.
async fn from_user(
    context: &ChannelContext,
    shared: &Shared,
    mut rx: ChannelReadHalf,
    upstream: &ChannelWriteHalf<client::Msg>,
    user: &ChannelWriteHalf<ServerMsg>,
) -> Result<(), Stop> {
    let mut lines = LineEditor::default();
    // One writer for the channel's life: it sends what it is given in packets as large as the
    // target's window and packet size allow.
    let mut out = upstream.make_writer();
    let result = loop {
        let Some(message) = rx.wait().await else {
            break Ok(());
        };
        let step = match message {
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } => {
                *shared.pty.lock().unwrap_or_else(|p| p.into_inner()) = Some(PtyRequest {
                    term: term.clone(),
                    cols: col_width,
                    rows: row_height,
                });
                // The end marker is the encoder's to write: passed on, it would be counted twice.
                let modes: Vec<_> = terminal_modes
                    .into_iter()
                    .filter(|(code, _)| *code != russh::Pty::TTY_OP_END)
                    .collect();
                shared.replies().push_back(Reply::Target);
                upstream
                    .request_pty(
                        true, &term, col_width, row_height, pix_width, pix_height, &modes,
                    )
                    .await
                    .map_err(|_| Stop::Gone)
            }
            ChannelMsg::RequestShell { .. } => start_shell(context, shared, upstream).await,
            ChannelMsg::Exec { command, .. } => {
                exec(
                    context,
                    shared,
                    &mut rx,
                    (upstream, &mut out),
                    user,
                    &command,
                )
                .await
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                start_subsystem(context, shared, upstream, &name).await
            }
            ChannelMsg::RequestX11 { .. } => {
                reply_locally(context, shared, false).await;
                Ok(())
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => upstream
                .set_env(false, variable_name, variable_value)
                .await
                .map_err(|_| Stop::Gone),
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                let events = match &mut *shared.recording.lock().await {
                    Recording::Terminal { terminal, .. } => {
                        terminal.resize(shared.ms(), col_width, row_height)
                    }
                    _ => Vec::new(),
                };
                record_terminal(context, shared, events).await?;
                upstream
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await
                    .map_err(|_| Stop::Gone)
            }
            ChannelMsg::Signal { signal } => upstream.signal(signal).await.map_err(|_| Stop::Gone),
            ChannelMsg::Data { data } => {
                user_data(context, shared, &mut rx, &mut out, user, &mut lines, &data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                shared
                    .to_target
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                upstream
                    .extended_data(ext, &data[..])
                    .await
                    .map_err(|_| Stop::Gone)
            }
            ChannelMsg::Eof => upstream.eof().await.map_err(|_| Stop::Gone),
            ChannelMsg::Close => break Ok(()),
            _ => Ok(()),
        };
        if let Err(stop) = step {
            break Err(stop);
        }
    };
    if let Err(stop) = &result {
        tell_user(user, stop).await;
    }
    let _ = upstream.close().await;
    result
}

async fn tell_user(user: &ChannelWriteHalf<ServerMsg>, stop: &Stop) {
    let why = match stop {
        Stop::Journal => "Proctor cannot record this channel any more, so it was closed",
        Stop::Protocol(message) => message.as_str(),
        Stop::Gone => return,
    };
    let _ = user
        .extended_data(1, format!("\r\nProctor: {why}\r\n").as_bytes())
        .await;
}

async fn start_shell(
    context: &ChannelContext,
    shared: &Shared,
    upstream: &ChannelWriteHalf<client::Msg>,
) -> Result<(), Stop> {
    let (term, cols, rows) = match &*shared.pty.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(pty) => (Some(pty.term.clone()), Some(pty.cols), Some(pty.rows)),
        None => (None, None, None),
    };
    context
        .journal
        .commit_event(
            "ssh.shell",
            json!({"channel": shared.number, "cols": cols, "rows": rows, "term": term}),
        )
        .await?;
    let pty = term.is_some();
    let mut terminal = Terminal::new(TerminalLimits {
        infer_echo: pty,
        ..TerminalLimits::default()
    });
    let mut events = Vec::new();
    if let (Some(cols), Some(rows)) = (cols, rows) {
        events = terminal.resize(0, cols, rows);
    }
    *shared.recording.lock().await = Recording::Terminal {
        terminal,
        budget: (!pty).then_some(EXEC_RECORD_BYTES),
    };
    record_terminal(context, shared, events).await?;
    shared.shell.store(pty, Ordering::Release);
    shared.replies().push_back(Reply::Target);
    upstream.request_shell(true).await.map_err(|_| Stop::Gone)
}

async fn start_subsystem(
    context: &ChannelContext,
    shared: &Shared,
    upstream: &ChannelWriteHalf<client::Msg>,
    name: &str,
) -> Result<(), Stop> {
    context
        .journal
        .commit_event(
            "ssh.subsystem",
            json!({"channel": shared.number, "name": name}),
        )
        .await?;
    *shared.recording.lock().await = if name == "sftp" {
        let max_packet = context.gate.config().ssh.max_sftp_packet_bytes;
        Recording::Sftp(SftpTracker::new(SftpLimits {
            max_packet,
            ..SftpLimits::default()
        }))
    } else {
        Recording::Counted
    };
    shared.replies().push_back(Reply::Target);
    upstream
        .request_subsystem(true, name)
        .await
        .map_err(|_| Stop::Gone)
}

/// What the guardrails finally said of a command: run it (with the note for its record), or not.
enum Ruling {
    Run {
        command: String,
        findings: Vec<Value>,
        policy: Option<proctor_core::journal::CanonicalJson>,
    },
    Refused(Refusal),
}

/// Judges a command; a held one waits for its approver, telling the user through `notify`, and
/// is withdrawn if the user's side closes meanwhile. A command typed without echo is judged all
/// the same, but recorded as `hidden` stands in the record in its place.
async fn rule(
    context: &ChannelContext,
    rx: &mut ChannelReadHalf,
    text: &str,
    hidden: Option<&str>,
    notify: impl AsyncNotify,
    withdraw_on_interrupt: bool,
) -> Result<(Ruling, Vec<Vec<u8>>), Stop> {
    let mut guardrails = context.ready.guardrails.lock().await;
    let mut held_back = Vec::new();
    loop {
        let judgement = {
            let mut recorder = context.journal.lock().await;
            let recorder = recorder.as_mut().ok_or(Stop::Journal)?;
            let judgement = match hidden {
                Some(recorded) => {
                    guardrails
                        .judge_unrecorded(text, recorded, recorder)
                        .await?
                }
                None => guardrails.judge_statement(text, recorder).await?,
            };
            match judgement {
                Judgement::Allow {
                    sql,
                    findings,
                    policy,
                } => {
                    return Ok((
                        Ruling::Run {
                            command: sql.into_owned(),
                            findings,
                            policy,
                        },
                        held_back,
                    ))
                }
                Judgement::Refuse(refusal) => {
                    recorder.commit().await?;
                    return Ok((Ruling::Refused(refusal), held_back));
                }
                Judgement::Hold(held) => guardrails.hold(held, recorder).await?,
            }
        };
        let (hold, notice) = judgement;
        notify
            .notify(&format!(
                "Proctor: {}\r\n{}\r\n",
                notice.message, notice.hint
            ))
            .await;
        let outcome = guardrails.outcome(&hold);
        tokio::pin!(outcome);
        let end = loop {
            tokio::select! {
                end = &mut outcome => break end,
                message = rx.wait() => match message {
                    None | Some(ChannelMsg::Close) => {
                        break guardrails.withdraw(&hold, "the user closed the channel while it waited").await;
                    }
                    Some(ChannelMsg::Data { data }) => {
                        if withdraw_on_interrupt && data.contains(&0x03) {
                            break guardrails.withdraw(&hold, "the user interrupted it").await;
                        }
                        held_back.push(data.to_vec());
                    }
                    Some(_) => {}
                },
            }
        };
        let mut recorder = context.journal.lock().await;
        let recorder = recorder.as_mut().ok_or(Stop::Journal)?;
        guardrails.resolve(hold, end, recorder).await?;
    }
}

/// Where a hold's notice is written: stderr for an exec, the terminal for a shell line.
trait AsyncNotify {
    async fn notify(&self, text: &str);
}

struct Stderr<'a>(&'a ChannelWriteHalf<ServerMsg>);

impl AsyncNotify for Stderr<'_> {
    async fn notify(&self, text: &str) {
        let _ = self.0.extended_data(1, text.as_bytes()).await;
    }
}

struct Screen<'a>(&'a ChannelWriteHalf<ServerMsg>);

impl AsyncNotify for Screen<'_> {
    async fn notify(&self, text: &str) {
        let _ = self.0.data(format!("\r\n{text}").as_bytes()).await;
    }
}

fn refusal_text(refusal: &Refusal) -> String {
    match &refusal.hint {
        Some(hint) => format!("Proctor: {}\r\n{hint}\r\n", refusal.message),
        None => format!("Proctor: {}\r\n", refusal.message),
    }
}

/// An exec request: judged, recorded (committed), then sent; a refused one answers the user with
/// the reason on stderr and exit status 126.
async fn exec(
    context: &ChannelContext,
    shared: &Shared,
    rx: &mut ChannelReadHalf,
    (upstream, out): (
        &ChannelWriteHalf<client::Msg>,
        &mut (impl AsyncWrite + Unpin),
    ),
    user: &ChannelWriteHalf<ServerMsg>,
    command: &[u8],
) -> Result<(), Stop> {
    let text = String::from_utf8_lossy(command).into_owned();
    let pty = shared
        .pty
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|p| (p.cols, p.rows));
    let (ruling, held_back) = rule(context, rx, &text, None, Stderr(user), false).await?;
    let (recorded, findings, policy) = match ruling {
        Ruling::Run {
            command,
            findings,
            policy,
        } => (command, findings, policy),
        Ruling::Refused(refusal) => {
            reply_locally(context, shared, true).await;
            let _ = user
                .extended_data(1, refusal_text(&refusal).as_bytes())
                .await;
            shared.exit.lock().unwrap_or_else(|p| p.into_inner()).status = Some(REFUSED_STATUS);
            let _ = context
                .server
                .exit_status_request(shared.id, REFUSED_STATUS)
                .await;
            let _ = user.eof().await;
            let _ = user.close().await;
            return Err(Stop::Gone);
        }
    };
    let body = Body::new()
        .uint("channel", shared.number.into())
        .str("command", &recorded)
        .opt_json("policy", policy.as_ref())
        .bool("pty", pty.is_some())
        .finish();
    context
        .journal
        .commit_masked("ssh.exec", body, findings)
        .await?;
    let recording = if let Some(tracker) = ScpTracker::from_command(&text) {
        Recording::Scp(tracker)
    } else if is_binary_stream(&text) {
        Recording::Counted
    } else {
        let mut terminal = Terminal::new(TerminalLimits {
            infer_echo: pty.is_some(),
            ..TerminalLimits::default()
        });
        let events = match pty {
            Some((cols, rows)) => terminal.resize(0, cols, rows),
            None => Vec::new(),
        };
        record_terminal(context, shared, events).await?;
        Recording::Terminal {
            terminal,
            budget: pty.is_none().then_some(EXEC_RECORD_BYTES),
        }
    };
    *shared.recording.lock().await = recording;
    shared.replies().push_back(Reply::Target);
    upstream
        .exec(true, command.to_vec())
        .await
        .map_err(|_| Stop::Gone)?;
    for data in held_back {
        forward_user_bytes(context, shared, out, &data).await?;
    }
    Ok(())
}

/// Commands whose streams are a binary protocol of their own, recorded by their bytes only.
fn is_binary_stream(command: &str) -> bool {
    let program = command.split_whitespace().next().unwrap_or("");
    let program = program.rsplit('/').next().unwrap_or(program);
    matches!(
        program,
        "rsync" | "git-upload-pack" | "git-receive-pack" | "git-upload-archive" | "sftp-server"
    ) && (program != "rsync" || command.contains("--server"))
}

/// Bytes the user sent: recorded as what the channel runs says, then sent. In an interactive shell
/// each typed line is judged before its Enter is sent, and recorded (`ssh.command`) if the
/// terminal echoed it.
async fn user_data(
    context: &ChannelContext,
    shared: &Shared,
    rx: &mut ChannelReadHalf,
    out: &mut (impl AsyncWrite + Unpin),
    user: &ChannelWriteHalf<ServerMsg>,
    lines: &mut LineEditor,
    data: &[u8],
) -> Result<(), Stop> {
    if !shared.shell.load(Ordering::Acquire) {
        return forward_user_bytes(context, shared, out, data).await;
    }
    let mut from = 0;
    for (at, &byte) in data.iter().enumerate() {
        let Some(line) = lines.feed(byte) else {
            continue;
        };
        if line.text.trim().is_empty() {
            continue;
        }
        forward_user_bytes(context, shared, out, &data[from..at]).await?;
        from = at;
        let hidden = (!echoed(shared).await)
            .then(|| format!("[a line typed without echo: {} bytes]", line.text.len()));
        let (ruling, held_back) = rule(
            context,
            rx,
            &line.text,
            hidden.as_deref(),
            Screen(user),
            true,
        )
        .await?;
        match ruling {
            Ruling::Run {
                command,
                findings,
                policy,
            } if hidden.is_none() => {
                let body = Body::new()
                    .uint("channel", shared.number.into())
                    .str("command", &command)
                    .bool("exact", line.exact)
                    .opt_json("policy", policy.as_ref())
                    .finish();
                context
                    .journal
                    .commit_masked("ssh.command", body, findings)
                    .await?;
            }
            // A line typed without echo is not a command line the record can show.
            Ruling::Run { .. } => {}
            Ruling::Refused(refusal) => {
                // The line stays unsent: erase it at the shell and tell the user why.
                forward_user_bytes(context, shared, out, b"\x15").await?;
                from = at + 1;
                let _ = user
                    .data(format!("\r\n{}", refusal_text(&refusal)).as_bytes())
                    .await;
            }
        }
        for held in held_back {
            if held.contains(&0x03) {
                continue;
            }
            forward_user_bytes(context, shared, out, &held).await?;
        }
    }
    forward_user_bytes(context, shared, out, &data[from..]).await
}

/// Whether the line typed so far was echoed by the terminal, waiting briefly for the echo of a
/// line typed (or pasted) faster than it comes back.
async fn echoed(shared: &Shared) -> bool {
    let deadline = Instant::now() + ECHO_WAIT;
    loop {
        if let Recording::Terminal { terminal, .. } = &*shared.recording.lock().await {
            if terminal.echoing() {
                return true;
            }
        } else {
            return false;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Records bytes from the user, then sends them; a line's end is committed before it leaves.
async fn forward_user_bytes(
    context: &ChannelContext,
    shared: &Shared,
    out: &mut (impl AsyncWrite + Unpin),
    data: &[u8],
) -> Result<(), Stop> {
    if data.is_empty() {
        return Ok(());
    }
    shared
        .to_target
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    let (events, files, typed) = {
        let mut recording = shared.recording.lock().await;
        let typed = matches!(*recording, Recording::Terminal { .. });
        let (events, files) = recording.feed(Side::User, shared.ms(), data)?;
        (events, files, typed)
    };
    // A typed line's end or a change to the tree is a command: it leaves once it is recorded.
    let commit = typed && data.iter().any(|b| matches!(b, b'\r' | b'\n'))
        || files.iter().any(|f| matches!(f, FileRecord::Operation(_)));
    record_terminal(context, shared, events).await?;
    for (kind, body) in file_records(files, shared) {
        context.journal.queue(kind, body).await?;
    }
    if commit {
        context.journal.commit().await?;
    }
    out.write_all(data).await.map_err(|_| Stop::Gone)
}

async fn record_terminal(
    context: &ChannelContext,
    shared: &Shared,
    events: Vec<TermEvent>,
) -> Result<(), Stop> {
    for event in events {
        context
            .journal
            .queue(event.kind(), event.body(shared.number))
            .await?;
    }
    Ok(())
}

/// The target's side: output, replies, exit status, toward the user.
async fn from_target(
    context: &ChannelContext,
    shared: &Shared,
    mut rx: ChannelReadHalf,
    user: &ChannelWriteHalf<ServerMsg>,
) -> Result<(), Stop> {
    let mut out = user.make_writer();
    let mut errors = user.make_writer_ext(Some(1));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let message = tokio::select! {
            message = rx.wait() => message,
            _ = tick.tick() => {
                let events = match &mut *shared.recording.lock().await {
                    Recording::Terminal { terminal, .. } => terminal.tick(shared.ms()),
                    _ => Vec::new(),
                };
                if let Err(stop) = record_terminal(context, shared, events).await {
                    break Err(stop);
                }
                continue;
            }
        };
        let Some(message) = message else {
            break Ok(());
        };
        let step = match message {
            ChannelMsg::Data { data } => match target_bytes(context, shared, &data).await {
                Ok(()) => out.write_all(&data).await.map_err(|_| Stop::Gone),
                Err(stop) => Err(stop),
            },
            ChannelMsg::ExtendedData { data, ext } => {
                match target_bytes(context, shared, &data).await {
                    Ok(()) if ext == 1 => errors.write_all(&data).await.map_err(|_| Stop::Gone),
                    Ok(()) => user
                        .extended_data(ext, &data[..])
                        .await
                        .map_err(|_| Stop::Gone),
                    Err(stop) => Err(stop),
                }
            }
            ChannelMsg::Success => {
                target_replied(context, shared, true).await;
                Ok(())
            }
            ChannelMsg::Failure => {
                target_replied(context, shared, false).await;
                Ok(())
            }
            ChannelMsg::ExitStatus { exit_status } => {
                shared.exit.lock().unwrap_or_else(|p| p.into_inner()).status = Some(exit_status);
                let _ = context
                    .server
                    .exit_status_request(shared.id, exit_status)
                    .await;
                Ok(())
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                shared.exit.lock().unwrap_or_else(|p| p.into_inner()).signal =
                    Some(format!("{signal_name:?}"));
                let _ = context
                    .server
                    .exit_signal_request(
                        shared.id,
                        signal_name,
                        core_dumped,
                        error_message,
                        lang_tag,
                    )
                    .await;
                Ok(())
            }
            ChannelMsg::Eof => user.eof().await.map_err(|_| Stop::Gone),
            ChannelMsg::Close => break Ok(()),
            _ => Ok(()),
        };
        if let Err(stop) = step {
            break Err(stop);
        }
    };
    if let Err(stop) = &result {
        tell_user(user, stop).await;
    }
    let _ = user.close().await;
    result
}

/// Records bytes from the target (before they go to the user: what the user sees is in the record).
async fn target_bytes(context: &ChannelContext, shared: &Shared, data: &[u8]) -> Result<(), Stop> {
    shared
        .from_target
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    let (events, files) = shared
        .recording
        .lock()
        .await
        .feed(Side::Target, shared.ms(), data)?;
    record_terminal(context, shared, events).await?;
    for (kind, body) in file_records(files, shared) {
        context.journal.queue(kind, body).await?;
    }
    Ok(())
}
