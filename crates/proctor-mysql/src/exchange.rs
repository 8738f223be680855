//! The MySQL protocol's state machine for one session: what each client command means, what to
//! record of it before it is forwarded, and where each packet of the answer belongs.
//!
//! It is a pure type: it is fed payloads and says what to do with them ([`ClientStep`],
//! [`UpstreamStep`]); the sockets are [`crate::relay`]'s. It decides what to record and queues it
//! through the recorder; result samples, client masking and guardrails are `proctor-core`'s. MySQL
//! answers each command before the next one (clients do not pipeline), so one answer is awaited at
//! a time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use proctor_core::guard::{Guardrails, Held, Judgement};
use proctor_core::journal::{Body, CanonicalJson};
use proctor_core::results::{
    self, RecordedColumn, ResultEnd, ResultLimits, ResultRecord, MASK_LOOKAHEAD,
};
use proctor_core::{session, Fault, RecordError, SessionRecorder};
use serde_json::{json, Value};

use crate::codec::{self, ProtocolError};
use crate::errors::{self, MysqlError};
use crate::kills::parse_kill;
use crate::values;

/// Bytes of one parameter value kept in the journal.
const MAX_PARAM_BYTES: usize = 8 * 1024;
/// Bytes of one parameter's long data kept to be recorded with its execution.
const MAX_LONG_DATA_KEPT: usize = MAX_PARAM_BYTES + MASK_LOOKAHEAD;
/// `COM_STMT_EXECUTE` flag: open a read-only cursor (rows come with `COM_STMT_FETCH`).
const CURSOR_TYPE_READ_ONLY: u8 = 0x01;

/// What a session is configured with.
pub struct RelaySettings {
    pub max_packet_bytes: usize,
    pub max_prepared_statements: usize,
    pub results: ResultLimits,
    /// Whether the session agreed CLIENT_DEPRECATE_EOF (OK packets end result sets).
    pub deprecate_eof: bool,
    /// The conversation with a model this session's statements belong to.
    pub chain: Option<String>,
    pub identity: String,
    pub connection: String,
    /// The database the connection names, the only one `USE` may choose.
    pub database: String,
}

/// A result column: as recorded, and what decoding its cells needs.
#[derive(Clone, Debug)]
struct Column {
    recorded: RecordedColumn,
    column_type: u8,
    unsigned: bool,
    binary_charset: bool,
    /// The definition as the target sent it: an execution that sends the same one again reuses the
    /// column instead of parsing and masking it again.
    definition: Box<[u8]>,
}

impl AsRef<RecordedColumn> for Column {
    fn as_ref(&self) -> &RecordedColumn {
        &self.recorded
    }
}

/// A prepared statement, by the target's id (clients see the target's ids unchanged).
struct Prepared {
    sql: Arc<str>,
    findings: Arc<[Value]>,
    policy: Option<CanonicalJson>,
    params: usize,
    /// The parameter types last bound.
    types: Vec<(u8, bool)>,
    /// Data sent with COM_STMT_SEND_LONG_DATA since the last execution, by parameter (the start
    /// of it, and its full length).
    long_data: Vec<Option<(Vec<u8>, u64)>>,
    columns: Option<Arc<[Column]>>,
}

/// The statement text as recorded: masked, with the findings of masking it.
struct MaskedSql {
    text: Arc<str>,
    findings: Arc<[Value]>,
}

/// Where the packets of a result stream are.
enum Phase {
    /// The first packet: OK, ERR, a LOCAL INFILE request, or a column count.
    Head,
    Columns {
        left: u64,
    },
    /// The EOF after the column definitions (without CLIENT_DEPRECATE_EOF).
    ColumnsEnd,
    Rows,
    /// The client is sending a file the target asked for, then the target answers as at `Head`.
    Infile,
}

/// A query's, an execution's or a fetch's answer.
struct Results {
    binary: bool,
    phase: Phase,
    columns: Option<Arc<[Column]>>,
    /// The columns' types, which binary rows are read by.
    types: Vec<u8>,
    building: Vec<Column>,
    result: ResultRecord,
    /// The prepared statement executed, whose column definitions a binary result may reuse.
    statement: Option<u32>,
    /// The file a LOCAL INFILE sends: bytes, and a sample of its lines.
    infile: Option<Infile>,
}

#[derive(Default)]
struct Infile {
    bytes: u64,
    kept: Vec<u8>,
}

enum PreparePhase {
    Head,
    Params { left: u16, columns: u16 },
    ParamsEnd { columns: u16 },
    Columns { left: u16 },
    ColumnsEnd,
}

struct Preparing {
    sql: MaskedSql,
    policy: Option<CanonicalJson>,
    phase: PreparePhase,
    statement_id: u32,
    params: usize,
    building: Vec<Column>,
}

/// The answer the session waits for.
enum Awaiting {
    /// One OK, EOF or ERR (ping, init db, reset, set option), for the query event `query`.
    Status {
        query: Option<u64>,
    },
    Results(Box<Results>),
    Prepare(Box<Preparing>),
    /// Column definitions until an EOF (COM_FIELD_LIST).
    FieldList,
    /// One packet of text (COM_STATISTICS).
    Statistics,
}

/// A statement the guardrails let through: its text as recorded, the findings of masking it, and
/// the note for its `db.query`.
type Allowed<'t> = (Cow<'t, str>, Vec<Value>, Option<CanonicalJson>);

/// What to do with one client packet.
pub enum ClientStep {
    /// Forward it once what it caused is committed; an answer follows.
    Forward,
    /// Forward it once committed; the target does not answer it.
    ForwardQuietly,
    /// Forward this payload instead, once committed (a `KILL` of the target's own thread).
    Rewrite(Vec<u8>),
    /// Do not forward it: answer the client with this packet, once what it caused is committed.
    Answer(Vec<u8>),
    /// The statement waits for an approver.
    Hold(Held),
    /// A `KILL [QUERY] <id>` of a Proctor session: the relay finds it, then calls
    /// [`Exchange::kill`].
    Kill { id: u32, query_only: bool },
    /// The client says goodbye (COM_QUIT).
    Quit,
}

/// What to do with one target packet.
pub enum UpstreamStep {
    Forward,
    /// Send the client this payload instead (a row with masked cells).
    Replace(Vec<u8>),
}

/// What stops the handling of a target's packet: the journal failed, or the packet broke the
/// protocol.
pub type UpstreamFault = Fault<ProtocolError>;

pub struct Exchange {
    settings: RelaySettings,
    guardrails: Guardrails,
    statements: HashMap<u32, Prepared>,
    awaiting: Option<Awaiting>,
}

