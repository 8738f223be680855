//! Proctor's MCP server: agents reach connections as tools (`list_connections`, `describe`,
//! `query`) over Streamable HTTP at `/mcp`, built on the official `rmcp` SDK, and through
//! [`stdio::bridge`] for clients that speak stdio only.
//!
//! A tool call goes through exactly the gate a person's session goes through: the SQL runs in a
//! PostgreSQL session that Proctor opens in-process for the calling identity
//! ([`proctor_core::LocalSessions`]: the same session code as a network client's, over an in-memory
//! stream), so authorization, guardrails (a held statement answers "pending approval" with its
//! request id, learnt as a typed signal), masking and recording are the same code. The call itself is an `mcp.call` event, recorded before the statement
//! leaves, linked to the model answer that proposed it (same identity, tool and arguments, recent) and
//! to its database session (whose `application_name` names the call and the chain); `mcp.result`
//! records how it ended. This crate owns the tools and that linking; the rest is `proctor-core`'s.

pub mod stdio;

use std::sync::Arc;

use axum::http::request::Parts;
use futures_util::StreamExt;
use proctor_core::journal::CanonicalJson;
use proctor_core::{token_id_of, Gate, Identity, LocalCaller, LocalSessions, SessionSignal};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// Rows of a result returned to the agent; the rest is counted.
const MAX_ROWS: usize = 100;
/// Bytes of one cell returned to the agent.
const MAX_CELL_BYTES: usize = 8 * 1024;
/// The header that names the conversation a call belongs to, when no proposal does.
pub const CHAIN_HEADER: &str = "x-proctor-chain";

