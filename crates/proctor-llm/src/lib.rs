//! Proctor's LLM proxy: OpenAI-compatible `POST /llm/<provider>/v1/chat/completions` and
//! `/v1/responses`, and Anthropic-compatible `POST /llm/<provider>/v1/messages`, on the HTTP listener.
//!
//! Clients use their Proctor token as the API key; Proctor injects the provider's key. Secrets in what
//! the client sends are masked before the request leaves (never inside blocks the provider signs:
//! Anthropic thinking and tool_use blocks echoed back, which are masked in the stored copy only). Each
//! turn is an `llm.request` event holding only the messages its conversation had not sent before, and
//! an `llm.response` event with the answer assembled from the stream, which passes through to the
//! client as it arrives. A conversation is a chain ([`chains`]), recorded as one session.
//!
//! Owns the wire formats ([`wire`], [`sse`]) and the HTTP exchange; identities, masking and the
//! journal are `proctor-core`'s.

pub mod chains;
pub mod sse;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::{Stream, StreamExt};
use proctor_core::config::{allows, LlmConfig, LlmKind};
use proctor_core::journal::CanonicalJson;
use proctor_core::{Gate, Identity, Masker, Secret};
use serde_json::{json, Value};
use tokio::sync::OwnedMutexGuard;

use crate::chains::{Chain, Chains, Placed, Placing};
use crate::sse::SseReader;
use crate::wire::{Answer, Block, Format, Kind, Turn};

/// Largest non-streamed response body kept whole for the record (all of it reaches the client).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Bounds of one SSE line and one event, for the assembler only (the bytes pass through anyway).
const MAX_SSE_LINE: usize = 4 * 1024 * 1024;
const MAX_SSE_EVENT: usize = 8 * 1024 * 1024;
/// Requests up to this size are masked on the event loop: that takes microseconds, less than a
/// hand-off to a blocking thread and back, which sits on every turn's time to first byte. Larger ones
/// (masking megabytes takes milliseconds) are masked on a blocking thread, so that the HTTP runtime
/// goes on serving other requests meanwhile.
const MASK_INLINE_BYTES: usize = 64 * 1024;
/// The header that names a conversation explicitly.
pub const CHAIN_HEADER: &str = "x-proctor-chain";

struct Provider {
    name: String,
    kind: Kind,
    base_url: String,
    key: Option<Secret>,
    /// Who may use it (and spend its key), as `llm.provider.allow` lists them.
    allow: Vec<String>,
}

/// The proxy's state, shared by every request.
pub struct LlmProxy {
    gate: Arc<Gate>,
    providers: HashMap<String, Provider>,
    client: reqwest::Client,
    chains: Chains,
    mask_prompts: bool,
    max_request_bytes: usize,
}

/// An error in the format of the provider the client speaks to.
fn refusal(kind: Kind, status: StatusCode, kind_name: &str, message: &str) -> Response {
    let body = match kind {
        Kind::OpenAi => {
            json!({"error": {"message": message, "type": kind_name, "code": Value::Null}})
        }
        Kind::Anthropic => {
            json!({"type": "error", "error": {"type": kind_name, "message": message}})
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The client's token: `Authorization: Bearer` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs).
fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Request headers passed on to the provider: the client's credentials, hop-by-hop headers and the
/// body's framing are not.
fn forwarded(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "authorization"
            | "x-api-key"
            | "host"
            | "content-length"
            | "connection"
            | "transfer-encoding"
            | "accept-encoding"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-authorization"
            | CHAIN_HEADER
    )
}

impl LlmProxy {
    pub fn new(
        gate: Arc<Gate>,
        config: &LlmConfig,
        keys: Vec<(String, Option<Secret>)>,
    ) -> Arc<Self> {
        let keys: HashMap<String, Option<Secret>> = keys.into_iter().collect();
        let providers = config
            .provider
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Provider {
                        name: p.name.clone(),
                        kind: match p.kind {
                            LlmKind::OpenAi => Kind::OpenAi,
                            LlmKind::Anthropic => Kind::Anthropic,
                        },
                        base_url: p.base_url.trim_end_matches('/').to_owned(),
                        key: keys.get(&p.name).cloned().flatten(),
                        allow: p.allow.clone(),
                    },
                )
            })
            .collect();
        Arc::new(Self {
            gate,
            providers,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .build()
                .unwrap_or_default(),
            chains: Chains::default(),
            mask_prompts: config.mask_prompts,
            max_request_bytes: config.max_request_bytes,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/llm/{provider}/v1/chat/completions",
                post(endpoint(Format::Chat)),
            )
            .route(
                "/llm/{provider}/v1/responses",
                post(endpoint(Format::Responses)),
            )
            .route(
                "/llm/{provider}/v1/messages",
                post(endpoint(Format::Messages)),
            )
            // Bodies up to llm.max_request_bytes reach the handler (axum's own default is 2 MB).
            .layer(DefaultBodyLimit::max(
                self.max_request_bytes.saturating_add(1),
            ))
            .with_state(self)
    }

    /// Ends the sessions of conversations idle for `idle`; every one of them with `idle` zero.
    pub async fn close_idle(&self, idle: Duration) {
        for chain in self.chains.take_idle(idle) {
            chains::end(chain, "conversation idle").await;
        }
    }
}