fn error_answer(error: MysqlError) -> ClientStep {
    ClientStep::Answer(error.packet())
}

impl Exchange {
    pub fn new(settings: RelaySettings, guardrails: Guardrails) -> Self {
        Self {
            settings,
            guardrails,
            statements: HashMap::new(),
            awaiting: None,
        }
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    pub fn guardrails(&mut self) -> &mut Guardrails {
        &mut self.guardrails
    }

    /// Whether an answer is still expected from the target.
    pub fn is_awaiting(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Whether the client is sending a file the target asked for (LOCAL INFILE).
    pub fn takes_client_data(&self) -> bool {
        matches!(
            &self.awaiting,
            Some(Awaiting::Results(results)) if matches!(results.phase, Phase::Infile)
        )
    }

    /// Handles one client packet (a command, or file data during LOCAL INFILE).
    pub async fn on_client_packet(
        &mut self,
        payload: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        if self.takes_client_data() {
            return Ok(self.on_infile_data(payload, recorder));
        }
        let Some((&command, body)) = payload.split_first() else {
            return self
                .refuse_malformed("an empty command packet", recorder)
                .await;
        };
        match command {
            codec::COM_QUERY => self.on_query(body, recorder).await,
            codec::COM_STMT_PREPARE => self.on_prepare(body, recorder).await,
            codec::COM_STMT_EXECUTE => self.on_execute(payload, recorder).await,
            codec::COM_STMT_SEND_LONG_DATA => Ok(self.on_long_data(payload)),
            codec::COM_STMT_CLOSE => {
                if let Some(id) = body.get(..4) {
                    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                    self.statements.remove(&id);
                }
                Ok(ClientStep::ForwardQuietly)
            }
            codec::COM_STMT_RESET => {
                if let Some(id) = body.get(..4) {
                    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                    if let Some(statement) = self.statements.get_mut(&id) {
                        statement.long_data.iter_mut().for_each(|d| *d = None);
                    }
                }
                self.awaiting = Some(Awaiting::Status { query: None });
                Ok(ClientStep::Forward)
            }
            codec::COM_STMT_FETCH => self.on_fetch(body, recorder).await,
            codec::COM_INIT_DB => {
                let wanted = String::from_utf8_lossy(body).into_owned();
                self.use_database(&wanted, "init_db", recorder).await
            }
            codec::COM_PING | codec::COM_SET_OPTION => {
                self.awaiting = Some(Awaiting::Status { query: None });
                Ok(ClientStep::Forward)
            }
            codec::COM_RESET_CONNECTION => {
                // The target forgets the session's prepared statements.
                self.statements.clear();
                let seq = self
                    .record_command("reset_connection", "", recorder)
                    .await?;
                self.awaiting = Some(Awaiting::Status { query: Some(seq) });
                Ok(ClientStep::Forward)
            }
            codec::COM_STATISTICS => {
                self.awaiting = Some(Awaiting::Statistics);
                Ok(ClientStep::Forward)
            }
            codec::COM_FIELD_LIST => {
                self.awaiting = Some(Awaiting::FieldList);
                Ok(ClientStep::Forward)
            }
            codec::COM_PROCESS_KILL => match body.get(..4) {
                Some(id) => Ok(ClientStep::Kill {
                    id: u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
                    query_only: false,
                }),
                None => {
                    self.refuse_malformed("COM_PROCESS_KILL without an id", recorder)
                        .await
                }
            },
            codec::COM_QUIT => Ok(ClientStep::Quit),
            codec::COM_CHANGE_USER => {
                self.record_refused_command(
                    "COM_CHANGE_USER",
                    "a Proctor session belongs to one identity",
                    recorder,
                )
                .await?;
                Ok(error_answer(errors::not_supported(
                    "COM_CHANGE_USER is refused: a Proctor session belongs to one identity; open a new connection as the other identity",
                )))
            }
            other => {
                self.record_refused_command(
                    &format!("command 0x{other:02x}"),
                    "Proctor does not pass it through",
                    recorder,
                )
                .await?;
                Ok(error_answer(errors::unknown_command(other)))
            }
        }
    }

    /// Answers a packet that is not the protocol with ER_MALFORMED_PACKET, recording why.
    async fn refuse_malformed(
        &mut self,
        why: &str,
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        recorder
            .record_queued_masked(
                "protocol.error",
                json!({"direction": "client", "message": why}),
            )
            .await?;
        Ok(error_answer(errors::malformed(why)))
    }

    /// Answers a command naming a prepared statement the session does not hold, recording it.
    async fn refuse_unknown_statement(
        &mut self,
        id: u32,
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        let error = errors::unknown_statement(id);
        self.record_error(&error, None, recorder).await?;
        Ok(error_answer(error))
    }

    async fn record_refused_command(
        &mut self,
        command: &str,
        why: &str,
        recorder: &mut SessionRecorder,
    ) -> Result<(), RecordError> {
        recorder
            .record_queued_masked(
                "protocol.error",
                json!({"direction": "client", "message": format!("{command} refused: {why}")}),
            )
            .await?;
        Ok(())
    }

    /// Records a command without SQL of its own (`protocol`: what it is, `detail`: its argument).
    async fn record_command(
        &mut self,
        protocol: &'static str,
        detail: &str,
        recorder: &mut SessionRecorder,
    ) -> Result<u64, RecordError> {
        let (detail, findings) = recorder.mask(detail, "sql");
        recorder
            .record_queued_with(
                "db.query",
                Body::new()
                    .opt_str("chain", self.settings.chain.as_deref())
                    .str("protocol", protocol)
                    .str("sql", &detail)
                    .finish(),
                findings,
            )
            .await
    }

    async fn use_database(
        &mut self,
        wanted: &str,
        protocol: &'static str,
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        let sql = format!("USE `{}`", wanted.replace('`', "``"));
        let seq = self.record_command(protocol, &sql, recorder).await?;
        if wanted != self.settings.database {
            let error = errors::other_database(wanted, &self.settings.database);
            self.record_error(&error, Some(seq), recorder).await?;
            return Ok(error_answer(error));
        }
        self.awaiting = Some(Awaiting::Status { query: Some(seq) });
        Ok(ClientStep::Forward)
    }

    async fn on_query(
        &mut self,
        body: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        let text = String::from_utf8_lossy(body);
        if let Some((id, query_only)) = parse_kill(&text) {
            return Ok(ClientStep::Kill { id, query_only });
        }
        if let Some(wanted) = use_target(&text) {
            return self.use_database(&wanted, "text", recorder).await;
        }
        let (sql, findings, policy) = match self.judge(&text, recorder).await? {
            Ok(allowed) => allowed,
            Err(step) => return Ok(step),
        };
        let chain = self.settings.chain.as_deref();
        let seq =
            session::record_query(recorder, chain, policy.as_ref(), "text", &sql, findings).await?;
        self.awaiting = Some(Awaiting::Results(Box::new(Results::new(seq, false, None))));
        Ok(ClientStep::Forward)
    }

    /// The guardrails' judgement of a statement: what to record of it if it may go on, or the step
    /// that answers it (a refusal, a hold).
    async fn judge<'t>(
        &mut self,
        text: &'t str,
        recorder: &mut SessionRecorder,
    ) -> Result<Result<Allowed<'t>, ClientStep>, RecordError> {
        Ok(
            match self.guardrails.judge_statement(text, recorder).await? {
                Judgement::Allow {
                    sql,
                    findings,
                    policy,
                } => Ok((sql, findings, policy)),
                Judgement::Refuse(refusal) => Err(error_answer(errors::refused(refusal))),
                Judgement::Hold(held) => Err(ClientStep::Hold(held)),
            },
        )
    }

