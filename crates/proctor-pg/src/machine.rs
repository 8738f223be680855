//! The PostgreSQL protocol's state machine for one session: what each client message means, what
//! to record of it before it is forwarded, which statement each target message answers, and what
//! the client sees instead when guardrails refuse or client masking rewrites.
//!
//! It is a pure type: it is fed the bytes each side sent and writes what each side is to receive
//! through a [`Wire`], so its unit tests drive it with scripted messages; the sockets are
//! [`crate::relay`]'s. What every protocol shares (result samples, client masking, guardrails and
//! holds) is `proctor-core`'s.
//!
//! Everything the journal keeps of what passes is masked through the session's recorder first:
//! statement text, prepared statement and portal names, bound parameters and sampled cells (decoded by
//! type, masked, then cut to the sample's budget, so that a cut never keeps part of a secret), column
//! names, COPY lines (joined across messages before they are masked), errors, notices and
//! notifications. A target message larger than [`PASSTHROUGH_THRESHOLD`] is streamed through without
//! being held in memory.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use proctor_core::guard::{
    Guardrails, Held, Hold, HoldEnd, Judgement, Refusal, RefusalKind, Verdict,
};
use proctor_core::journal::{Body, CanonicalJson};
use proctor_core::results::{self, RecordedColumn, ResultEnd, ResultLimits, ResultRecord};
use proctor_core::{session, Fault, RecordError, SessionRecorder};
use serde_json::{json, Value};

use crate::codec::{self, error_fields, ClientError, Frontend, ProtocolError};
use crate::values;

/// Target messages above this size (rows, COPY data) are forwarded without being buffered whole.
pub const PASSTHROUGH_THRESHOLD: usize = 1024 * 1024;
/// Bytes of one parameter value kept in the journal.
const MAX_PARAM_BYTES: usize = 8 * 1024;
/// Parsed statements remembered to name the SQL of a failed Parse; a client that never syncs cannot
/// grow the list beyond this.
const MAX_PARSES_TRACKED: usize = 1024;

/// Where the state machine's output goes: the relay's sockets, or a test's buffers.
pub trait Wire {
    /// Bytes for the client, in order after everything sent before.
    fn to_client(&mut self, bytes: &[u8]);
    /// Bytes for the target.
    fn to_upstream(&mut self, bytes: &[u8]);
    /// Drops what still waits to go to the target (the client left).
    fn discard_upstream(&mut self);
}

pub struct Limits {
    pub max_message_bytes: usize,
    pub max_prepared_statements: usize,
    /// Samples, client masking (COPY data included) and column rules.
    pub results: ResultLimits,
    /// Table names by OID, for column rules that name tables.
    pub table_names: HashMap<u32, String>,
    /// The conversation with a model this session's statements belong to, which each `db.query`
    /// names.
    pub chain: Option<String>,
}

#[derive(Clone, Debug)]
struct Column {
    recorded: RecordedColumn,
    type_oid: u32,
    binary: bool,
}

impl AsRef<RecordedColumn> for Column {
    fn as_ref(&self) -> &RecordedColumn {
        &self.recorded
    }
}

/// Statement text as it is recorded: masked, with the findings of masking it.
#[derive(Clone)]
struct MaskedSql {
    text: Arc<str>,
    findings: Arc<[Value]>,
}

struct Statement {
    sql: MaskedSql,
    param_types: Vec<u32>,
    columns: Option<Arc<[Column]>>,
    /// What the guardrails decided, for the `db.query` of each execution.
    policy: Option<CanonicalJson>,
}

struct Portal {
    /// The statement's and the portal's names as recorded: masked.
    statement: String,
    name: String,
    sql: MaskedSql,
    params: CanonicalJson,
    param_findings: Vec<Value>,
    columns: Option<Arc<[Column]>>,
    policy: Option<CanonicalJson>,
}

enum DescribeTarget {
    Statement(String),
    Portal(String),
}

/// A Describe awaiting its answer, and the batch (counted in Syncs and Queries) it was sent in: a
/// client may pipeline several batches, and an error skips the rest of its own batch only.
struct Describing {
    target: DescribeTarget,
    batch: u64,
}

/// Data counted during a COPY.
#[derive(Default)]
struct CopyCounter {
    bytes: u64,
    sample: Vec<Value>,
    sample_bytes: usize,
    /// The start of a line that the last message did not end: a client sends COPY data in chunks of
    /// any size, and a secret cut in two by a chunk's end must be masked whole.
    partial: Vec<u8>,
    /// The findings of masking the sampled lines.
    findings: Vec<Value>,
    /// COPY in binary format: its data cannot be masked for the client without breaking it.
    binary: bool,
}

/// One recorded command awaiting its results.
pub(crate) struct Unit {
    extended: bool,
    columns: Option<Arc<[Column]>>,
    result: ResultRecord,
}

impl Unit {
    fn new(query_seq: u64, extended: bool, columns: Option<Arc<[Column]>>) -> Self {
        Self {
            extended,
            columns,
            result: ResultRecord::new(query_seq),
        }
    }

    /// Starts the next statement of a multi-statement simple query.
    fn reset(&mut self) {
        self.columns = None;
        self.result.restart();
    }
}

pub(crate) enum Pending {
    Unit(Unit),
    /// The end of a batch; with the error to answer before its ReadyForQuery when a statement of
    /// the batch was refused.
    Sync(Option<ClientError>),
}