#[derive(Clone)]
pub struct ProctorMcp {
    gate: Arc<Gate>,
    /// Proctor's PostgreSQL sessions, opened in-process: tool calls run their SQL in one.
    postgres: Arc<dyn LocalSessions>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DescribeArgs {
    /// A connection name, as list_connections gives it.
    pub connection: String,
    /// A table (optionally schema-qualified); without it, the tables are listed.
    pub table: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct QueryArgs {
    /// A connection name, as list_connections gives it.
    pub connection: String,
    /// One SQL statement (or several, separated by semicolons).
    pub sql: String,
}

/// The authenticated caller of a request, and the id of the token that proved it.
#[derive(Clone)]
struct Caller {
    identity: Identity,
    token_id: Option<String>,
}

fn text(value: Value) -> ContentBlock {
    ContentBlock::text(value.to_string())
}

/// How a statement ended, as the agent and the journal see it.
enum Outcome {
    Rows(Value),
    Refused { sqlstate: String, message: String },
    Pending { request: String },
    Failed(String),
}

impl ProctorMcp {
    pub fn new(gate: Arc<Gate>, postgres: Arc<dyn LocalSessions>) -> Self {
        Self {
            gate,
            postgres,
            tool_router: Self::tool_router(),
        }
    }

    /// Who calls: what [`require_token`] found for the request's bearer token.
    fn caller(parts: &Parts) -> Result<Caller, ErrorData> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ErrorData::invalid_request("send your Proctor token as a bearer token", None)
        })
    }

    /// Records the call, runs its SQL through Proctor's PostgreSQL listener, records the outcome.
    async fn run(
        &self,
        parts: &Parts,
        tool: &str,
        arguments: Value,
        connection: &str,
        sql: &str,
    ) -> Result<CallToolResult, ErrorData> {
        let Caller { identity, token_id } = Self::caller(parts)?;
        let proposal = self.gate.proposals().find(&identity.name, tool, &arguments);
        let chain = proposal.as_ref().map(|p| p.chain.clone()).or_else(|| {
            parts
                .headers
                .get(CHAIN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        let call = uuid::Uuid::now_v7().to_string();
        let application_name = match &chain {
            Some(chain) => format!("proctor-mcp call={call} chain={chain}"),
            None => format!("proctor-mcp call={call}"),
        };
        let client = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("mcp")
            .to_owned();
        let journal_error = |e: proctor_core::RecordError| {
            ErrorData::internal_error(
                format!("Proctor could not record this call, so it did not run it: {e}"),
                None,
            )
        };
        let mut recorder = self
            .gate
            .open_session("mcp", &identity.name, connection, &client)
            .await
            .map_err(journal_error)?;
        recorder
            .record_masked(
                "session.start",
                json!({
                    "identity": identity.name,
                    "groups": identity.groups,
                    "connection": connection,
                    "mcp_session": parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()),
                }),
            )
            .await
            .map_err(journal_error)?;
        let mut call_event = json!({
            "call": call,
            "chain": chain,
            "tool": tool,
            "arguments": arguments,
            "connection": connection,
            "database_session": {"application_name": application_name},
            "proposed_by": proposal.as_ref().map(|p| json!({
                "chain": p.chain, "seq": p.seq, "tool_call_id": p.tool_call_id,
            })),
        });
        let findings = recorder.mask_value(&mut call_event, "tool-call");
        let recorded = recorder
            .record_queued_with("mcp.call", CanonicalJson::of(&call_event), findings)
            .await;
        if let Err(e) = recorded.map(|_| ()).and(recorder.commit().await) {
            let _ = recorder.end("journal failure").await;
            return Err(journal_error(e));
        }
        let outcome = self
            .execute(
                LocalCaller {
                    identity: identity.clone(),
                    method: "mcp".into(),
                    token_id,
                    client_addr: client.clone(),
                    signals: tokio::sync::mpsc::unbounded_channel().0,
                },
                connection,
                sql,
                &application_name,
            )
            .await;
        let (result_event, reply) = match outcome {
            Outcome::Rows(rows) => (
                json!({"call": call, "outcome": "ok", "rows": rows["rows_returned"], "rows_affected": rows["rows_affected"]}),
                CallToolResult::success(vec![text(rows)]),
            ),
            Outcome::Refused { sqlstate, message } => (
                json!({"call": call, "outcome": "refused", "sqlstate": sqlstate, "message": message}),
                CallToolResult::error(vec![text(json!({"error": message, "sqlstate": sqlstate}))]),
            ),
            Outcome::Pending { request } => (
                json!({"call": call, "outcome": "pending_approval", "approval": request}),
                CallToolResult::success(vec![text(json!({
                    "status": "pending approval",
                    "approval": request,
                    "note": "an approver must approve this request; the statement runs once approved",
                }))]),
            ),
            Outcome::Failed(message) => (
                json!({"call": call, "outcome": "failed", "message": message}),
                CallToolResult::error(vec![text(json!({"error": message}))]),
            ),
        };
        let mut result_event = result_event;
        let findings = recorder.mask_value(&mut result_event, "tool-result");
        let _ = recorder
            .record_queued_with("mcp.result", CanonicalJson::of(&result_event), findings)
            .await;
        let _ = recorder.end("call finished").await;
        Ok(reply)
    }

    /// Runs SQL as the caller's identity in a PostgreSQL session that Proctor opens in-process.
    async fn execute(
        &self,
        mut caller: LocalCaller,
        connection: &str,
        sql: &str,
        application_name: &str,
    ) -> Outcome {
        let (signals, mut signalled) = tokio::sync::mpsc::unbounded_channel();
        caller.signals = signals;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&caller.identity.name)
            .dbname(connection)
            .application_name(application_name);
        let stream = self.postgres.clone().open_local(caller);
        let (client, driver) = match config.connect_raw(stream, NoTls).await {
            Ok(connected) => connected,
            Err(e) => return refused_or_failed(&e),
        };
        tokio::spawn(driver);
        let sql = sql.to_owned();
        // The statement runs in a task of its own: if it is held for approval, the agent is told at
        // once, and the statement still runs (and is recorded) if an approver approves it.
        let mut running = tokio::spawn(async move {
            let stream = client.simple_query_raw(&sql).await?;
            futures_util::pin_mut!(stream);
            let mut rows = Rows::default();
            while let Some(message) = stream.next().await {
                rows.add(&message?);
            }
            Ok::<_, tokio_postgres::Error>(rows.into_json())
        });
        tokio::select! {
            finished = &mut running => match finished {
                Ok(Ok(rows)) => Outcome::Rows(rows),
                Ok(Err(e)) => refused_or_failed(&e),
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Some(SessionSignal::Held { request }) = signalled.recv() => Outcome::Pending { request },
        }
    }
}

fn refused_or_failed(e: &tokio_postgres::Error) -> Outcome {
    match e.as_db_error() {
        Some(db) => Outcome::Refused {
            sqlstate: db.code().code().to_owned(),
            message: db.message().to_owned(),
        },
        None => Outcome::Failed(e.to_string()),
    }
}

/// A result as the agent gets it, built as the rows stream by: the first [`MAX_ROWS`] rows (each
/// cell cut at [`MAX_CELL_BYTES`]), the rest only counted, so a large result never sits in memory.
#[derive(Default)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Value>,
    returned: u64,
    affected: u64,
}

impl Rows {
    fn add(&mut self, message: &SimpleQueryMessage) {
        match message {
            SimpleQueryMessage::RowDescription(described) => {
                self.columns = described.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                self.returned += 1;
                if self.rows.len() < MAX_ROWS {
                    let cells = (0..row.len()).map(|i| json!(row.get(i).map(cut))).collect();
                    self.rows.push(Value::Array(cells));
                }
            }
            SimpleQueryMessage::CommandComplete(n) => self.affected += n,
            _ => {}
        }
    }

    fn into_json(self) -> Value {
        json!({
            "columns": self.columns,
            "rows": self.rows,
            "rows_returned": self.returned,
            "rows_affected": self.affected,
            "truncated": self.returned as usize > MAX_ROWS,
        })
    }
}