    /// A `KILL` that the relay resolved to the target's `thread` (of the session Proctor knows as
    /// `id`): recorded as sent, forwarded as the target understands it.
    pub async fn kill(
        &mut self,
        id: u32,
        thread: u32,
        query_only: bool,
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        let what = if query_only { "KILL QUERY" } else { "KILL" };
        let seq = recorder
            .record_queued_with(
                "db.query",
                Body::new()
                    .opt_str("chain", self.settings.chain.as_deref())
                    .value("kill", &json!({"session": id, "upstream_thread": thread}))
                    .str("protocol", "text")
                    .str("sql", &format!("{what} {id}"))
                    .finish(),
                Vec::new(),
            )
            .await?;
        self.awaiting = Some(Awaiting::Results(Box::new(Results::new(seq, false, None))));
        let mut rewritten = vec![codec::COM_QUERY];
        rewritten.extend_from_slice(format!("{what} {thread}").as_bytes());
        Ok(ClientStep::Rewrite(rewritten))
    }

    async fn on_prepare(
        &mut self,
        body: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        if self.statements.len() >= self.settings.max_prepared_statements {
            return Ok(error_answer(errors::too_many_statements(
                self.settings.max_prepared_statements,
            )));
        }
        let text = String::from_utf8_lossy(body);
        let (sql, findings, policy) = match self.judge(&text, recorder).await? {
            Ok(allowed) => allowed,
            Err(step) => return Ok(step),
        };
        self.awaiting = Some(Awaiting::Prepare(Box::new(Preparing {
            sql: MaskedSql {
                text: Arc::from(sql),
                findings: findings.into(),
            },
            policy,
            phase: PreparePhase::Head,
            statement_id: 0,
            params: 0,
            building: Vec::new(),
        })));
        Ok(ClientStep::Forward)
    }