/// A boxed handler future (each endpoint's handler is [`handle`] with its format).
type Handled = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// The handler of one endpoint: every format goes through [`handle`].
fn endpoint(
    format: Format,
) -> impl Fn(State<Arc<LlmProxy>>, Path<String>, ConnectInfo<SocketAddr>, HeaderMap, Bytes) -> Handled
       + Clone
       + Send
       + Sync
       + 'static {
    move |state, path, peer, headers, body| {
        Box::pin(handle(state, path, peer, headers, body, format))
    }
}

async fn handle(
    State(proxy): State<Arc<LlmProxy>>,
    Path(provider_name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
    format: Format,
) -> Response {
    let (speaks, endpoint) = (format.kind(), format.endpoint());
    let Some(provider) = proxy.providers.get(&provider_name) else {
        return refusal(
            speaks,
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("Proctor has no LLM provider named {provider_name:?}"),
        );
    };
    if provider.kind != speaks {
        return refusal(
            speaks,
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("provider {provider_name:?} does not speak {endpoint}"),
        );
    }
    let kind = provider.kind;
    let Some(token) = token(&headers) else {
        proxy
            .gate
            .record_refused_token("llm", &provider.name, &peer.to_string(), None)
            .await;
        return refusal(
            kind,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "use your Proctor token as the API key",
        );
    };
    let identity = match identify(&proxy.gate, token).await {
        Some(identity) => identity,
        None => {
            proxy
                .gate
                .record_refused_token("llm", &provider.name, &peer.to_string(), Some(token))
                .await;
            return refusal(
                kind,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "the API key is not a valid Proctor token",
            );
        }
    };
    if !allows(&provider.allow, &identity.name, &identity.groups) {
        proxy
            .gate
            .record_not_allowed("llm", &identity, &provider.name, &peer.to_string())
            .await;
        return refusal(
            kind,
            StatusCode::FORBIDDEN,
            "permission_error",
            &format!(
                "identity {:?} may not use provider {:?}: ask the Proctor operators to add you \
                 (or one of your groups) to its allow list",
                identity.name, provider.name
            ),
        );
    }
    if body.len() > proxy.max_request_bytes {
        return refusal(
            kind,
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "the request is larger than llm.max_request_bytes",
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return refusal(
                kind,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("the body is not JSON: {e}"),
            )
        }
    };
    let mut turn = match Turn::read(format, &request) {
        Ok(turn) => turn,
        Err(e) => return refusal(kind, StatusCode::BAD_REQUEST, "invalid_request_error", &e),
    };
    let explicit = headers
        .get(CHAIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let placed = proxy
        .chains
        .place(
            &proxy.gate,
            Placing {
                identity: &identity,
                provider: &provider.name,
                client_addr: &peer.to_string(),
                name: explicit.as_deref(),
                previous_answer: turn.previous_response.as_deref(),
                messages: &turn.messages,
            },
        )
        .await;
    let Placed {
        chain,
        seen: known,
        asked,
    } = match placed {
        Ok(placed) => placed,
        Err(e) => {
            return refusal(
                kind,
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                &format!("Proctor cannot record this conversation, so it does not forward it: {e}"),
            )
        }
    };
    let mut guard = chain.lock_owned().await;
    let Some(chain) = guard.as_mut() else {
        return refusal(
            kind,
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "this conversation was just closed; send the request again",
        );
    };
    let new_messages = turn.messages.split_off(known.min(turn.messages.len()));
    // What else the client filled in: the tools it offers, the chain's name, the model's.
    let described = json!({"chain_name": explicit, "model": turn.model, "tools": turn.tools});
    let unmasked = Unmasked {
        format,
        request,
        new_messages,
        described,
    };
    let masker = proxy.gate.masker().clone();
    let mask_prompts = proxy.mask_prompts;
    let masked = if body.len() <= MASK_INLINE_BYTES {
        Some(unmasked.mask(&masker, mask_prompts))
    } else {
        tokio::task::spawn_blocking(move || unmasked.mask(&masker, mask_prompts))
            .await
            .ok()
    };
    let Some(Masked {
        request,
        masked_for_provider,
        new_messages,
        described,
        mut findings,
    }) = masked
    else {
        return refusal(
            kind,
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Proctor could not mask this request, so it was not sent",
        );
    };
    // Whether the provider saw each secret: it did not if it was masked in the outgoing request.
    for finding in &mut findings {
        let before_provider = masked_for_provider
            .iter()
            .any(|m| m["fingerprint"] == finding["fingerprint"]);
        finding["masked_before_provider"] = json!(before_provider);
    }
    let event = json!({
        "chain": chain.id(),
        "chain_name": described["chain_name"],
        "context": known,
        "endpoint": endpoint,
        "masked_before_provider": masked_for_provider.len(),
        "model": described["model"],
        "new_messages": new_messages,
        "provider": provider.name,
        "stream": turn.stream,
        "tools": described["tools"],
    });
    let recorded = chain
        .recorder
        .record_queued_with("llm.request", CanonicalJson::of(&event), findings)
        .await;
    if let Err(e) = recorded.map(|_| ()).and(chain.recorder.commit().await) {
        return refusal(
            kind,
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            &format!("Proctor could not record this request, so it was not sent: {e}"),
        );
    }
    let outgoing = if masked_for_provider.is_empty() {
        body
    } else {
        Bytes::from(request.to_string())
    };
    let mut upstream = proxy
        .client
        .post(format!("{}{endpoint}", provider.base_url))
        .header(header::ACCEPT_ENCODING, "identity")
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in &headers {
        if forwarded(name) && name != header::CONTENT_TYPE {
            upstream = upstream.header(name, value);
        }
    }
    if let Some(key) = &provider.key {
        upstream = match kind {
            Kind::OpenAi => upstream.bearer_auth(key.expose()),
            Kind::Anthropic => upstream.header("x-api-key", key.expose()),
        };
    }
    let started = Instant::now();
    let response = match upstream.body(outgoing).send().await {
        Ok(response) => response,
        Err(e) => {
            let reason = format!("the provider could not be reached: {}", without_url(&e));
            let body = json!({"chain": chain.id(), "error": {"message": reason}, "status": 502});
            let _ = chain
                .recorder
                .record_queued_with("llm.response", CanonicalJson::of(&body), Vec::new())
                .await;
            let _ = chain.recorder.commit().await;
            return refusal(kind, StatusCode::BAD_GATEWAY, "api_error", &reason);
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut client_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "content-type" | "retry-after" | "request-id" | "x-request-id"
        ) || name.as_str().starts_with("anthropic-")
            || name.as_str().starts_with("openai-")
            || name.as_str().starts_with("x-ratelimit-")
        {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                client_headers.insert(name, value);
            }
        }
    }
    if let Ok(id) = HeaderValue::from_str(chain.id()) {
        client_headers.insert(HeaderName::from_static(CHAIN_HEADER), id);
    }
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let relay = Relay {
        chunks: Box::pin(response.bytes_stream()),
        format,
        streamed,
        reader: SseReader::new(MAX_SSE_LINE, MAX_SSE_EVENT),
        answer: Answer::default(),
        outcome: Outcome::default(),
        // A whole (non-streamed) answer is kept for the record up to a bound; the client gets all
        // of it either way, as it arrives.
        whole: (!streamed).then(Vec::new),
        record: Some(Record {
            proxy: proxy.clone(),
            chain: guard,
            context: Context {
                format,
                status,
                started,
                asked,
            },
        }),
    };
    let mut response = Response::new(Body::from_stream(relay));
    *response.status_mut() = status;
    response.headers_mut().extend(client_headers);
    response
}

/// The identity `token` belongs to, or `None` if it is no valid token. The store's read blocks, but
/// briefly, and the request waits for it anyway: it runs on this thread, while `block_in_place` hands
/// the worker's other tasks to another one. A round trip through a blocking thread would add two
/// thread wake-ups to every request's time to first byte.
async fn identify(gate: &Arc<Gate>, token: &str) -> Option<Identity> {
    if matches!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    ) {
        return tokio::task::block_in_place(|| gate.authenticator().identify_token(token)).ok();
    }
    let (gate, token) = (gate.clone(), token.to_owned());
    tokio::task::spawn_blocking(move || gate.authenticator().identify_token(&token))
        .await
        .ok()?
        .ok()
}