/// What to do with one client message.
enum Handling {
    Forward,
    /// Forward it once the events it caused are committed.
    Command,
    /// Do not forward it (refused); its decision is committed.
    Drop,
    /// Forward these bytes instead (refused); its decision is committed.
    Replace(&'static [u8]),
    /// Stop here: the message waits for an approver.
    Hold(Held),
}

pub(crate) struct State {
    pub(crate) limits: Limits,
    statements: HashMap<String, Statement>,
    portals: HashMap<String, Portal>,
    pub(crate) pending: VecDeque<Pending>,
    describes: VecDeque<Describing>,
    /// Statements parsed per batch, to name the SQL of an error that no Execute was recorded for.
    parses: VecDeque<(u64, MaskedSql)>,
    /// Batches the client has ended (Sync or Query) and batches the server has finished (ReadyForQuery).
    client_batches: u64,
    server_batches: u64,
    copy_in: Option<CopyCounter>,
    copy_out: Option<CopyCounter>,
    passthrough: usize,
    pub(crate) guardrails: Guardrails,
    /// A statement of the current extended batch was refused: the client's messages are dropped
    /// until its Sync, as PostgreSQL skips them after an error.
    skipping: bool,
    /// The error for that refusal, answered before the batch's ReadyForQuery.
    refusal: Option<ClientError>,
    /// The database sent an error in the current batch (so no refusal is added to it).
    batch_failed: bool,
    /// Bytes to send the client before the target message being handled.
    inject: Option<BytesMut>,
    /// The statement waiting for an approver; the client's later messages wait behind it.
    pub(crate) hold: Option<Hold>,
    /// The last RowDescription's body and its columns: a session that runs the same query again
    /// gets the same description, which is then neither parsed nor allocated again.
    last_row_description: Option<(Vec<u8>, Arc<[Column]>)>,
}

impl State {
    pub(crate) fn new(limits: Limits, guardrails: Guardrails) -> Self {
        Self {
            limits,
            statements: HashMap::new(),
            portals: HashMap::new(),
            pending: VecDeque::new(),
            describes: VecDeque::new(),
            parses: VecDeque::new(),
            client_batches: 0,
            server_batches: 0,
            copy_in: None,
            copy_out: None,
            passthrough: 0,
            guardrails,
            skipping: false,
            refusal: None,
            batch_failed: false,
            inject: None,
            hold: None,
            last_row_description: None,
        }
    }
}

/// What handling one side's bytes decided.
pub(crate) enum Flow {
    Continue,
    End(String),
}

impl State {
    pub(crate) async fn on_client_bytes(
        &mut self,
        buf: &mut BytesMut,
        wire: &mut impl Wire,
        recorder: &mut SessionRecorder,
    ) -> Flow {
        let mut consumed = 0;
        let mut commands = 0;
        let mut stop: Option<Result<String, ProtocolError>> = None;
        // When a message is dropped or replaced: what goes to the database instead of `buf`, and how
        // much of `buf` it already covers.
        let mut forwarded: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut held = None;
        while stop.is_none() {
            let rest = &buf[consumed..];
            let (tag, len) = match codec::frame(rest, self.limits.max_message_bytes) {
                Ok(Some(framed)) => framed,
                Ok(None) => break,
                Err(e) => {
                    stop = Some(Err(e));
                    break;
                }
            };
            let message = &rest[..len];
            let parsed = codec::parse_frontend(message);
            if self.skipping
                && matches!(parsed, Ok(ref m) if !matches!(m, Frontend::Sync | Frontend::Terminate))
            {
                let out = forwarded.get_or_insert_with(Vec::new);
                out.extend_from_slice(&buf[copied..consumed]);
                consumed += len;
                copied = consumed;
                continue;
            }
            match parsed {
                Ok(Frontend::Terminate) => {
                    consumed += len;
                    stop = Some(Ok("client closed the session".into()));
                }
                Ok(parsed) => match self.on_client_message(parsed, recorder).await {
                    Ok(Handling::Forward) => consumed += len,
                    Ok(Handling::Command) => {
                        consumed += len;
                        commands += 1;
                    }
                    Ok(Handling::Drop) => {
                        let out = forwarded.get_or_insert_with(Vec::new);
                        out.extend_from_slice(&buf[copied..consumed]);
                        consumed += len;
                        copied = consumed;
                        commands += 1;
                    }
                    Ok(Handling::Replace(instead)) => {
                        let out = forwarded.get_or_insert_with(Vec::new);
                        out.extend_from_slice(&buf[copied..consumed]);
                        out.extend_from_slice(instead);
                        consumed += len;
                        copied = consumed;
                        commands += 1;
                    }
                    Ok(Handling::Hold(statement)) => {
                        held = Some(statement);
                        break;
                    }
                    Err(Fault::Record(e)) => return self.journal_failed(wire, e),
                    Err(Fault::Protocol(e)) => stop = Some(Err(e)),
                },
                Err(e) => {
                    stop = Some(Err(ProtocolError(format!(
                        "{e} ({} message)",
                        codec::printable_tag(tag)
                    ))))
                }
            }
        }
        if commands > 0 {
            if let Err(e) = recorder.commit().await {
                return self.journal_failed(wire, e);
            }
        }
        if consumed > 0 {
            match forwarded.as_mut() {
                Some(out) => {
                    out.extend_from_slice(&buf[copied..consumed]);
                    wire.to_upstream(out);
                }
                None => wire.to_upstream(&buf[..consumed]),
            }
            buf.advance(consumed);
        }
        if let Some(statement) = held {
            match self.guardrails.hold(statement, recorder).await {
                Ok((hold, notice)) => {
                    wire.to_client(
                        &ClientError::notice(notice.message)
                            .hint(notice.hint)
                            .encode(),
                    );
                    self.hold = Some(hold);
                }
                Err(e) => return self.journal_failed(wire, e),
            }
        }
        match stop {
            None => Flow::Continue,
            Some(Ok(reason)) => Flow::End(reason),
            Some(Err(e)) => {
                let _ = recorder
                    .record_masked(
                        "protocol.error",
                        json!({"direction": "client", "message": e.0}),
                    )
                    .await;
                let error = ClientError::fatal(
                    if e.0.contains("exceeds the limit") { "54000" } else { "08P01" },
                    format!("Proctor refused a malformed message: {}", e.0),
                )
                .hint("This is a client or driver bug, or a message larger than postgres.max_message_bytes allows.");
                wire.to_client(&error.encode());
                Flow::End(format!("protocol error from client: {}", e.0))
            }
        }
    }

    pub(crate) fn journal_failed(&mut self, wire: &mut impl Wire, e: RecordError) -> Flow {
        let error = ClientError::fatal(
            "58030",
            "Proctor could not record this statement, so it was not sent to the database",
        )
        .hint("The journal is failing (disk full or unavailable?); tell the Proctor operators.");
        wire.to_client(&error.encode());
        Flow::End(format!("journal failure: {e}"))
    }

    /// The client is gone: nothing more of what it sent goes to the database, and a statement waiting
    /// for an approver is withdrawn.
    pub(crate) async fn client_left(
        &mut self,
        wire: &mut impl Wire,
        recorder: &mut SessionRecorder,
        why: &str,
    ) {
        wire.discard_upstream();
        if let Some(hold) = self.hold.take() {
            let end = self.guardrails.withdraw(&hold, why).await;
            let _ = self.guardrails.resolve(hold, end, recorder).await;
        }
    }

    /// The held statement's wait is over: records how, then processes it (and what the client sent
    /// after it) with that outcome.
    pub(crate) async fn end_hold(
        &mut self,
        hold: Hold,
        end: HoldEnd,
        buf: &mut BytesMut,
        wire: &mut impl Wire,
        recorder: &mut SessionRecorder,
    ) -> Flow {
        if let Err(e) = self.guardrails.resolve(hold, end, recorder).await {
            return self.journal_failed(wire, e);
        }
        self.on_client_bytes(buf, wire, recorder).await
    }