    async fn on_execute(
        &mut self,
        payload: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        let Some(id) = payload.get(1..5) else {
            return self
                .refuse_malformed("COM_STMT_EXECUTE without a statement id", recorder)
                .await;
        };
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        if !self.statements.contains_key(&id) {
            return self.refuse_unknown_statement(id, recorder).await;
        }
        let statement = self.statements.get_mut(&id).expect("checked above");
        let long_data: Vec<bool> = statement.long_data.iter().map(Option::is_some).collect();
        let execute = match codec::parse_execute(
            payload,
            statement.params,
            &statement.types,
            &long_data,
        ) {
            Ok(execute) => execute,
            Err(e) => {
                recorder
                        .record_queued_masked(
                            "protocol.error",
                            json!({"direction": "client", "message": format!("COM_STMT_EXECUTE: {}", e.0)}),
                        )
                        .await?;
                return Ok(error_answer(errors::malformed(&e.0)));
            }
        };
        statement.types = execute.types.clone();
        let budget = self.settings.results.sample_bytes.min(MAX_PARAM_BYTES);
        let mut params: Vec<Value> = execute
            .params
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let (column_type, unsigned) = execute.types.get(i).copied().unwrap_or((0, false));
                // Parameters carry no character set: bytes are text if UTF-8, else hex.
                match (statement.long_data.get(i).and_then(Option::as_ref), value) {
                    (Some((kept, total)), _) => {
                        let cut = *total > kept.len() as u64;
                        let shown = if cut { utf8_prefix(kept) } else { kept };
                        let mut decoded = values::decode_text(true, shown, budget + MASK_LOOKAHEAD);
                        if cut {
                            decoded = json!({"long_data": decoded, "bytes": total});
                        }
                        decoded
                    }
                    (None, Some(value)) => values::decode_binary(
                        column_type,
                        unsigned,
                        true,
                        value,
                        budget + MASK_LOOKAHEAD,
                    ),
                    (None, None) => Value::Null,
                }
            })
            .collect();
        statement.long_data.iter_mut().for_each(|d| *d = None);
        let mut findings: Vec<Value> = statement.findings.to_vec();
        for param in &mut params {
            findings.extend(recorder.mask_value(param, "params"));
            results::cut_strings(param, budget);
        }
        let cursor = execute.flags & CURSOR_TYPE_READ_ONLY != 0;
        let mut event = Body::new().opt_str("chain", self.settings.chain.as_deref());
        if cursor {
            event = event.bool("cursor", true);
        }
        let event = event
            .value("params", &Value::Array(params))
            .opt_json("policy", statement.policy.as_ref())
            .str("protocol", "binary")
            .str("sql", &statement.sql)
            .uint("statement", u64::from(id))
            .finish();
        let columns = statement.columns.clone();
        let seq = recorder
            .record_queued_with("db.query", event, findings)
            .await?;
        self.awaiting = Some(Awaiting::Results(Box::new(Results::new(
            seq,
            true,
            Some((id, columns)),
        ))));
        Ok(ClientStep::Forward)
    }

    fn on_long_data(&mut self, payload: &[u8]) -> ClientStep {
        if let Ok((id, param, data)) = codec::parse_send_long_data(payload) {
            if let Some(slot) = self
                .statements
                .get_mut(&id)
                .and_then(|s| s.long_data.get_mut(usize::from(param)))
            {
                let (kept, total) = slot.get_or_insert_with(Default::default);
                let room = MAX_LONG_DATA_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
                *total += data.len() as u64;
            }
        }
        ClientStep::ForwardQuietly
    }

    async fn on_fetch(
        &mut self,
        body: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<ClientStep, RecordError> {
        let Some(id) = body.get(..4) else {
            return self
                .refuse_malformed("COM_STMT_FETCH without a statement id", recorder)
                .await;
        };
        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        let (sql, findings, columns) = match self.statements.get(&id) {
            Some(s) => (s.sql.clone(), s.findings.to_vec(), s.columns.clone()),
            None => return self.refuse_unknown_statement(id, recorder).await,
        };
        let seq = recorder
            .record_queued_with(
                "db.query",
                Body::new()
                    .opt_str("chain", self.settings.chain.as_deref())
                    .str("protocol", "fetch")
                    .str("sql", &sql)
                    .uint("statement", u64::from(id))
                    .finish(),
                findings,
            )
            .await?;
        let mut results = Results::new(seq, true, Some((id, columns)));
        results.phase = Phase::Rows;
        self.awaiting = Some(Awaiting::Results(Box::new(results)));
        Ok(ClientStep::Forward)
    }

    /// Counts a packet of the file a LOCAL INFILE sends; the empty packet ends it.
    fn on_infile_data(&mut self, payload: &[u8], recorder: &SessionRecorder) -> ClientStep {
        let Some(Awaiting::Results(results)) = self.awaiting.as_mut() else {
            return ClientStep::ForwardQuietly;
        };
        let sample_bytes = self.settings.results.sample_bytes;
        let infile = results.infile.get_or_insert_with(Infile::default);
        if !payload.is_empty() {
            infile.bytes += payload.len() as u64;
            let room = (sample_bytes + MASK_LOOKAHEAD).saturating_sub(infile.kept.len());
            infile
                .kept
                .extend_from_slice(&payload[..payload.len().min(room)]);
            return ClientStep::ForwardQuietly;
        }
        // The file is sent: its sample is masked as one text (a secret may span packets), and the
        // target answers as to a query.
        let text = String::from_utf8_lossy(&infile.kept);
        let (masked, findings) = recorder.mask(&text, "sample");
        let mut lines = Vec::new();
        let mut kept = 0;
        for line in masked.split('\n').filter(|l| !l.is_empty()) {
            if lines.len() >= self.settings.results.sample_rows || kept >= sample_bytes {
                break;
            }
            let mut cell = Value::String(line.to_owned());
            results::cut_strings(&mut cell, sample_bytes - kept);
            kept += line.len();
            lines.push(cell);
        }
        let bytes = infile.bytes;
        results.result.set_data_sample(bytes, lines, findings);
        results.phase = Phase::Head;
        ClientStep::ForwardQuietly
    }

    /// Handles one packet of the target's answer.
    pub async fn on_upstream_packet(
        &mut self,
        payload: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<UpstreamStep, UpstreamFault> {
        let Some(awaiting) = self.awaiting.take() else {
            return Err(Fault::Protocol(ProtocolError(
                "the database sent a packet that answers no command".into(),
            )));
        };
        let (next, step) = match awaiting {
            Awaiting::Status { query } => {
                self.on_status(payload, query, recorder).await?;
                (None, UpstreamStep::Forward)
            }
            Awaiting::Statistics => (None, UpstreamStep::Forward),
            Awaiting::FieldList => {
                let done = payload.first() == Some(&0xFF) || codec::is_eof(payload);
                (
                    (!done).then_some(Awaiting::FieldList),
                    UpstreamStep::Forward,
                )
            }
            Awaiting::Prepare(preparing) => {
                let next = self.on_prepare_answer(preparing, payload, recorder).await?;
                (next.map(Awaiting::Prepare), UpstreamStep::Forward)
            }
            Awaiting::Results(results) => {
                let (next, step) = self.on_results(results, payload, recorder).await?;
                (next.map(Awaiting::Results), step)
            }
        };
        self.awaiting = next;
        Ok(step)
    }

    async fn on_status(
        &mut self,
        payload: &[u8],
        query: Option<u64>,
        recorder: &mut SessionRecorder,
    ) -> Result<(), UpstreamFault> {
        let Some(query) = query else {
            return Ok(());
        };
        if payload.first() == Some(&0xFF) {
            self.record_target_error(payload, Some(query), None, recorder)
                .await?;
        } else {
            let mut result = ResultRecord::new(query);
            result
                .record::<RecordedColumn>(ok_end(payload)?, None, recorder)
                .await?;
        }
        Ok(())
    }

    async fn on_prepare_answer(
        &mut self,
        mut preparing: Box<Preparing>,
        payload: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<Option<Box<Preparing>>, UpstreamFault> {
        let deprecate_eof = self.settings.deprecate_eof;
        preparing.phase = match preparing.phase {
            PreparePhase::Head => {
                if payload.first() == Some(&0xFF) {
                    let sql = preparing.sql.text.clone();
                    let findings = preparing.sql.findings.to_vec();
                    self.record_target_error(payload, None, Some((&sql, findings)), recorder)
                        .await?;
                    return Ok(None);
                }
                let ok = codec::parse_prepare_ok(payload)?;
                preparing.statement_id = ok.statement_id;
                preparing.params = usize::from(ok.params);
                match (ok.params, ok.columns) {
                    (0, 0) => {
                        self.store_statement(*preparing);
                        return Ok(None);
                    }
                    (0, columns) => PreparePhase::Columns { left: columns },
                    (params, columns) => PreparePhase::Params {
                        left: params,
                        columns,
                    },
                }
            }
            PreparePhase::Params { left, columns } => {
                match (left.saturating_sub(1), columns, deprecate_eof) {
                    (0, _, false) => PreparePhase::ParamsEnd { columns },
                    (0, 0, true) => {
                        self.store_statement(*preparing);
                        return Ok(None);
                    }
                    (0, columns, true) => PreparePhase::Columns { left: columns },
                    (left, columns, _) => PreparePhase::Params { left, columns },
                }
            }
            PreparePhase::ParamsEnd { columns: 0 } => {
                self.store_statement(*preparing);
                return Ok(None);
            }
            PreparePhase::ParamsEnd { columns } => PreparePhase::Columns { left: columns },
            PreparePhase::Columns { left } => {
                preparing
                    .building
                    .push(self.column(payload, None, recorder)?);
                match (left.saturating_sub(1), deprecate_eof) {
                    (0, false) => PreparePhase::ColumnsEnd,
                    (0, true) => {
                        self.store_statement(*preparing);
                        return Ok(None);
                    }
                    (left, _) => PreparePhase::Columns { left },
                }
            }
            PreparePhase::ColumnsEnd => {
                self.store_statement(*preparing);
                return Ok(None);
            }
        };
        Ok(Some(preparing))
    }

    fn store_statement(&mut self, preparing: Preparing) {
        let columns = (!preparing.building.is_empty()).then(|| preparing.building.into());
        self.statements.insert(
            preparing.statement_id,
            Prepared {
                sql: preparing.sql.text,
                findings: preparing.sql.findings,
                policy: preparing.policy,
                params: preparing.params,
                types: Vec::new(),
                long_data: vec![None; preparing.params],
                columns,
            },
        );
    }

    /// The column a definition describes: `known`, the column at its place in the last result of
    /// the same statement, when the target sent the same definition again; else parsed, and its name
    /// masked. A column of no table (an expression) has the table "".
    fn column(
        &self,
        payload: &[u8],
        known: Option<&Column>,
        recorder: &SessionRecorder,
    ) -> Result<Column, ProtocolError> {
        if let Some(known) = known.filter(|c| *c.definition == *payload) {
            return Ok(known.clone());
        }
        let definition = codec::parse_column_definition(payload)?;
        Ok(Column {
            column_type: definition.column_type,
            unsigned: definition.is_unsigned(),
            binary_charset: definition.is_binary(),
            recorded: RecordedColumn::new(
                definition.name,
                Some(&definition.org_table),
                &self.settings.results,
                recorder,
            ),
            definition: payload.into(),
        })
    }

    async fn on_results(
        &mut self,
        mut results: Box<Results>,
        payload: &[u8],
        recorder: &mut SessionRecorder,
    ) -> Result<(Option<Box<Results>>, UpstreamStep), UpstreamFault> {
        let deprecate_eof = self.settings.deprecate_eof;
        let mut step = UpstreamStep::Forward;
        match results.phase {
            Phase::Head | Phase::Infile => match payload.first() {
                Some(0x00) => {
                    let end = ok_end(payload)?;
                    let more =
                        codec::parse_ok(payload)?.status & codec::SERVER_MORE_RESULTS_EXISTS != 0;
                    results.result.record::<Column>(end, None, recorder).await?;
                    if !more {
                        return Ok((None, step));
                    }
                    results.result.restart();
                }
                Some(0xFF) => {
                    let query = results.result.query_seq;
                    self.record_target_error(payload, Some(query), None, recorder)
                        .await?;
                    return Ok((None, step));
                }
                Some(0xFB) => {
                    // The file's name goes with the result's notes, masked when they are recorded.
                    let name = codec::parse_local_infile_request(payload).unwrap_or_default();
                    results
                        .result
                        .note(json!({"local_infile": String::from_utf8_lossy(name)}));
                    results.infile = Some(Infile::default());
                    results.phase = Phase::Infile;
                }
                _ => {
                    let count = codec::parse_column_count(payload)?;
                    results.building.clear();
                    results.phase = if count == 0 {
                        Phase::Rows
                    } else {
                        Phase::Columns { left: count }
                    };
                }
            },
            Phase::Columns { left } => {
                let known = results
                    .columns
                    .as_ref()
                    .and_then(|columns| columns.get(results.building.len()));
                let column = self.column(payload, known, recorder)?;
                results.building.push(column);
                results.phase = match (left - 1, deprecate_eof) {
                    (0, false) => Phase::ColumnsEnd,
                    (0, true) => {
                        results.take_columns(&mut self.statements);
                        Phase::Rows
                    }
                    (left, _) => Phase::Columns { left },
                };
            }
            Phase::ColumnsEnd => {
                results.take_columns(&mut self.statements);
                let status = codec::eof_status(payload).unwrap_or(0);
                if status & codec::SERVER_STATUS_CURSOR_EXISTS != 0 {
                    // Rows come with COM_STMT_FETCH.
                    let end = ResultEnd {
                        rows: 0,
                        tag: "cursor",
                        suspended: true,
                        last_insert_id: None,
                        warnings: None,
                    };
                    let columns = results.columns.clone();
                    results
                        .result
                        .record(end, columns.as_deref(), recorder)
                        .await?;
                    return Ok((None, step));
                }
                results.phase = Phase::Rows;
            }
            Phase::Rows => {
                if payload.first() == Some(&0xFF) {
                    let query = results.result.query_seq;
                    self.record_target_error(payload, Some(query), None, recorder)
                        .await?;
                    return Ok((None, step));
                }
                let terminator = payload.first() == Some(&0xFE)
                    && if deprecate_eof {
                        payload.len() < codec::MAX_FRAME_PAYLOAD
                    } else {
                        payload.len() < 9
                    };
                if terminator {
                    let status = if deprecate_eof {
                        codec::parse_ok(payload)?.status
                    } else {
                        codec::eof_status(payload).unwrap_or(0)
                    };
                    let warnings = if deprecate_eof {
                        u64::from(codec::parse_ok(payload)?.warnings)
                    } else {
                        payload
                            .get(1..3)
                            .map_or(0, |w| u64::from(u16::from_le_bytes([w[0], w[1]])))
                    };
                    let end = ResultEnd {
                        rows: results.result.rows(),
                        tag: if status & codec::SERVER_STATUS_CURSOR_EXISTS != 0 {
                            "fetch"
                        } else {
                            "rows"
                        },
                        suspended: status & codec::SERVER_STATUS_CURSOR_EXISTS != 0
                            && status & codec::SERVER_STATUS_LAST_ROW_SENT == 0,
                        last_insert_id: None,
                        warnings: Some(warnings),
                    };
                    let columns = results.columns.clone();
                    results
                        .result
                        .record(end, columns.as_deref(), recorder)
                        .await?;
                    if status & codec::SERVER_MORE_RESULTS_EXISTS == 0 {
                        return Ok((None, step));
                    }
                    results.result.restart();
                    results.set_columns(None);
                    results.phase = Phase::Head;
                } else {
                    if let Some(masked) = self.on_row(&mut results, payload, recorder)? {
                        step = UpstreamStep::Replace(masked);
                    }
                }
            }
        }
        Ok((Some(results), step))
    }

    /// Samples one row and, when the client's copy is masked, returns it rewritten if it held
    /// anything to mask.
    fn on_row(
        &self,
        results: &mut Results,
        payload: &[u8],
        recorder: &SessionRecorder,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        let limits = &self.settings.results;
        let budget = results.result.count_row(payload.len(), limits);
        if budget.is_none() && !limits.mask_client {
            // Counted; nothing of the row is kept or changed.
            return Ok(None);
        }
        let columns = results.columns.clone().unwrap_or_else(|| Arc::from([]));
        let cells = if results.binary {
            codec::binary_row(payload, &results.types)?
        } else {
            codec::text_row(payload, columns.len())?
        };
        if let Some(mut budget) = budget {
            let mut row = Vec::with_capacity(cells.len());
            for (i, cell) in cells.iter().enumerate() {
                let column = columns.get(i);
                let decoded = match (cell, column) {
                    (None, _) => Value::Null,
                    (Some(value), Some(c)) if results.binary => values::decode_binary(
                        c.column_type,
                        c.unsigned,
                        c.binary_charset,
                        value,
                        budget + MASK_LOOKAHEAD,
                    ),
                    (Some(value), c) => values::decode_text(
                        c.is_some_and(|c| c.binary_charset),
                        value,
                        budget + MASK_LOOKAHEAD,
                    ),
                };
                let rule = column
                    .and_then(|c| c.recorded.rule)
                    .map(|n| &limits.column_rules[n]);
                let raw_len = cell.map(<[u8]>::len);
                row.push(
                    results
                        .result
                        .sample_cell(decoded, raw_len, rule, budget, recorder),
                );
                budget = budget.saturating_sub(raw_len.unwrap_or(4));
            }
            results.result.push_sample_row(row);
        }
        if !limits.mask_client {
            return Ok(None);
        }
        let mut masked: Vec<Option<Cow<'_, [u8]>>> = Vec::with_capacity(cells.len());
        let mut changed = false;
        for (i, cell) in cells.iter().enumerate() {
            let Some(value) = cell else {
                masked.push(None);
                continue;
            };
            let column = columns.get(i);
            // A binary cell of a type that is not text is masked as its decoded value; a masked one
            // cannot go back in place, so it goes as NULL.
            let (text, as_text): (Cow<'_, str>, bool) = match column {
                Some(c) if results.binary && !values::is_text_type(c.column_type) => {
                    let decoded = values::decode_binary(
                        c.column_type,
                        c.unsigned,
                        c.binary_charset,
                        value,
                        usize::MAX,
                    );
                    let text = match decoded {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (Cow::Owned(text), false)
                }
                _ => (String::from_utf8_lossy(value), true),
            };
            let rule = column
                .and_then(|c| c.recorded.rule)
                .map(|n| &limits.column_rules[n]);
            match results.result.mask_for_client(&text, rule, recorder) {
                None => masked.push(Some(Cow::Borrowed(value))),
                Some(shown) if as_text => {
                    changed = true;
                    masked.push(Some(Cow::Owned(shown.into_bytes())));
                }
                Some(_) => {
                    changed = true;
                    results.result.note_nulled();
                    masked.push(None);
                }
            }
        }
        if !changed {
            return Ok(None);
        }
        let cells: Vec<Option<&[u8]>> = masked.iter().map(|c| c.as_deref()).collect();
        Ok(Some(if results.binary {
            codec::encode_binary_row(&cells, &results.types)
        } else {
            codec::encode_text_row(&cells)
        }))
    }

    /// Records the target's ERR packet: for the query it answers, or for the prepared statement
    /// (`prepared`: its recorded text and findings) that failed to prepare.
    async fn record_target_error(
        &mut self,
        payload: &[u8],
        query: Option<u64>,
        prepared: Option<(&str, Vec<Value>)>,
        recorder: &mut SessionRecorder,
    ) -> Result<(), UpstreamFault> {
        let error = codec::parse_err(payload)?;
        let is_prepare = prepared.is_some();
        let (message, mut findings) = recorder.mask(&error.message, "error");
        let mut event = Body::new()
            .uint("code", u64::from(error.code))
            .str("message", &message);
        if let Some(query) = query {
            event = event.uint("query", query);
        }
        if let Some((sql, sql_findings)) = prepared {
            event = event.str("sql", sql);
            findings.extend(sql_findings);
        }
        event = event.str("sqlstate", &error.sqlstate);
        if is_prepare {
            event = event.str("stage", "prepare");
        }
        recorder
            .record_queued_with("db.error", event.finish(), findings)
            .await?;
        Ok(())
    }

    /// Records an error Proctor answers in the target's place.
    pub async fn record_error(
        &mut self,
        error: &MysqlError,
        query: Option<u64>,
        recorder: &mut SessionRecorder,
    ) -> Result<(), RecordError> {
        let (message, findings) = recorder.mask(&error.message, "error");
        let mut event = Body::new()
            .uint("code", u64::from(error.code))
            .str("message", &message);
        if let Some(query) = query {
            event = event.uint("query", query);
        }
        let event = event
            .str("source", "proctor")
            .str("sqlstate", error.sqlstate)
            .finish();
        recorder
            .record_queued_with("db.error", event, findings)
            .await?;
        Ok(())
    }
}

/// The start kept of a long parameter without the character its cut split, so that a cut text
/// still reads as text.
fn utf8_prefix(kept: &[u8]) -> &[u8] {
    match std::str::from_utf8(kept) {
        Err(e) if e.error_len().is_none() => &kept[..e.valid_up_to()],
        _ => kept,
    }
}

impl Results {
    fn new(query_seq: u64, binary: bool, statement: Option<(u32, Option<Arc<[Column]>>)>) -> Self {
        let (statement, columns) = match statement {
            Some((id, columns)) => (Some(id), columns),
            None => (None, None),
        };
        let mut results = Self {
            binary,
            phase: Phase::Head,
            columns: None,
            types: Vec::new(),
            building: Vec::new(),
            result: ResultRecord::new(query_seq),
            statement,
            infile: None,
        };
        results.set_columns(columns);
        results
    }

    fn set_columns(&mut self, columns: Option<Arc<[Column]>>) {
        self.types.clear();
        self.types
            .extend(columns.iter().flat_map(|c| c.iter().map(|c| c.column_type)));
        self.columns = columns;
    }

    /// The column definitions just read become the result's (and the statement's).
    fn take_columns(&mut self, statements: &mut HashMap<u32, Prepared>) {
        let columns: Arc<[Column]> = std::mem::take(&mut self.building).into();
        if let Some(statement) = self.statement.and_then(|id| statements.get_mut(&id)) {
            statement.columns = Some(columns.clone());
        }
        self.set_columns(Some(columns));
    }
}

/// How an OK packet ends a result.
fn ok_end(payload: &[u8]) -> Result<ResultEnd<'static>, ProtocolError> {
    if payload.first() != Some(&0x00) {
        return Ok(ResultEnd {
            rows: 0,
            tag: "OK",
            suspended: false,
            last_insert_id: None,
            warnings: None,
        });
    }
    let ok = codec::parse_ok(payload)?;
    Ok(ResultEnd {
        rows: ok.affected_rows,
        tag: "OK",
        suspended: false,
        last_insert_id: Some(ok.last_insert_id),
        warnings: Some(u64::from(ok.warnings)),
    })
}

/// The database a `USE` statement chooses, if the query is one.
fn use_target(sql: &str) -> Option<String> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    let (word, rest) = trimmed.split_once(char::is_whitespace)?;
    if !word.eq_ignore_ascii_case("use") {
        return None;
    }
    let name = rest.trim();
    let name = name
        .strip_prefix('`')
        .and_then(|n| n.strip_suffix('`'))
        .map(|n| n.replace("``", "`"))
        .unwrap_or_else(|| name.to_owned());
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_core::policy::Dialect;
    use proctor_core::scratch::{of_kind, ScratchSession};

    const SECRET: &str = "ghp_1234567890abcdefghijABCDEFGHIJ123456";

    fn config(extra: &str) -> String {
        format!(
            r#"
[[connection]]
name = "app"
kind = "mysql"
address = "127.0.0.1:1"
database = "app"
user = "app"
allow = ["*"]
rules = [{{ name = "no-drop", flags = ["drop"], action = "deny" }}]
{extra}
"#
        )
    }

    /// An exchange over a scratch journal, fed scripted packets.
    struct Scripted {
        scratch: ScratchSession,
        exchange: Exchange,
    }

    impl Scripted {
        async fn start(extra: &str) -> Self {
            let scratch = ScratchSession::start(&config(extra), "mysql", "app").await;
            let settings = RelaySettings {
                max_packet_bytes: 1 << 20,
                max_prepared_statements: 10,
                results: scratch.result_limits(),
                deprecate_eof: true,
                chain: None,
                identity: "alice".into(),
                connection: "app".into(),
                database: "app".into(),
            };
            let exchange = Exchange::new(settings, scratch.guardrails(Dialect::MySql));
            Self { scratch, exchange }
        }

        async fn client_sends(&mut self, payload: &[u8]) -> ClientStep {
            self.exchange
                .on_client_packet(payload, &mut self.scratch.recorder)
                .await
                .unwrap()
        }

        /// Feeds the target's packets; returns what the client gets instead of each, if anything.
        async fn target_sends(&mut self, packets: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
            let mut replaced = Vec::new();
            for packet in packets {
                assert!(self.exchange.is_awaiting(), "an answer nobody waits for");
                let step = self
                    .exchange
                    .on_upstream_packet(packet, &mut self.scratch.recorder)
                    .await
                    .unwrap_or_else(|_| panic!("a valid answer"));
                replaced.push(match step {
                    UpstreamStep::Forward => None,
                    UpstreamStep::Replace(payload) => Some(payload),
                });
            }
            replaced
        }

        async fn events(self) -> Vec<(String, Value)> {
            self.scratch.events().await
        }
    }

    fn command(code: u8, body: &[u8]) -> Vec<u8> {
        [vec![code], body.to_vec()].concat()
    }

    fn column(name: &str, column_type: u8) -> Vec<u8> {
        codec::ColumnDefinition {
            schema: "app".into(),
            table: "t".into(),
            org_table: "t".into(),
            name: name.into(),
            org_name: name.into(),
            charset: 45,
            length: 255,
            column_type,
            flags: 0,
            decimals: 0,
        }
        .encode()
    }

    /// The OK packet that ends a result set under CLIENT_DEPRECATE_EOF.
    fn end_of_rows(status: u16) -> Vec<u8> {
        let mut ok = codec::ok_packet(0, 0, status, 0);
        ok[0] = 0xFE;
        ok
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_result_set_of_a_multi_statement_query_is_recorded_for_it() {
        let mut session = Scripted::start("").await;
        let step = session
            .client_sends(&command(
                codec::COM_QUERY,
                b"select 1; select 'a', 'b'; insert into t values (1)",
            ))
            .await;
        assert!(matches!(step, ClientStep::Forward));
        let more = codec::SERVER_MORE_RESULTS_EXISTS | codec::SERVER_STATUS_AUTOCOMMIT;
        session
            .target_sends(&[
                vec![1],
                column("1", codec::TYPE_LONGLONG),
                codec::encode_text_row(&[Some(b"1")]),
                end_of_rows(more),
                vec![2],
                column("a", codec::TYPE_VAR_STRING),
                column("b", codec::TYPE_VAR_STRING),
                codec::encode_text_row(&[Some(b"a"), None]),
                end_of_rows(more),
                codec::ok_packet(1, 42, codec::SERVER_STATUS_AUTOCOMMIT, 0),
            ])
            .await;
        assert!(!session.exchange.is_awaiting());
        let events = session.events().await;
        let query = of_kind(&events, "db.query");
        assert_eq!(query.len(), 1);
        let results = of_kind(&events, "db.result");
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["sample"], json!([["1"]]));
        assert_eq!(results[1]["columns"], json!(["a", "b"]));
        assert_eq!(results[1]["sample"], json!([["a", null]]));
        assert_eq!(results[2]["rows"], 1);
        assert_eq!(results[2]["last_insert_id"], 42);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_prepared_statement_records_its_parameters_by_type_and_masked() {
        let mut session = Scripted::start("").await;
        session
            .client_sends(&command(codec::COM_STMT_PREPARE, b"select ?, ?"))
            .await;
        let prepare_ok = [
            vec![0],
            9u32.to_le_bytes().to_vec(),
            vec![1, 0, 2, 0, 0, 0, 0],
        ]
        .concat();
        session
            .target_sends(&[
                prepare_ok,
                column("?", codec::TYPE_VAR_STRING),
                column("?", codec::TYPE_VAR_STRING),
                column("token", codec::TYPE_VAR_STRING),
            ])
            .await;
        assert!(!session.exchange.is_awaiting());
        let mut execute = vec![codec::COM_STMT_EXECUTE];
        execute.extend(9u32.to_le_bytes());
        execute.extend([0, 1, 0, 0, 0]);
        execute.push(0); // no NULL parameter
        execute.push(1); // types follow
        execute.extend([codec::TYPE_LONGLONG, 0x80, codec::TYPE_VAR_STRING, 0]);
        execute.extend(u64::MAX.to_le_bytes());
        execute.push(SECRET.len() as u8);
        execute.extend(SECRET.as_bytes());
        assert!(matches!(
            session.client_sends(&execute).await,
            ClientStep::Forward
        ));
        let row = codec::encode_binary_row(&[Some(SECRET.as_bytes())], &[codec::TYPE_VAR_STRING]);
        session
            .target_sends(&[
                vec![1],
                column("token", codec::TYPE_VAR_STRING),
                row,
                end_of_rows(0),
            ])
            .await;
        let events = session.events().await;
        let query = of_kind(&events, "db.query")[0];
        assert_eq!(query["protocol"], "binary");
        assert_eq!(query["statement"], 9);
        assert_eq!(query["sql"], "select ?, ?");
        assert_eq!(query["params"][0], "18446744073709551615");
        assert!(query["params"][1].as_str().unwrap().starts_with("[MASKED:"));
        let result = of_kind(&events, "db.result")[0];
        assert!(result["sample"][0][0]
            .as_str()
            .unwrap()
            .starts_with("[MASKED:"));
        assert!(!serde_json::to_string(&events).unwrap().contains(SECRET));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ping_reset_and_close_keep_the_session_in_step_with_its_statements() {
        let mut session = Scripted::start("").await;
        assert!(matches!(
            session.client_sends(&[codec::COM_PING]).await,
            ClientStep::Forward
        ));
        session.target_sends(&[codec::ok_packet(0, 0, 0, 0)]).await;
        assert!(!session.exchange.is_awaiting());
        session
            .client_sends(&command(codec::COM_STMT_PREPARE, b"select ?"))
            .await;
        let prepare_ok = [
            vec![0],
            5u32.to_le_bytes().to_vec(),
            vec![0, 0, 1, 0, 0, 0, 0],
        ]
        .concat();
        session
            .target_sends(&[prepare_ok, column("?", codec::TYPE_VAR_STRING)])
            .await;
        let mut long_data = vec![codec::COM_STMT_SEND_LONG_DATA];
        long_data.extend(5u32.to_le_bytes());
        long_data.extend(0u16.to_le_bytes());
        long_data.extend(b"discarded by the reset");
        assert!(matches!(
            session.client_sends(&long_data).await,
            ClientStep::ForwardQuietly
        ));
        let reset = command(codec::COM_STMT_RESET, &5u32.to_le_bytes());
        assert!(matches!(
            session.client_sends(&reset).await,
            ClientStep::Forward
        ));
        session.target_sends(&[codec::ok_packet(0, 0, 0, 0)]).await;
        let close = command(codec::COM_STMT_CLOSE, &5u32.to_le_bytes());
        assert!(matches!(
            session.client_sends(&close).await,
            ClientStep::ForwardQuietly
        ));
        let mut execute = vec![codec::COM_STMT_EXECUTE];
        execute.extend(5u32.to_le_bytes());
        execute.extend([0, 1, 0, 0, 0, 1, 0]);
        let ClientStep::Answer(answer) = session.client_sends(&execute).await else {
            panic!("a closed statement is unknown");
        };
        assert_eq!(codec::parse_err(&answer).unwrap().code, 1243);
        let events = session.events().await;
        assert!(
            !serde_json::to_string(&events)
                .unwrap()
                .contains("discarded"),
            "long data reset before any execution is never recorded"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_denied_statement_is_answered_by_proctor_and_never_forwarded() {
        let mut session = Scripted::start("").await;
        let step = session
            .client_sends(&command(codec::COM_QUERY, b"drop table accounts"))
            .await;
        let ClientStep::Answer(answer) = step else {
            panic!("refused by Proctor itself");
        };
        let error = codec::parse_err(&answer).unwrap();
        assert_eq!((error.code, error.sqlstate.as_str()), (1227, "42000"));
        assert!(error.message.contains("no-drop"), "{}", error.message);
        assert!(!session.exchange.is_awaiting());
        let events = session.events().await;
        assert_eq!(of_kind(&events, "policy.decision")[0]["action"], "deny");
        assert!(of_kind(&events, "db.query").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_infile_is_sampled_masked_even_when_a_secret_spans_packets() {
        let mut session = Scripted::start("").await;
        session
            .client_sends(&command(
                codec::COM_QUERY,
                b"LOAD DATA LOCAL INFILE 'keys.csv' INTO TABLE t",
            ))
            .await;
        session
            .target_sends(&[[vec![0xFB], b"keys.csv".to_vec()].concat()])
            .await;
        assert!(session.exchange.takes_client_data());
        let (first, second) = SECRET.split_at(10);
        for packet in [
            format!("1,plain\n2,{first}"),
            format!("{second}\n"),
            String::new(),
        ] {
            let step = session.client_sends(packet.as_bytes()).await;
            assert!(matches!(step, ClientStep::ForwardQuietly));
        }
        assert!(!session.exchange.takes_client_data());
        session.target_sends(&[codec::ok_packet(2, 0, 0, 0)]).await;
        let events = session.events().await;
        let result = of_kind(&events, "db.result")[0];
        assert_eq!(result["rows"], 2);
        assert_eq!(result["sample"][0], "1,plain");
        assert!(result["sample"][1].as_str().unwrap().contains("[MASKED:"));
        let everything = serde_json::to_string(&events).unwrap();
        assert!(!everything.contains(SECRET) && !everything.contains(second));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_client_masking_a_row_holding_a_secret_reaches_the_client_masked() {
        let mut session = Scripted::start("mask_results = \"client_and_journal\"").await;
        session
            .client_sends(&command(codec::COM_QUERY, b"select token from t"))
            .await;
        let replaced = session
            .target_sends(&[
                vec![1],
                column("token", codec::TYPE_VAR_STRING),
                codec::encode_text_row(&[Some(SECRET.as_bytes())]),
                codec::encode_text_row(&[Some(b"nothing here")]),
                end_of_rows(0),
            ])
            .await;
        let masked = replaced[2].as_ref().expect("the row is rewritten");
        let cells = codec::text_row(masked, 1).unwrap();
        let shown = String::from_utf8_lossy(cells[0].unwrap());
        assert!(shown.starts_with("[MASKED:"), "{shown}");
        assert!(replaced[3].is_none(), "a clean row goes as it came");
        let events = session.events().await;
        assert_eq!(
            of_kind(&events, "db.result")[0]["client_masked"]["cells"],
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_ends_the_answer_and_is_recorded_for_its_query() {
        let mut session = Scripted::start("").await;
        session
            .client_sends(&command(codec::COM_QUERY, b"select * from missing"))
            .await;
        session
            .target_sends(&[codec::err_packet(
                1146,
                "42S02",
                "Table 'app.missing' doesn't exist",
            )])
            .await;
        assert!(!session.exchange.is_awaiting());
        let events = session.events().await;
        let error = of_kind(&events, "db.error")[0];
        assert_eq!(error["code"], 1146);
        assert_eq!(error["sqlstate"], "42S02");
        assert_eq!(error["query"], 1, "the query, the session's first event");
    }

    #[test]
    fn use_statements_name_their_database() {
        assert_eq!(use_target("USE test").as_deref(), Some("test"));
        assert_eq!(use_target("use `my``db`;").as_deref(), Some("my`db"));
        assert_eq!(use_target("SELECT 1"), None);
        assert_eq!(use_target("useful"), None);
    }
}