/// A reqwest error's text without the URL (which names the provider's address, never a secret, but
/// is noise in the client's error).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "the provider");
    }
    text
}

struct Context {
    format: Format,
    status: StatusCode,
    started: Instant,
    /// The request's prefix hash, for the chain to learn the turn.
    asked: Option<Vec<u8>>,
}

#[derive(Default)]
struct Outcome {
    first_byte: Option<Instant>,
    chunks: u64,
    client_disconnected: bool,
    stream_error: Option<String>,
}

/// The provider's answer on its way to the client. The client connection's task polls it, so each
/// chunk passes straight through, with no hand-off to another task, and feeds the assembler on the
/// way. Once the stream ends or breaks, or the client goes away (the body is dropped), the answer is
/// recorded on a task of its own; the chain stays held until then.
struct Relay {
    chunks: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    format: Format,
    streamed: bool,
    reader: SseReader,
    answer: Answer,
    outcome: Outcome,
    whole: Option<Vec<u8>>,
    /// Taken when the answer is recorded.
    record: Option<Record>,
}

/// What recording the answer needs: the proxy, the held chain and the request's context.
struct Record {
    proxy: Arc<LlmProxy>,
    chain: OwnedMutexGuard<Option<Chain>>,
    context: Context,
}

impl Relay {
    fn on_chunk(&mut self, bytes: &Bytes) {
        self.outcome.first_byte.get_or_insert_with(Instant::now);
        self.outcome.chunks += 1;
        if self.streamed {
            for event in self.reader.feed(bytes) {
                self.answer.on_event(self.format, &event);
            }
        } else if let Some(kept) = self.whole.as_mut() {
            if kept.len() + bytes.len() <= MAX_RESPONSE_BYTES {
                kept.extend_from_slice(bytes);
            } else {
                self.whole = None;
            }
        }
    }