    /// Updates the bookkeeping for one client message and records it if it runs something. Returns
    /// whether it was a command, which must be committed before it is forwarded.
    async fn on_client_message(
        &mut self,
        message: Frontend<'_>,
        recorder: &mut SessionRecorder,
    ) -> Result<Handling, Fault<ProtocolError>> {
        match message {
            Frontend::Query(text) => {
                let (sql, findings, policy) =
                    match self.guardrails.judge_statement(text, recorder).await? {
                        Judgement::Allow {
                            sql,
                            findings,
                            policy,
                        } => (sql, findings, policy),
                        Judgement::Refuse(refusal) => {
                            self.pending
                                .push_back(Pending::Sync(Some(refused(refusal))));
                            self.client_batches += 1;
                            return Ok(Handling::Replace(codec::SYNC));
                        }
                        Judgement::Hold(held) => return Ok(Handling::Hold(held)),
                    };
                let chain = self.limits.chain.as_deref();
                let seq = session::record_query(
                    recorder,
                    chain,
                    policy.as_ref(),
                    "simple",
                    &sql,
                    findings,
                )
                .await?;
                self.pending
                    .push_back(Pending::Unit(Unit::new(seq, false, None)));
                self.client_batches += 1;
                Ok(Handling::Command)
            }
            Frontend::Parse {
                name,
                sql,
                param_types,
            } => {
                within_limit(&self.statements, name, "prepared statements", &self.limits)?;
                let (text, findings, policy) =
                    match self.guardrails.judge_statement(sql, recorder).await? {
                        Judgement::Allow {
                            sql,
                            findings,
                            policy,
                        } => (sql, findings, policy),
                        Judgement::Refuse(refusal) => {
                            self.skipping = true;
                            self.refusal = Some(refused(refusal));
                            return Ok(Handling::Drop);
                        }
                        Judgement::Hold(held) => return Ok(Handling::Hold(held)),
                    };
                let sql = MaskedSql {
                    text: Arc::from(text),
                    findings: findings.into(),
                };
                if self.parses.len() == MAX_PARSES_TRACKED {
                    self.parses.pop_front();
                }
                self.parses.push_back((self.client_batches, sql.clone()));
                self.statements.insert(
                    name.to_owned(),
                    Statement {
                        sql,
                        param_types,
                        columns: None,
                        policy,
                    },
                );
                Ok(Handling::Forward)
            }
            Frontend::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            } => {
                within_limit(&self.portals, portal, "portals", &self.limits)?;
                let (statement_name, mut name_findings) =
                    recorded_name(statement, "statement", recorder);
                let (portal_name, found) = recorded_name(portal, "portal", recorder);
                name_findings.extend(found);
                let (sql, types, columns, policy) = match self.statements.get(statement) {
                    Some(s) => (
                        s.sql.clone(),
                        s.param_types.as_slice(),
                        s.columns.clone(),
                        s.policy.clone(),
                    ),
                    None => (
                        MaskedSql {
                            text: Arc::from(format!(
                                "EXECUTE {statement_name} -- prepared with SQL PREPARE"
                            )),
                            findings: Arc::from([]),
                        },
                        &[][..],
                        None,
                        None,
                    ),
                };
                let (params, mut param_findings) = recorded_params(
                    types,
                    &param_formats,
                    &params,
                    self.limits.results.sample_bytes,
                    recorder,
                );
                param_findings.extend(name_findings);
                let params = CanonicalJson::of(&params);
                let columns = columns.map(|cols| with_formats(&cols, &result_formats));
                self.portals.insert(
                    portal.to_owned(),
                    Portal {
                        statement: statement_name,
                        name: portal_name,
                        sql,
                        params,
                        param_findings,
                        columns,
                        policy,
                    },
                );
                Ok(Handling::Forward)
            }
            Frontend::Describe { kind, name } => {
                let target = if kind == b'S' {
                    DescribeTarget::Statement(name.to_owned())
                } else {
                    DescribeTarget::Portal(name.to_owned())
                };
                self.describes.push_back(Describing {
                    target,
                    batch: self.client_batches,
                });
                Ok(Handling::Forward)
            }
            Frontend::Execute { portal, max_rows } => {
                let (body, columns, findings) = match self.portals.get(portal) {
                    Some(p) => (
                        Body::new()
                            .opt_str("chain", self.limits.chain.as_deref())
                            .int("max_rows", i64::from(max_rows))
                            .json("params", &p.params)
                            .opt_json("policy", p.policy.as_ref())
                            .str("portal", &p.name)
                            .str("protocol", "extended")
                            .str("sql", &p.sql.text)
                            .str("statement", &p.statement)
                            .finish(),
                        p.columns.clone(),
                        p.sql
                            .findings
                            .iter()
                            .chain(&p.param_findings)
                            .cloned()
                            .collect(),
                    ),
                    None => {
                        let (name, findings) = recorded_name(portal, "portal", recorder);
                        (
                            Body::new()
                                .str("note", "unknown portal")
                                .str("portal", &name)
                                .str("protocol", "extended")
                                .finish(),
                            None,
                            findings,
                        )
                    }
                };
                let seq = recorder
                    .record_queued_with("db.query", body, findings)
                    .await?;
                self.pending
                    .push_back(Pending::Unit(Unit::new(seq, true, columns)));
                Ok(Handling::Command)
            }
            Frontend::Close { kind, name } => {
                if kind == b'S' {
                    self.statements.remove(name);
                } else {
                    self.portals.remove(name);
                }
                Ok(Handling::Forward)
            }
            Frontend::Sync => {
                self.skipping = false;
                self.pending.push_back(Pending::Sync(self.refusal.take()));
                self.client_batches += 1;
                Ok(Handling::Forward)
            }
            Frontend::CopyData(data) => {
                if let Some(copy) = self.copy_in.as_mut() {
                    count_copy(copy, data, &self.limits, recorder);
                }
                Ok(Handling::Forward)
            }
            Frontend::FunctionCall { oid, args } => {
                if let Verdict::Refuse(refusal) = self
                    .guardrails
                    .judge_unclassifiable(
                        "function-call",
                        "fast-path function calls cannot be classified, so a guarded connection refuses them",
                        &format!("function call {}", oid as i32),
                        recorder,
                    )
                    .await?
                {
                    self.pending.push_back(Pending::Sync(Some(refused(refusal))));
                    self.client_batches += 1;
                    return Ok(Handling::Replace(codec::SYNC));
                }
                let mut body =
                    json!({"function_oid": oid, "args": args, "protocol": "function-call"});
                let findings = recorder.mask_value(&mut body["args"], "params");
                let seq = recorder
                    .record_queued_with("db.query", CanonicalJson::of(&body), findings)
                    .await?;
                self.pending
                    .push_back(Pending::Unit(Unit::new(seq, true, None)));
                Ok(Handling::Command)
            }
            Frontend::Flush | Frontend::CopyDone | Frontend::CopyFail(_) | Frontend::Terminate => {
                Ok(Handling::Forward)
            }
        }
    }

    fn current_unit(&mut self) -> Option<&mut Unit> {
        match self.pending.front_mut() {
            Some(Pending::Unit(unit)) => Some(unit),
            _ => None,
        }
    }