/// A cell's text, cut at [`MAX_CELL_BYTES`] (on a character boundary).
fn cut(text: &str) -> String {
    if text.len() <= MAX_CELL_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_CELL_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}[... {} bytes cut]", &text[..end], text.len() - end)
}

/// A SQL literal for a name.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `/mcp`: the MCP Streamable HTTP endpoint; requests without a valid bearer token get 401 before
/// they reach the MCP layer.
pub fn router(gate: Arc<Gate>, postgres: Arc<dyn LocalSessions>) -> axum::Router {
    let factory_gate = gate.clone();
    let service: StreamableHttpService<ProctorMcp, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(ProctorMcp::new(factory_gate.clone(), postgres.clone())),
            Default::default(),
            // Any Host: every request carries a bearer token, which a page that rebinds DNS to the
            // gateway cannot know, and a gateway is reached under names the SDK cannot guess.
            StreamableHttpServerConfig::default().disable_allowed_hosts(),
        );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(require_json))
        .layer(axum::middleware::from_fn_with_state(gate, require_token))
}

/// The largest MCP request body accepted: tool calls carry SQL, not data.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A POST whose body is not JSON gets 400 and a JSON-RPC parse error, as JSON-RPC says, before the
/// MCP layer sees it; a body larger than [`MAX_REQUEST_BYTES`] gets 413.
async fn require_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("an MCP request may carry at most {MAX_REQUEST_BYTES} bytes\n"),
        )
            .into_response();
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let error = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32700, "message": format!("Parse error: the body is not JSON: {e}")},
        });
        return (
            axum::http::StatusCode::BAD_REQUEST,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            error.to_string(),
        )
            .into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

async fn require_token(
    axum::extract::State(gate): axum::extract::State<Arc<Gate>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let checking = gate.clone();
    let caller = match token.clone() {
        Some(token) => tokio::task::spawn_blocking(move || {
            let identity = checking.authenticator().identify_token(&token).ok()?;
            Some(Caller {
                identity,
                token_id: token_id_of(&token),
            })
        })
        .await
        .ok()
        .flatten(),
        None => None,
    };
    let Some(caller) = caller else {
        gate.record_refused_token("mcp", "-", "mcp", token.as_deref())
            .await;
        let message = match token {
            Some(_) => "the bearer token is not a valid Proctor token (revoked, mistyped, or of another gateway)\n",
            None => "send your Proctor token as Authorization: Bearer <token>\n",
        };
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            message,
        )
            .into_response();
    };
    // The tools read the caller from here, so the token is checked once per request.
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[tool_router]
impl ProctorMcp {
    #[tool(
        description = "The database connections you may use through Proctor, with their guardrails."
    )]
    async fn list_connections(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let Caller { identity, .. } = Self::caller(&parts)?;
        let connections: Vec<Value> = self
            .gate
            .connections_of(&identity)
            .iter()
            // The tools run SQL through in-process PostgreSQL sessions only.
            .filter(|t| t.config.kind == proctor_core::config::ConnectionKind::Postgres)
            .map(|t| {
                json!({
                    "name": t.config.name,
                    "kind": t.config.kind,
                    "database": t.config.database,
                    "read_only": t.config.read_only,
                    "guardrails": t.config.guardrails,
                })
            })
            .collect();
        Ok(CallToolResult::success(vec![text(
            json!({"connections": connections}),
        )]))
    }

    #[tool(description = "The tables of a connection, or the columns of one table.")]
    async fn describe(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<DescribeArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let arguments =
            serde_json::to_value(json!({"connection": args.connection, "table": args.table}))
                .unwrap_or_default();
        let sql = match &args.table {
            None => "SELECT table_schema, table_name FROM information_schema.tables \
                     WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
                .to_owned(),
            Some(table) => {
                let (schema, name) = table
                    .rsplit_once('.')
                    .map_or((None, table.as_str()), |(s, n)| (Some(s), n));
                let schema_filter = schema
                    .map(|s| format!(" AND table_schema = {}", literal(s)))
                    .unwrap_or_default();
                format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                     WHERE table_name = {}{schema_filter} ORDER BY ordinal_position",
                    literal(name)
                )
            }
        };
        self.run(&parts, "describe", arguments, &args.connection, &sql)
            .await
    }

    #[tool(
        description = "Run SQL on a connection. It goes through Proctor: recorded, masked, and judged by the connection's guardrails (a refused statement returns an error; a held one returns its approval request id)."
    )]
    async fn query(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<QueryArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let arguments = json!({"connection": args.connection, "sql": args.sql});
        self.run(&parts, "query", arguments, &args.connection, &args.sql)
            .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ProctorMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_CELL_BYTES);
        let shown = cut(&long);
        assert!(shown.ends_with(&format!("[... {} bytes cut]", long.len() - MAX_CELL_BYTES)));
        assert!(shown.len() < MAX_CELL_BYTES + 32);
    }
}