    /// Records the answer as it stands, once.
    fn finish(&mut self) {
        let Some(Record {
            proxy,
            mut chain,
            context,
        }) = self.record.take()
        else {
            return;
        };
        let mut answer = std::mem::take(&mut self.answer);
        if !self.streamed {
            answer = match self
                .whole
                .take()
                .as_deref()
                .map(serde_json::from_slice::<Value>)
            {
                Some(Ok(body)) => Answer::from_body(context.format, &body),
                Some(Err(_)) => {
                    Answer::failed(json!({"message": "the provider's body is not JSON"}))
                }
                None => Answer::failed(
                    json!({"message": format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes; it reached the client but is not kept")}),
                ),
            };
        }
        let outcome = std::mem::take(&mut self.outcome);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("an LLM response could not be recorded: the runtime is gone");
            return;
        };
        runtime.spawn(async move {
            if let Some(chain) = chain.as_mut() {
                record_answer(&proxy, chain, &context, &answer, outcome).await;
            }
        });
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        if self.record.is_none() {
            return Poll::Ready(None);
        }
        match self.chunks.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                self.on_chunk(&bytes);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                let reason = format!("the provider's stream broke: {}", without_url(&e));
                self.outcome.stream_error = Some(reason.clone());
                self.finish();
                Poll::Ready(Some(Err(std::io::Error::other(reason))))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Relay {
    /// The client went away before the answer ended.
    fn drop(&mut self) {
        if self.record.is_some() {
            self.outcome.client_disconnected = true;
            self.finish();
        }
    }
}

/// Records the answer (masked) and teaches the chain the conversation as the client will resend it.
async fn record_answer(
    proxy: &LlmProxy,
    chain: &mut Chain,
    context: &Context,
    answer: &Answer,
    outcome: Outcome,
) {
    let thinking: Vec<Value> = answer
        .blocks
        .values()
        .filter_map(|b| match b {
            Block::Thinking { text, signature } => {
                Some(json!({"text": text, "signed": signature.is_some()}))
            }
            _ => None,
        })
        .collect();
    let tool_calls: Vec<Value> = answer
        .tool_calls()
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
        .collect();
    let mut body = json!({
        "chain": chain.id(),
        "duration_ms": context.started.elapsed().as_millis() as u64,
        "model": answer.model,
        "status": context.status.as_u16(),
        "stop_reason": answer.stop_reason,
        "text": answer.text(),
        "thinking": thinking,
        "tool_calls": tool_calls,
        "usage": answer.usage,
    });
    if let Some(error) = &answer.error {
        body["error"] = error.clone();
    }
    if let Some(first) = outcome.first_byte {
        body["ttfb_ms"] = json!(first.duration_since(context.started).as_millis() as u64);
        body["chunks"] = json!(outcome.chunks);
        body["events"] = json!(answer.events);
        body["complete"] = json!(answer.finished);
    }
    if answer.truncated {
        body["truncated"] = json!(true);
    }
    if outcome.client_disconnected {
        body["client_disconnected"] = json!(true);
    }
    if let Some(error) = outcome.stream_error {
        body["stream_error"] = json!(error);
    }
    let findings = chain.recorder.mask_value(&mut body, "completion");
    match chain
        .recorder
        .record_queued_with("llm.response", CanonicalJson::of(&body), findings)
        .await
    {
        Ok(seq) => {
            for call in answer.tool_calls() {
                proxy.gate.proposals().remember(
                    &chain.identity().name,
                    chain.id(),
                    seq,
                    &call.id,
                    &call.name,
                    &call.arguments,
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "could not record an LLM response"),
    }
    let _ = chain.recorder.commit().await;
    if context.status.is_success() && answer.error.is_none() {
        proxy.chains.learn(
            chain,
            context.asked.as_deref(),
            &answer.as_messages(context.format),
            answer.response_id.as_deref(),
        );
    }
}

/// A turn as the client sent it: the request (to mask before it leaves), the messages its chain has
/// not seen and what else the client filled in (to mask for the record).
struct Unmasked {
    format: Format,
    request: Value,
    new_messages: Vec<Value>,
    described: Value,
}

/// [`Unmasked`] with its secrets masked: the request as it leaves (and what was masked in it), the
/// new messages as recorded (each with its hash) and the findings for the `llm.request` event.
struct Masked {
    request: Value,
    masked_for_provider: Vec<Value>,
    new_messages: Vec<Value>,
    described: Value,
    findings: Vec<Value>,
}

impl Unmasked {
    fn mask(mut self, masker: &Masker, mask_prompts: bool) -> Masked {
        let masked_for_provider = if mask_prompts {
            mask_for_provider(self.format, &mut self.request, masker)
        } else {
            Vec::new()
        };
        let mut findings = Vec::new();
        for message in &mut self.new_messages {
            let hash = chains::message_hash(message);
            let mut stored = message.take();
            findings.extend(masker.mask_value(&mut stored, "prompt"));
            *message = json!({"hash": hash, "message": stored});
        }
        findings.extend(masker.mask_value(&mut self.described, "request"));
        Masked {
            request: self.request,
            masked_for_provider,
            new_messages: self.new_messages,
            described: self.described,
            findings,
        }
    }
}

/// Masks secrets in what the client wrote ([`wire::client_texts`]), in place, before the request
/// leaves.
fn mask_for_provider(format: Format, request: &mut Value, masker: &Masker) -> Vec<Value> {
    let mut findings = Vec::new();
    wire::client_texts(format, request, |text| {
        let (masked, found) = masker.mask(text, "prompt");
        if !found.is_empty() {
            *text = masked.into_owned();
            findings.extend(found);
        }
    });
    findings
}