    pub(crate) async fn on_upstream_bytes(
        &mut self,
        buf: &mut BytesMut,
        wire: &mut impl Wire,
        recorder: &mut SessionRecorder,
    ) -> Flow {
        let mut consumed = 0;
        let mut failure = None;
        // With client masking: what goes to the client when a message was rewritten, and how much
        // of `buf` it already covers.
        let mut rewritten: Option<Vec<u8>> = None;
        let mut copied = 0;
        loop {
            let rest = &buf[consumed..];
            if self.passthrough > 0 {
                let n = self.passthrough.min(rest.len());
                self.passthrough -= n;
                consumed += n;
                if self.passthrough > 0 {
                    break;
                }
                continue;
            }
            if !self.limits.results.mask_client && rest.len() >= 5 && matches!(rest[0], b'D' | b'd')
            {
                let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
                if let Ok(len) = usize::try_from(len) {
                    if len > PASSTHROUGH_THRESHOLD {
                        self.count_large_message(rest[0], len);
                        self.passthrough = len + 1;
                        continue;
                    }
                }
            }
            let (_, len) = match codec::frame(
                rest,
                self.limits.max_message_bytes.max(PASSTHROUGH_THRESHOLD),
            ) {
                Ok(Some(framed)) => framed,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(format!("the database sent a bad message: {e}"));
                    break;
                }
            };
            let message = &rest[..len];
            if self.limits.results.mask_client && matches!(message[0], b'D' | b'd') {
                match self.mask_for_client(message, recorder) {
                    Ok(Some(masked)) => {
                        let rewritten = rewritten.get_or_insert_with(Vec::new);
                        rewritten.extend_from_slice(&buf[copied..consumed]);
                        rewritten.extend_from_slice(&masked);
                        copied = consumed + len;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(format!("the database sent a bad message: {e}"));
                        break;
                    }
                }
            }
            let message = &buf[consumed..consumed + len];
            let handled = self.on_upstream_message(message, recorder).await;
            if let Some(refusal) = self.inject.take() {
                let rewritten = rewritten.get_or_insert_with(Vec::new);
                rewritten.extend_from_slice(&buf[copied..consumed]);
                rewritten.extend_from_slice(&refusal);
                copied = consumed;
            }
            if let Err(e) = handled {
                match e {
                    Fault::Record(e) => return self.journal_failed(wire, e),
                    Fault::Protocol(e) => {
                        failure = Some(format!("the database sent a bad message: {e}"));
                        break;
                    }
                }
            }
            consumed += len;
        }
        if consumed > 0 {
            match rewritten.as_mut() {
                Some(rewritten) => {
                    rewritten.extend_from_slice(&buf[copied..consumed]);
                    wire.to_client(rewritten);
                }
                None => wire.to_client(&buf[..consumed]),
            }
            buf.advance(consumed);
        }
        match failure {
            None => Flow::Continue,
            Some(reason) => {
                let _ = recorder
                    .record_masked(
                        "protocol.error",
                        json!({"direction": "database", "message": reason}),
                    )
                    .await;
                wire.to_client(&ClientError::fatal("08P01", reason.clone()).encode());
                Flow::End(reason)
            }
        }
    }

    /// The columns that a RowDescription's `body` describes, with the rules that mask them.
    fn row_description(
        &mut self,
        body: &[u8],
        recorder: &SessionRecorder,
    ) -> Result<Arc<[Column]>, ProtocolError> {
        if let Some((last, columns)) = &self.last_row_description {
            if last[..] == *body {
                return Ok(columns.clone());
            }
        }
        let columns: Arc<[Column]> = codec::row_description(body)?
            .into_iter()
            .map(|field| {
                // A column of no table (OID 0) matches only rules for any table; a table created
                // after login is not known by name.
                let table = match field.table_oid {
                    0 => Some(""),
                    oid => self.limits.table_names.get(&oid).map(String::as_str),
                };
                Column {
                    recorded: RecordedColumn::new(
                        field.name.to_owned(),
                        table,
                        &self.limits.results,
                        recorder,
                    ),
                    type_oid: field.type_oid,
                    binary: field.format == 1,
                }
            })
            .collect();
        self.last_row_description = Some((body.to_vec(), columns.clone()));
        Ok(columns)
    }

    /// The client's copy of a DataRow or COPY data message with its secrets masked, or `None` if it
    /// holds none. Text cells are masked in place; a binary cell of another type that holds a secret
    /// is sent as NULL. The counts and findings go to the statement's `db.result`.
    fn mask_for_client(
        &mut self,
        message: &[u8],
        recorder: &SessionRecorder,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        let body = &message[5..];
        if message[0] == b'd' {
            let binary = self.copy_out.as_ref().is_some_and(|copy| copy.binary);
            let Some(unit) = self.current_unit() else {
                return Ok(None);
            };
            if binary {
                unit.result
                    .note_unmasked("binary COPY data cannot be masked; it was sent as it is");
                return Ok(None);
            }
            let text = String::from_utf8_lossy(body);
            let masked = unit.result.mask_for_client(&text, None, recorder);
            return Ok(masked.map(|masked| with_body(b'd', masked.as_bytes())));
        }
        let sample_bytes = self.limits.results.sample_bytes;
        // The unit through its field, not `current_unit`, so that the rules stay borrowable.
        let Some(Pending::Unit(unit)) = self.pending.front_mut() else {
            return Ok(None);
        };
        let row = codec::data_row(body)?;
        let n = row.cells;
        let mut cells: Vec<Option<Cow<'_, [u8]>>> = Vec::with_capacity(n);
        let mut changed = false;
        for (i, value) in row.enumerate() {
            let Some(value) = value? else {
                cells.push(None);
                continue;
            };
            let column = unit.columns.as_ref().and_then(|c| c.get(i));
            let (type_oid, binary) = column.map_or((0, false), |c| (c.type_oid, c.binary));
            let as_text = !binary || values::is_text_type(type_oid);
            let text: Cow<'_, str> = if as_text {
                String::from_utf8_lossy(value)
            } else {
                match values::decode(type_oid, true, Some(value), sample_bytes) {
                    Value::String(text) => Cow::Owned(text),
                    other => Cow::Owned(other.to_string()),
                }
            };
            let rule = column
                .and_then(|c| c.recorded.rule)
                .map(|n| &self.limits.results.column_rules[n]);
            let Some(masked) = unit.result.mask_for_client(&text, rule, recorder) else {
                cells.push(Some(Cow::Borrowed(value)));
                continue;
            };
            changed = true;
            if as_text {
                cells.push(Some(Cow::Owned(masked.into_bytes())));
            } else {
                unit.result.note_nulled();
                cells.push(None);
            }
        }
        if !changed {
            return Ok(None);
        }
        let mut row = Vec::with_capacity(body.len() + 64);
        row.extend_from_slice(&(n as u16).to_be_bytes());
        for cell in &cells {
            match cell {
                None => row.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    row.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    row.extend_from_slice(bytes);
                }
            }
        }
        Ok(Some(with_body(b'D', &row)))
    }

    fn count_large_message(&mut self, tag: u8, len: usize) {
        let marker = json!(format!("[{len}-byte message not sampled]"));
        if tag == b'd' {
            if let Some(copy) = self.copy_out.as_mut() {
                copy.bytes += len as u64;
                if copy.sample.len() < self.limits.results.sample_rows {
                    copy.sample.push(marker);
                }
            }
        } else if let Some(unit) = self.current_unit() {
            unit.result.count_unsampled_row(len);
        }
    }

    async fn on_upstream_message(
        &mut self,
        message: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<(), Fault<ProtocolError>> {
        let tag = message[0];
        let body = &message[5..];
        match tag {
            b'D' => self.on_data_row(body, recorder)?,
            b'T' => {
                let columns = self.row_description(body, recorder)?;
                match self.describes.pop_front().map(|d| d.target) {
                    Some(DescribeTarget::Statement(name)) => {
                        if let Some(statement) = self.statements.get_mut(&name) {
                            statement.columns = Some(columns);
                        }
                    }
                    Some(DescribeTarget::Portal(name)) => {
                        if let Some(portal) = self.portals.get_mut(&name) {
                            portal.columns = Some(columns);
                        }
                    }
                    None => {
                        if let Some(unit) = self.current_unit() {
                            unit.columns = Some(columns);
                        }
                    }
                }
            }
            b'n' => {
                self.describes.pop_front();
            }
            b't' => {
                if let Some(Describing {
                    target: DescribeTarget::Statement(name),
                    ..
                }) = self.describes.front()
                {
                    let types = codec::parameter_description(body)?;
                    if let Some(statement) = self.statements.get_mut(name) {
                        statement.param_types = types;
                    }
                }
            }
            b'C' | b'I' | b's' => {
                let command_tag = if tag == b'C' {
                    codec::command_tag(body)?
                } else {
                    ""
                };
                self.finish_statement(recorder, tag, command_tag).await?;
            }
            b'E' => {
                let fields = error_fields(body)?;
                let get = |code: u8| fields.iter().find(|(c, _)| *c == code).map(|(_, v)| *v);
                self.batch_failed = true;
                self.copy_in = None;
                self.copy_out = None;
                let batch = self.server_batches;
                let parsed = self
                    .parses
                    .iter()
                    .rev()
                    .find(|(b, _)| *b == batch)
                    .map(|(_, sql)| sql.clone());
                let mut answered = None;
                if let Some(unit) = self.current_unit() {
                    answered = Some((unit.result.query_seq, unit.result.duration_us()));
                    if unit.extended {
                        self.pending.pop_front();
                    } else {
                        unit.reset();
                    }
                }
                // A server's error can quote the statement, and with it a secret.
                let mut findings = Vec::new();
                let mut masked = |code: u8| {
                    get(code).map(|text| {
                        let (text, found) = recorder.mask(text, "error");
                        findings.extend(found);
                        text
                    })
                };
                let (detail, hint, message) = (masked(b'D'), masked(b'H'), masked(b'M'));
                let mut event = Body::new().opt_str("detail", detail.as_deref());
                if let Some((_, duration_us)) = answered {
                    event = event.uint("duration_us", duration_us);
                }
                event = event
                    .opt_str("hint", hint.as_deref())
                    .opt_str("message", message.as_deref())
                    .opt_str("position", get(b'P'));
                if let Some((query_seq, _)) = answered {
                    event = event.uint("query", query_seq);
                }
                event = event.opt_str("severity", get(b'V').or(get(b'S')));
                let parse_failure = parsed.filter(|_| answered.is_none());
                event = event
                    .opt_str("sql", parse_failure.as_ref().map(|sql| &*sql.text))
                    .opt_str("sqlstate", get(b'C'));
                if let Some(sql) = &parse_failure {
                    event = event.str("stage", "parse");
                    findings.extend(sql.findings.iter().cloned());
                }
                recorder
                    .record_queued_with("db.error", event.finish(), findings)
                    .await?;
            }
            b'N' => {
                let fields = error_fields(body)?;
                let get = |code: u8| fields.iter().find(|(c, _)| *c == code).map(|(_, v)| *v);
                let notice = json!({"sqlstate": get(b'C'), "severity": get(b'V').or(get(b'S')), "message": get(b'M')});
                match self.current_unit() {
                    Some(unit) => unit.result.note(notice),
                    None => {
                        let mut notice = notice;
                        let findings = recorder.mask_value(&mut notice, "notice");
                        recorder
                            .record_queued_with("db.notice", CanonicalJson::of(&notice), findings)
                            .await?;
                    }
                }
            }
            b'A' => {
                let codec::Notification {
                    pid,
                    channel,
                    payload,
                } = codec::notification(body)?;
                let payload = values::decode(
                    values::TEXT,
                    false,
                    Some(payload.as_bytes()),
                    self.limits.results.sample_bytes + results::MASK_LOOKAHEAD,
                );
                let mut body = json!({"channel": channel, "payload": payload, "sender_pid": pid});
                let findings = recorder.mask_value(&mut body, "notification");
                results::cut_strings(&mut body["payload"], self.limits.results.sample_bytes);
                recorder
                    .record_queued_with("db.notification", CanonicalJson::of(&body), findings)
                    .await?;
            }
            b'G' => {
                self.copy_in = Some(CopyCounter {
                    binary: body.first() == Some(&1),
                    ..CopyCounter::default()
                })
            }
            b'H' | b'W' => {
                self.copy_out = Some(CopyCounter {
                    binary: body.first() == Some(&1),
                    ..CopyCounter::default()
                })
            }
            b'd' => {
                if let Some(copy) = self.copy_out.as_mut() {
                    count_copy(copy, body, &self.limits, recorder);
                }
            }
            b'Z' => {
                let batch_failed = std::mem::take(&mut self.batch_failed);
                self.server_batches += 1;
                let finished = self.server_batches;
                self.describes.retain(|d| d.batch >= finished);
                self.parses.retain(|(batch, _)| *batch >= finished);
                self.copy_in = None;
                self.copy_out = None;
                while let Some(pending) = self.pending.pop_front() {
                    match pending {
                        Pending::Sync(refusal) => {
                            if let Some(refusal) = refusal.filter(|_| !batch_failed) {
                                self.inject = Some(refusal.encode());
                            }
                            break;
                        }
                        Pending::Unit(unit) if !unit.extended => break,
                        Pending::Unit(unit) => {
                            recorder
                                .record_queued(
                                    "db.result",
                                    CanonicalJson::of(&json!({"query": unit.result.query_seq, "outcome": "skipped",
                                           "reason": "an earlier message of the same batch failed"}),
                                ))
                                .await?;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_data_row(
        &mut self,
        body: &[u8],
        recorder: &SessionRecorder,
    ) -> Result<(), ProtocolError> {
        let limits = &self.limits.results;
        let Some(Pending::Unit(unit)) = self.pending.front_mut() else {
            return Ok(());
        };
        let Some(mut budget) = unit.result.count_row(body.len(), limits) else {
            return Ok(());
        };
        let cells = codec::data_row(body)?;
        let mut row = Vec::with_capacity(cells.cells);
        for (i, value) in cells.enumerate() {
            let value = value?;
            let column = unit.columns.as_ref().and_then(|c| c.get(i));
            let (type_oid, binary) = column.map_or((0, false), |c| (c.type_oid, c.binary));
            let decoded = values::decode(type_oid, binary, value, budget + results::MASK_LOOKAHEAD);
            let rule = column
                .and_then(|c| c.recorded.rule)
                .map(|n| &limits.column_rules[n]);
            let raw_len = value.map(<[u8]>::len);
            row.push(
                unit.result
                    .sample_cell(decoded, raw_len, rule, budget, recorder),
            );
            budget = budget.saturating_sub(raw_len.unwrap_or(4));
        }
        unit.result.push_sample_row(row);
        Ok(())
    }

    /// Records the result of the statement at the front of the queue.
    async fn finish_statement(
        &mut self,
        recorder: &mut SessionRecorder,
        tag: u8,
        command_tag: &str,
    ) -> Result<(), RecordError> {
        let mut copy = self.copy_in.take().or_else(|| self.copy_out.take());
        if let Some(copy) = copy.as_mut() {
            end_copy_sample(copy, &self.limits, recorder);
        }
        let Some(Pending::Unit(unit)) = self.pending.front_mut() else {
            return Ok(());
        };
        if let Some(copy) = copy {
            unit.result
                .set_data_sample(copy.bytes, copy.sample, copy.findings);
        }
        let rows = command_tag
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(unit.result.rows());
        let end = ResultEnd {
            rows,
            tag: if tag == b'I' { "EMPTY" } else { command_tag },
            suspended: tag == b's',
            last_insert_id: None,
            warnings: None,
        };
        unit.result
            .record(end, unit.columns.as_deref(), recorder)
            .await?;
        if unit.extended {
            self.pending.pop_front();
        } else {
            unit.reset();
        }
        Ok(())
    }
}

/// A refused statement as PostgreSQL answers it: 42501 (insufficient privilege) for a denial,
/// 57014 (query canceled) for a withdrawn hold.
fn refused(refusal: Refusal) -> ClientError {
    let code = match refusal.kind {
        RefusalKind::Denied => "42501",
        RefusalKind::Withdrawn => "57014",
    };
    let error = ClientError::error(code, refusal.message);
    match refusal.hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

/// A backend message with `tag` and `body`.
fn with_body(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(body.len() + 5);
    message.push(tag);
    message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// A statement's or portal's name as the journal records it, with the findings of masking it. Names
/// too short to hold any secret a detector knows (drivers name them `s1`, `P0_1`...) are not scanned.
fn recorded_name(name: &str, location: &str, recorder: &SessionRecorder) -> (String, Vec<Value>) {
    const SHORTEST_SECRET: usize = 12;
    if name.len() < SHORTEST_SECRET {
        return (name.to_owned(), Vec::new());
    }
    let (recorded, findings) = recorder.mask(name, location);
    (recorded.into_owned(), findings)
}

/// Refuses a new named statement or portal beyond `postgres.max_prepared_statements`.
fn within_limit<T>(
    open: &HashMap<String, T>,
    name: &str,
    what: &str,
    limits: &Limits,
) -> Result<(), Fault<ProtocolError>> {
    let max = limits.max_prepared_statements;
    if !name.is_empty() && !open.contains_key(name) && open.len() >= max {
        return Err(Fault::Protocol(ProtocolError(format!(
            "more than {max} {what} are open (postgres.max_prepared_statements)"
        ))));
    }
    Ok(())
}

/// Counts a COPY data message and samples it. Text COPY is sampled line by line, each line masked
/// with the lines it came with (so a key that CSV quotes across lines is masked whole), and a line
/// that a message leaves open waits for the message that ends it. Binary COPY has no lines: a message
/// is sampled as its tuples, each field in hex (which masking decodes), or whole if it is not made of
/// whole tuples.
fn count_copy(copy: &mut CopyCounter, data: &[u8], limits: &Limits, recorder: &SessionRecorder) {
    copy.bytes += data.len() as u64;
    if sample_is_full(copy, limits) {
        return;
    }
    if copy.binary {
        let budget = limits.results.sample_bytes - copy.sample_bytes;
        copy.sample_bytes += data.len().min(budget);
        let decoded = budget + results::MASK_LOOKAHEAD;
        let mut tuples = values::binary_copy_tuples(data, decoded)
            .unwrap_or_else(|| vec![values::decode(values::BYTEA, true, Some(data), decoded)]);
        for tuple in &mut tuples {
            copy.findings.extend(recorder.mask_value(tuple, "sample"));
            results::cut_strings(tuple, budget);
        }
        copy.sample.extend(tuples);
        return;
    }
    let Some(last_newline) = memchr::memrchr(b'\n', data) else {
        let room = limits
            .results
            .sample_bytes
            .saturating_sub(copy.partial.len());
        copy.partial
            .extend_from_slice(&data[..data.len().min(room)]);
        if copy.partial.len() >= limits.results.sample_bytes {
            end_copy_sample(copy, limits, recorder);
        }
        return;
    };
    // Only what the sample can still take (and the look-ahead that masking reads past it) is copied:
    // a COPY message may be far larger than the sample.
    let mut lines = std::mem::take(&mut copy.partial);
    let wanted = (limits.results.sample_bytes - copy.sample_bytes + results::MASK_LOOKAHEAD)
        .saturating_sub(lines.len());
    lines.extend_from_slice(&data[..last_newline.min(wanted)]);
    sample_copy_lines(copy, &lines, limits, recorder);
    let rest = &data[last_newline + 1..];
    copy.partial
        .extend_from_slice(&rest[..rest.len().min(limits.results.sample_bytes)]);
}

/// Samples the line that the COPY data left open, when the COPY ends.
fn end_copy_sample(copy: &mut CopyCounter, limits: &Limits, recorder: &SessionRecorder) {
    let partial = std::mem::take(&mut copy.partial);
    if !partial.is_empty() && !sample_is_full(copy, limits) {
        sample_copy_lines(copy, &partial, limits, recorder);
    }
}

fn sample_is_full(copy: &CopyCounter, limits: &Limits) -> bool {
    copy.sample.len() >= limits.results.sample_rows
        || copy.sample_bytes >= limits.results.sample_bytes
}

/// Masks `lines` as one text, then samples them line by line within the budget.
fn sample_copy_lines(
    copy: &mut CopyCounter,
    lines: &[u8],
    limits: &Limits,
    recorder: &SessionRecorder,
) {
    let budget = limits.results.sample_bytes - copy.sample_bytes;
    let text = String::from_utf8_lossy(&lines[..lines.len().min(budget + results::MASK_LOOKAHEAD)]);
    let (masked, findings) = recorder.mask(&text, "sample");
    copy.findings.extend(findings);
    for line in masked.split('\n').filter(|l| !l.is_empty()) {
        if sample_is_full(copy, limits) {
            break;
        }
        let budget = limits.results.sample_bytes - copy.sample_bytes;
        copy.sample_bytes += line.len();
        copy.sample.push(values::decode(
            values::TEXT,
            false,
            Some(line.as_bytes()),
            budget,
        ));
    }
}

/// The format of each column per Bind's result format codes: none means text, one applies to all.
fn with_formats(columns: &[Column], formats: &[i16]) -> Arc<[Column]> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| Column {
            binary: match formats {
                [] => false,
                [one] => *one == 1,
                many => many.get(i) == Some(&1),
            },
            ..c.clone()
        })
        .collect()
}

/// Bound parameters as the journal records them, each masked before it is cut to its share of the
/// budget (so that a secret across the cut is masked whole, not kept in part), and the findings.
fn recorded_params(
    types: &[u32],
    formats: &[i16],
    params: &[Option<&[u8]>],
    budget: usize,
    recorder: &SessionRecorder,
) -> (Value, Vec<Value>) {
    let (mut values, cuts) = decode_params(types, formats, params, budget);
    let findings = recorder.mask_value(&mut values, "params");
    if let Value::Array(items) = &mut values {
        for (item, cut) in items.iter_mut().zip(cuts) {
            results::cut_strings(item, cut);
        }
    }
    (values, findings)
}

/// Decodes bound parameters within `budget` bytes in all (each at most `MAX_PARAM_BYTES`): the values,
/// decoded [`results::MASK_LOOKAHEAD`] past their share, and the size each is to be cut to.
fn decode_params(
    types: &[u32],
    formats: &[i16],
    params: &[Option<&[u8]>],
    budget: usize,
) -> (Value, Vec<usize>) {
    let mut left = budget;
    let mut cuts = Vec::with_capacity(params.len());
    let values = params
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let binary = match formats {
                [] => false,
                [one] => *one == 1,
                many => many.get(i) == Some(&1),
            };
            if left == 0 {
                cuts.push(usize::MAX);
                return json!("[not recorded: parameter budget exhausted]");
            }
            let max = left.min(MAX_PARAM_BYTES);
            cuts.push(max);
            left = left.saturating_sub(value.map_or(4, |v| v.len().min(max)));
            let type_oid = types.get(i).copied().unwrap_or(0);
            values::decode(type_oid, binary, *value, max + results::MASK_LOOKAHEAD)
        })
        .collect();
    (Value::Array(values), cuts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_core::policy::Dialect;
    use proctor_core::scratch::{of_kind, ScratchSession};
    use proctor_core::Identity;

    /// What the state machine wrote to each side.
    #[derive(Default)]
    struct Captured {
        client: Vec<u8>,
        upstream: Vec<u8>,
    }

    impl Wire for Captured {
        fn to_client(&mut self, bytes: &[u8]) {
            self.client.extend_from_slice(bytes);
        }

        fn to_upstream(&mut self, bytes: &[u8]) {
            self.upstream.extend_from_slice(bytes);
        }

        fn discard_upstream(&mut self) {
            self.upstream.clear();
        }
    }

    /// A session's state machine with a real journal in a temporary directory, fed scripted
    /// messages.
    struct Scripted {
        scratch: ScratchSession,
        state: State,
        wire: Captured,
    }

    const CONFIG: &str = r#"
[[connection]]
name = "app"
kind = "postgres"
address = "127.0.0.1:1"
database = "app"
user = "app"
allow = ["*"]
rules = [
  { name = "no-drop", flags = ["drop"], action = "deny" },
  { name = "hold-alter", flags = ["alter"], action = "require_approval", approvers = ["bob"] },
]
"#;

    impl Scripted {
        async fn start() -> Self {
            let scratch = ScratchSession::start(CONFIG, "postgres", "app").await;
            let limits = Limits {
                max_message_bytes: 1 << 20,
                max_prepared_statements: 100,
                results: scratch.result_limits(),
                table_names: HashMap::new(),
                chain: None,
            };
            let guardrails = scratch.guardrails(Dialect::Postgres);
            Self {
                scratch,
                state: State::new(limits, guardrails),
                wire: Captured::default(),
            }
        }

        async fn client_sends(&mut self, messages: &[Vec<u8>]) -> Flow {
            let mut buf = BytesMut::from(&messages.concat()[..]);
            let recorder = &mut self.scratch.recorder;
            self.state
                .on_client_bytes(&mut buf, &mut self.wire, recorder)
                .await
        }

        async fn target_sends(&mut self, messages: &[Vec<u8>]) -> Flow {
            let mut buf = BytesMut::from(&messages.concat()[..]);
            let recorder = &mut self.scratch.recorder;
            self.state
                .on_upstream_bytes(&mut buf, &mut self.wire, recorder)
                .await
        }

        async fn events(self) -> Vec<(String, Value)> {
            self.scratch.events().await
        }
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        with_body(tag, body)
    }

    fn cstr(text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        bytes
    }

    fn query(sql: &str) -> Vec<u8> {
        message(b'Q', &cstr(sql))
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        message(b'P', &[cstr(name), cstr(sql), vec![0, 0]].concat())
    }

    fn bind(statement: &str) -> Vec<u8> {
        message(
            b'B',
            &[cstr(""), cstr(statement), vec![0, 0, 0, 0, 0, 0]].concat(),
        )
    }

    fn execute() -> Vec<u8> {
        message(b'E', &[cstr(""), vec![0, 0, 0, 0]].concat())
    }

    fn sync() -> Vec<u8> {
        message(b'S', &[])
    }

    fn complete(tag: &str) -> Vec<u8> {
        message(b'C', &cstr(tag))
    }

    fn ready() -> Vec<u8> {
        message(b'Z', b"I")
    }

    fn row_description(columns: &[&str]) -> Vec<u8> {
        let mut body = (columns.len() as u16).to_be_bytes().to_vec();
        for column in columns {
            body.extend(cstr(column));
            body.extend(0u32.to_be_bytes());
            body.extend(0u16.to_be_bytes());
            body.extend(values::TEXT.to_be_bytes());
            body.extend((-1i16).to_be_bytes());
            body.extend((-1i32).to_be_bytes());
            body.extend(0u16.to_be_bytes());
        }
        message(b'T', &body)
    }

    fn data_row(cells: &[&str]) -> Vec<u8> {
        let mut body = (cells.len() as u16).to_be_bytes().to_vec();
        for cell in cells {
            body.extend((cell.len() as i32).to_be_bytes());
            body.extend(cell.as_bytes());
        }
        message(b'D', &body)
    }

    fn error(code: &str, text: &str) -> Vec<u8> {
        let body = [
            vec![b'S'],
            cstr("ERROR"),
            vec![b'C'],
            cstr(code),
            vec![b'M'],
            cstr(text),
            vec![0],
        ]
        .concat();
        message(b'E', &body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_batches_are_forwarded_whole_and_results_meet_their_statements() {
        let mut session = Scripted::start().await;
        let sent = [
            parse("", "select 1"),
            bind(""),
            execute(),
            sync(),
            parse("", "select 2"),
            bind(""),
            execute(),
            sync(),
            query("select 'three'"),
        ];
        assert!(matches!(session.client_sends(&sent).await, Flow::Continue));
        assert_eq!(
            session.wire.upstream,
            sent.concat(),
            "forwarded as sent, in one write"
        );
        let answers = [
            message(b'1', &[]),
            message(b'2', &[]),
            data_row(&["1"]),
            complete("SELECT 1"),
            ready(),
            message(b'1', &[]),
            message(b'2', &[]),
            data_row(&["2"]),
            complete("SELECT 1"),
            ready(),
            row_description(&["word"]),
            data_row(&["three"]),
            complete("SELECT 1"),
            ready(),
        ];
        session.target_sends(&answers).await;
        assert_eq!(session.wire.client, answers.concat());
        let events = session.events().await;
        let queries = of_kind(&events, "db.query");
        let results = of_kind(&events, "db.result");
        assert_eq!(queries.len(), 3);
        assert_eq!(queries[0]["sql"], "select 1");
        assert_eq!(queries[2]["protocol"], "simple");
        let samples: Vec<&Value> = results.iter().map(|r| &r["sample"]).collect();
        assert_eq!(
            samples,
            [&json!([["1"]]), &json!([["2"]]), &json!([["three"]])]
        );
        assert_eq!(results[2]["columns"], json!(["word"]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_mid_batch_skips_the_rest_of_its_batch_only() {
        let mut session = Scripted::start().await;
        session
            .client_sends(&[
                parse("", "select 1/0"),
                bind(""),
                execute(),
                parse("", "select 2"),
                bind(""),
                execute(),
                sync(),
                query("select 3"),
            ])
            .await;
        session
            .target_sends(&[
                message(b'1', &[]),
                message(b'2', &[]),
                error("22012", "division by zero"),
                ready(),
                row_description(&["n"]),
                data_row(&["3"]),
                complete("SELECT 1"),
                ready(),
            ])
            .await;
        let events = session.events().await;
        let queries = of_kind(&events, "db.query");
        let errors = of_kind(&events, "db.error");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["sqlstate"], "22012");
        let results = of_kind(&events, "db.result");
        assert_eq!(results[0]["outcome"], "skipped", "{results:?}");
        assert_eq!(results[1]["sample"], json!([["3"]]));
        assert_eq!(queries.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_denied_statement_never_reaches_the_target_and_its_error_comes_before_ready() {
        let mut session = Scripted::start().await;
        session.client_sends(&[query("drop table accounts")]).await;
        assert_eq!(
            session.wire.upstream,
            codec::SYNC,
            "the target gets a Sync instead"
        );
        session.target_sends(&[ready()]).await;
        let client = String::from_utf8_lossy(&session.wire.client).into_owned();
        assert!(
            client.starts_with('E') && client.contains("42501"),
            "{client:?}"
        );
        assert!(client.contains("no-drop"));
        assert!(session.wire.client.ends_with(&ready()));
        let events = session.events().await;
        let decisions = of_kind(&events, "policy.decision");
        assert_eq!(decisions[0]["action"], "deny");
        assert_eq!(decisions[0]["sql"], "drop table accounts");
        assert!(of_kind(&events, "db.query").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_statement_waits_and_what_follows_it_waits_behind_it_until_approved() {
        let mut session = Scripted::start().await;
        session
            .client_sends(&[
                query("alter table accounts add column note text"),
                query("select 1"),
            ])
            .await;
        assert!(
            session.wire.upstream.is_empty(),
            "nothing forwarded while held"
        );
        let hold = session.state.hold.take().expect("held");
        let notice = String::from_utf8_lossy(&session.wire.client).into_owned();
        assert!(
            notice.starts_with('N') && notice.contains(&hold.id),
            "{notice:?}"
        );
        let bob = Identity {
            name: "bob".into(),
            groups: Vec::new(),
        };
        proctor_core::approvals::decide(
            &session.scratch.store,
            session.scratch.gate.masker(),
            &hold.id,
            &bob,
            true,
            Some("looks fine"),
        )
        .unwrap();
        let end = session.state.guardrails.outcome(&hold).await;
        let mut rest = BytesMut::from(&query("alter table accounts add column note text")[..]);
        rest.extend_from_slice(&query("select 1"));
        let recorder = &mut session.scratch.recorder;
        session
            .state
            .end_hold(hold, end, &mut rest, &mut session.wire, recorder)
            .await;
        assert_eq!(
            session.wire.upstream,
            [
                query("alter table accounts add column note text"),
                query("select 1")
            ]
            .concat()
        );
        let events = session.events().await;
        let approval = of_kind(&events, "approval");
        assert_eq!(approval[0]["outcome"], "approved");
        assert_eq!(approval[0]["by"], "bob");
        let queries = of_kind(&events, "db.query");
        assert_eq!(queries[0]["policy"]["approved_by"], "bob");
        assert_eq!(queries[1]["sql"], "select 1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copy_data_is_sampled_by_line_and_masked_whole_across_messages() {
        let secret = "ghp_1234567890abcdefghijABCDEFGHIJ123456";
        let mut session = Scripted::start().await;
        session
            .client_sends(&[query("copy notes from stdin")])
            .await;
        session.target_sends(&[message(b'G', &[0, 0, 0])]).await;
        let (first, second) = secret.split_at(12);
        session
            .client_sends(&[
                message(b'd', format!("1\tplain\n2\t{first}").as_bytes()),
                message(b'd', format!("{second}\n").as_bytes()),
                message(b'c', &[]),
            ])
            .await;
        session.target_sends(&[complete("COPY 2"), ready()]).await;
        let events = session.events().await;
        let result = of_kind(&events, "db.result")[0];
        assert_eq!(result["rows"], 2);
        let sample = result["sample"].to_string();
        assert!(sample.contains("1\\tplain"), "{sample}");
        assert!(sample.contains("[MASKED:"), "{sample}");
        let everything = serde_json::to_string(&events).unwrap();
        assert!(!everything.contains(secret));
        assert!(!everything.contains(second));
    }

    fn column(name: &str, type_oid: u32) -> Column {
        Column {
            recorded: RecordedColumn {
                name: name.into(),
                recorded_name: name.into(),
                name_findings: Vec::new(),
                rule: None,
            },
            type_oid,
            binary: false,
        }
    }

    #[test]
    fn bind_formats_select_binary_columns() {
        let cols = vec![column("a", values::INT4), column("b", values::TEXT)];
        assert!(with_formats(&cols, &[1]).iter().all(|c| c.binary));
        assert!(with_formats(&cols, &[]).iter().all(|c| !c.binary));
        let mixed = with_formats(&cols, &[0, 1]);
        assert!(!mixed[0].binary && mixed[1].binary);
    }

    #[test]
    fn parameters_are_decoded_by_type_and_bounded() {
        let seven = 7i32.to_be_bytes();
        let params = [Some(&b"42"[..]), Some(&seven[..]), None];
        let (decoded, _) = decode_params(&[values::INT4, values::INT4], &[0, 1, 0], &params, 1000);
        assert_eq!(decoded, json!(["42", 7, null]));
        let big = [b'x'; 100];
        let (bounded, cuts) = decode_params(&[], &[], &[Some(&big[..]), Some(&big[..])], 50);
        assert_eq!(cuts[0], 50, "the first takes the budget");
        assert_eq!(
            bounded[1],
            json!("[not recorded: parameter budget exhausted]")
        );
    }
}
