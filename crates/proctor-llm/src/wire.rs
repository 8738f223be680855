//! The two provider wire formats: what a request asks (model, messages, tools, streaming), what a
//! response said, assembled from one JSON body or from its stream of events, and the normal form of a
//! message that recognises a conversation when the client sends it back.
//!
//! OpenAI chat completions: `choices[].delta` carries `content`, `reasoning_content` and `tool_calls`
//! fragments keyed by `index`; a final chunk may carry only `usage`; `[DONE]` ends it. Anthropic
//! messages: `message_start`, `content_block_start/delta/stop` (text, `input_json_delta` of a
//! `tool_use`, `thinking_delta` and `signature_delta`), `message_delta` (stop reason, usage),
//! `message_stop`, and `error`. OpenAI responses: `response.output_item.added/done`, text,
//! function-call argument and reasoning-summary deltas keyed by `output_index`, `response.completed`
//! (usage) or `response.failed`, and `error`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::sse::SseEvent;

/// Which kind of provider: how it takes its key and words its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
}

/// The three request formats: which endpoint, and which kind of provider serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenAI `/v1/chat/completions`.
    Chat,
    /// OpenAI `/v1/responses`.
    Responses,
    /// Anthropic `/v1/messages`.
    Messages,
}

impl Format {
    pub fn kind(self) -> Kind {
        match self {
            Format::Chat | Format::Responses => Kind::OpenAi,
            Format::Messages => Kind::Anthropic,
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Format::Chat => "/v1/chat/completions",
            Format::Responses => "/v1/responses",
            Format::Messages => "/v1/messages",
        }
    }
}

/// What one request asks.
pub struct Turn {
    pub model: String,
    pub stream: bool,
    /// The whole conversation as sent, in order (Anthropic's `system` first, as a system message).
    pub messages: Vec<Value>,
    pub tools: Vec<String>,
    /// Responses API: the answer this request continues.
    pub previous_response: Option<String>,
}

impl Turn {
    pub fn read(format: Format, body: &Value) -> Result<Turn, String> {
        let model = body["model"]
            .as_str()
            .ok_or("the request has no \"model\"")?
            .to_owned();
        let mut messages = Vec::new();
        match format {
            Format::Messages | Format::Chat => {
                if format == Format::Messages && !body["system"].is_null() {
                    messages.push(json!({"role": "system", "content": body["system"]}));
                }
                let listed = body["messages"]
                    .as_array()
                    .ok_or("the request has no \"messages\" list")?;
                messages.extend(listed.iter().cloned());
            }
            Format::Responses => {
                if let Some(instructions) = body["instructions"].as_str() {
                    messages.push(json!({"role": "system", "content": instructions}));
                }
                match &body["input"] {
                    Value::String(text) => messages.push(json!({"role": "user", "content": text})),
                    Value::Array(items) => messages.extend(items.iter().cloned()),
                    _ => return Err("the request has no \"input\"".into()),
                }
            }
        }
        let tools = body["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| {
                        t["function"]["name"]
                            .as_str()
                            .or(t["name"].as_str())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Turn {
            model,
            stream: body["stream"].as_bool().unwrap_or(false),
            messages,
            tools,
            previous_response: body["previous_response_id"].as_str().map(str::to_owned),
        })
    }
}

/// A tool call the model proposed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// A block of the answer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    Text(String),
    /// Reasoning or thinking, with the provider's signature when it signs it.
    Thinking {
        text: String,
        signature: Option<String>,
    },
    Tool(ToolCall),
}

/// What the model answered, assembled.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub blocks: BTreeMap<u64, Block>,
    pub stop_reason: Option<String>,
    pub usage: Option<Value>,
    pub error: Option<Value>,
    pub model: Option<String>,
    /// The provider's id of this answer (Responses API: what `previous_response_id` names).
    pub response_id: Option<String>,
    /// Events or chunks seen.
    pub events: u64,
    pub finished: bool,
    /// The stream outgrew what is assembled for the record ([`MAX_ASSEMBLED_BYTES`],
    /// [`MAX_BLOCKS`]); what came after is not in the answer (the client got all of it).
    pub truncated: bool,
    assembled_bytes: usize,
}

/// Event data assembled into one answer, at most.
pub const MAX_ASSEMBLED_BYTES: usize = 16 * 1024 * 1024;
/// Blocks (text, thinking, tool calls) of one answer, at most.
pub const MAX_BLOCKS: usize = 256;

/// OpenAI streams text and reasoning without block indexes: they get fixed keys before tool calls.
const OPENAI_REASONING: u64 = 0;
const OPENAI_TEXT: u64 = 1;
const OPENAI_TOOLS: u64 = 2;

impl Answer {
    /// An answer that is only an error (the provider's body could not be read as one).
    pub fn failed(error: Value) -> Answer {
        Answer {
            error: Some(error),
            ..Answer::default()
        }
    }

    fn text_at(&mut self, index: u64) -> &mut String {
        let block = self
            .blocks
            .entry(index)
            .or_insert_with(|| Block::Text(String::new()));
        match block {
            Block::Text(text) | Block::Thinking { text, .. } => text,
            Block::Tool(call) => &mut call.arguments,
        }
    }

    fn tool_at(&mut self, index: u64) -> &mut ToolCall {
        let block = self
            .blocks
            .entry(index)
            .or_insert_with(|| Block::Tool(ToolCall::default()));
        if !matches!(block, Block::Tool(_)) {
            *block = Block::Tool(ToolCall::default());
        }
        match block {
            Block::Tool(call) => call,
            _ => unreachable!("just made a tool block"),
        }
    }

    /// One event of a stream.
    pub fn on_event(&mut self, format: Format, event: &SseEvent) {
        self.events += 1;
        if event.data == "[DONE]" {
            self.finished = true;
            return;
        }
        self.assembled_bytes = self.assembled_bytes.saturating_add(event.data.len());
        if self.truncated
            || self.assembled_bytes > MAX_ASSEMBLED_BYTES
            || self.blocks.len() >= MAX_BLOCKS
        {
            self.truncated = true;
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        match format {
            Format::Chat => self.on_openai_chunk(&data),
            Format::Responses => self.on_responses_event(event.event.as_deref(), &data),
            Format::Messages => self.on_anthropic_event(event.event.as_deref(), &data),
        }
    }

    fn on_responses_event(&mut self, name: Option<&str>, data: &Value) {
        let name = data["type"].as_str().or(name).unwrap_or_default();
        let index = data["output_index"].as_u64().unwrap_or(0);
        match name {
            "response.created" | "response.in_progress" => {
                self.response_id = data["response"]["id"].as_str().map(str::to_owned);
                self.model = data["response"]["model"].as_str().map(str::to_owned);
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = &data["item"];
                let block = response_item(item);
                let keep_text =
                    name == "response.output_item.done" || !self.blocks.contains_key(&index);
                if let Some(block) = block.filter(|_| keep_text) {
                    self.blocks.insert(index, block);
                }
            }
            "response.output_text.delta" | "response.reasoning_summary_text.delta" => {
                if name.starts_with("response.reasoning") && !self.blocks.contains_key(&index) {
                    self.blocks.insert(
                        index,
                        Block::Thinking {
                            text: String::new(),
                            signature: None,
                        },
                    );
                }
                self.text_at(index)
                    .push_str(data["delta"].as_str().unwrap_or_default());
            }
            "response.function_call_arguments.delta" => self
                .tool_at(index)
                .arguments
                .push_str(data["delta"].as_str().unwrap_or_default()),
            "response.completed" | "response.incomplete" => {
                let response = &data["response"];
                self.usage = (!response["usage"].is_null()).then(|| response["usage"].clone());
                self.stop_reason = response["status"].as_str().map(str::to_owned);
                self.response_id = response["id"]
                    .as_str()
                    .map(str::to_owned)
                    .or(self.response_id.take());
                self.finished = true;
            }
            "response.failed" => {
                self.error = Some(data["response"]["error"].clone());
                self.finished = true;
            }
            "error" => self.error = Some(data.clone()),
            _ => {}
        }
    }

    fn on_openai_chunk(&mut self, chunk: &Value) {
        if !chunk["error"].is_null() {
            self.error = Some(chunk["error"].clone());
            return;
        }
        if let Some(model) = chunk["model"].as_str() {
            self.model = Some(model.to_owned());
        }
        if !chunk["usage"].is_null() {
            self.usage = Some(chunk["usage"].clone());
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            if let Some(text) = delta["reasoning_content"]
                .as_str()
                .or(delta["reasoning"].as_str())
            {
                self.blocks
                    .entry(OPENAI_REASONING)
                    .or_insert_with(|| Block::Thinking {
                        text: String::new(),
                        signature: None,
                    });
                self.text_at(OPENAI_REASONING).push_str(text);
            }
            if let Some(text) = delta["content"].as_str() {
                self.text_at(OPENAI_TEXT).push_str(text);
            }
            for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
                // The index is the provider's: any u64, and one chunk may open many calls.
                let key = OPENAI_TOOLS.saturating_add(fragment["index"].as_u64().unwrap_or(0));
                if self.blocks.len() >= MAX_BLOCKS && !self.blocks.contains_key(&key) {
                    self.truncated = true;
                    break;
                }
                let call = self.tool_at(key);
                if let Some(id) = fragment["id"].as_str() {
                    call.id = id.to_owned();
                }
                if let Some(name) = fragment["function"]["name"].as_str() {
                    call.name.push_str(name);
                }
                if let Some(arguments) = fragment["function"]["arguments"].as_str() {
                    call.arguments.push_str(arguments);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.stop_reason = Some(reason.to_owned());
            }
        }
    }

    fn on_anthropic_event(&mut self, name: Option<&str>, data: &Value) {
        let name = name.or(data["type"].as_str()).unwrap_or_default();
        let index = data["index"].as_u64().unwrap_or(0);
        match name {
            "message_start" => {
                self.model = data["message"]["model"].as_str().map(str::to_owned);
                self.usage = Some(data["message"]["usage"].clone());
            }
            "content_block_start" => {
                let block = &data["content_block"];
                let started = match block["type"].as_str() {
                    Some("tool_use") => Block::Tool(ToolCall {
                        id: block["id"].as_str().unwrap_or_default().to_owned(),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                        arguments: String::new(),
                    }),
                    Some("thinking") | Some("redacted_thinking") => Block::Thinking {
                        text: block["thinking"].as_str().unwrap_or_default().to_owned(),
                        signature: None,
                    },
                    _ => Block::Text(block["text"].as_str().unwrap_or_default().to_owned()),
                };
                self.blocks.insert(index, started);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => self
                        .text_at(index)
                        .push_str(delta["text"].as_str().unwrap_or_default()),
                    Some("thinking_delta") => self
                        .text_at(index)
                        .push_str(delta["thinking"].as_str().unwrap_or_default()),
                    Some("input_json_delta") => self
                        .tool_at(index)
                        .arguments
                        .push_str(delta["partial_json"].as_str().unwrap_or_default()),
                    Some("signature_delta") => {
                        if let Some(Block::Thinking { signature, .. }) = self.blocks.get_mut(&index)
                        {
                            signature
                                .get_or_insert_with(String::new)
                                .push_str(delta["signature"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = data["usage"].as_object() {
                    // What message_start said may be anything; the delta's usage is an object.
                    if !matches!(self.usage, Some(Value::Object(_))) {
                        self.usage = Some(json!({}));
                    }
                    if let Some(Value::Object(merged)) = &mut self.usage {
                        merged.extend(usage.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
            }
            "message_stop" => self.finished = true,
            "error" => self.error = Some(data["error"].clone()),
            _ => {}
        }
    }

    /// A whole (non-streamed) response body.
    pub fn from_body(format: Format, body: &Value) -> Answer {
        let mut answer = Answer {
            finished: true,
            ..Answer::default()
        };
        if !body["error"].is_null() {
            answer.error = Some(body["error"].clone());
            return answer;
        }
        answer.model = body["model"].as_str().map(str::to_owned);
        answer.usage = (!body["usage"].is_null()).then(|| body["usage"].clone());
        match format {
            Format::Responses => {
                answer.response_id = body["id"].as_str().map(str::to_owned);
                for (i, item) in body["output"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(MAX_BLOCKS)
                    .enumerate()
                {
                    if let Some(block) = response_item(item) {
                        answer.blocks.insert(i as u64, block);
                    }
                }
                answer.stop_reason = body["status"].as_str().map(str::to_owned);
            }
            Format::Chat => {
                let choice = &body["choices"][0];
                let message = &choice["message"];
                if let Some(text) = message["reasoning_content"].as_str() {
                    answer.blocks.insert(
                        OPENAI_REASONING,
                        Block::Thinking {
                            text: text.to_owned(),
                            signature: None,
                        },
                    );
                }
                if let Some(text) = message["content"].as_str() {
                    answer
                        .blocks
                        .insert(OPENAI_TEXT, Block::Text(text.to_owned()));
                }
                for (i, call) in message["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(MAX_BLOCKS)
                    .enumerate()
                {
                    answer.blocks.insert(
                        OPENAI_TOOLS + i as u64,
                        Block::Tool(ToolCall {
                            id: call["id"].as_str().unwrap_or_default().to_owned(),
                            name: call["function"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            arguments: call["function"]["arguments"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        }),
                    );
                }
                answer.stop_reason = choice["finish_reason"].as_str().map(str::to_owned);
            }
            Format::Messages => {
                for (i, block) in body["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(MAX_BLOCKS)
                    .enumerate()
                {
                    let parsed = match block["type"].as_str() {
                        Some("tool_use") => Block::Tool(ToolCall {
                            id: block["id"].as_str().unwrap_or_default().to_owned(),
                            name: block["name"].as_str().unwrap_or_default().to_owned(),
                            arguments: block["input"].to_string(),
                        }),
                        Some("thinking") => Block::Thinking {
                            text: block["thinking"].as_str().unwrap_or_default().to_owned(),
                            signature: block["signature"].as_str().map(str::to_owned),
                        },
                        _ => Block::Text(block["text"].as_str().unwrap_or_default().to_owned()),
                    };
                    answer.blocks.insert(i as u64, parsed);
                }
                answer.stop_reason = body["stop_reason"].as_str().map(str::to_owned);
            }
        }
        answer
    }

    pub fn text(&self) -> String {
        self.blocks
            .values()
            .filter_map(|b| match b {
                Block::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn tool_calls(&self) -> Vec<&ToolCall> {
        self.blocks
            .values()
            .filter_map(|b| match b {
                Block::Tool(call) => Some(call),
                _ => None,
            })
            .collect()
    }

    /// The answer as the client will send it back, in normal form (see [`normal_form`]): one message,
    /// or for the Responses API one item per output item.
    pub fn as_messages(&self, format: Format) -> Vec<Value> {
        if format != Format::Responses {
            return vec![self.as_message()];
        }
        self.blocks
            .values()
            .map(|block| {
                let single = Answer {
                    blocks: BTreeMap::from([(0, block.clone())]),
                    ..Answer::default()
                };
                single.as_message()
            })
            .collect()
    }

    /// The answer as one assistant message in normal form.
    pub fn as_message(&self) -> Value {
        let parts: Vec<Value> = self
            .blocks
            .values()
            .filter_map(|block| match block {
                Block::Text(text) if text.is_empty() => None,
                Block::Text(text) => Some(json!(["text", text])),
                Block::Thinking { text, .. } => Some(json!(["thinking", text])),
                Block::Tool(call) => Some(json!([
                    "tool",
                    call.id,
                    call.name,
                    arguments_form(&call.arguments)
                ])),
            })
            .collect();
        json!({"role": "assistant", "parts": parts})
    }
}

/// Visits, in place, the texts a client wrote in a request: the system prompt or instructions, and the
/// text of user and tool messages (a string input included). Assistant messages and every block a
/// provider signs (thinking, tool use, function calls, reasoning) are left out. This is what is masked
/// before a request leaves. Any JSON is taken: what is not laid out as the format says is skipped and
/// left as it is, and nothing is added to the request.
pub fn client_texts(format: Format, request: &mut Value, mut visit: impl FnMut(&mut String)) {
    let mut text = |value: Option<&mut Value>| {
        if let Some(Value::String(text)) = value {
            visit(text);
        }
    };
    match format {
        Format::Messages => match request.get_mut("system") {
            Some(Value::Array(blocks)) => blocks.iter_mut().for_each(|b| text(b.get_mut("text"))),
            system => text(system),
        },
        Format::Responses => {
            text(request.get_mut("instructions"));
            text(request.get_mut("input"));
        }
        Format::Chat => {}
    }
    let listed = if format == Format::Responses {
        "input"
    } else {
        "messages"
    };
    let Some(Value::Array(messages)) = request.get_mut(listed) else {
        return;
    };
    for message in messages {
        match message.get("type").and_then(Value::as_str) {
            Some("function_call_output") => {
                text(message.get_mut("output"));
                continue;
            }
            Some("function_call") | Some("reasoning") => continue,
            _ => {}
        }
        if message.get("role").and_then(Value::as_str) == Some("assistant") {
            continue;
        }
        match message.get_mut("content") {
            Some(Value::Array(blocks)) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") | Some("input_text") => text(block.get_mut("text")),
                        Some("tool_result") => match block.get_mut("content") {
                            Some(Value::Array(inner)) => {
                                inner.iter_mut().for_each(|b| text(b.get_mut("text")))
                            }
                            content => text(content),
                        },
                        _ => {}
                    }
                }
            }
            content => text(content),
        }
    }
}

/// A Responses API output item as a block.
fn response_item(item: &Value) -> Option<Block> {
    match item["type"].as_str()? {
        "message" => Some(Block::Text(
            item["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["text"].as_str())
                .collect(),
        )),
        "function_call" => Some(Block::Tool(ToolCall {
            id: item["call_id"].as_str().unwrap_or_default().to_owned(),
            name: item["name"].as_str().unwrap_or_default().to_owned(),
            arguments: item["arguments"].as_str().unwrap_or_default().to_owned(),
        })),
        "reasoning" => Some(Block::Thinking {
            text: item["summary"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["text"].as_str())
                .collect(),
            signature: item["encrypted_content"].as_str().map(str::to_owned),
        }),
        _ => None,
    }
}

/// Tool arguments compare as JSON values when they are JSON, else as text.
fn arguments_form(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// A message in the form that recognises it when a client sends it again: its role and its parts
/// (text, thinking, tool calls and results), whatever the wire spelling (a string or a list of blocks,
/// with or without signatures).
pub fn normal_form(message: &Value) -> Value {
    match message["type"].as_str() {
        Some("function_call") => {
            let arguments = message["arguments"].as_str().unwrap_or_default();
            return json!({"role": "assistant", "parts": [["tool", message["call_id"], message["name"], arguments_form(arguments)]]});
        }
        Some("function_call_output") => {
            return json!({"role": "tool", "parts": [["result", message["call_id"]], ["text", message["output"]]]});
        }
        Some("reasoning") => {
            let text: String = message["summary"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["text"].as_str())
                .collect();
            return json!({"role": "assistant", "parts": [["thinking", text]]});
        }
        _ => {}
    }
    let role = message["role"].as_str().unwrap_or_default();
    let mut parts = Vec::new();
    let push_content = |content: &Value, parts: &mut Vec<Value>| match content {
        Value::String(text) if !text.is_empty() => parts.push(json!(["text", text])),
        Value::Array(blocks) => {
            for block in blocks {
                match block["type"].as_str() {
                    Some("text") | Some("input_text") | Some("output_text") => {
                        parts.push(json!(["text", block["text"]]))
                    }
                    Some("thinking") => parts.push(json!(["thinking", block["thinking"]])),
                    Some("tool_use") => {
                        parts.push(json!(["tool", block["id"], block["name"], block["input"]]))
                    }
                    Some("tool_result") => {
                        parts.push(json!(["result", block["tool_use_id"], block["content"]]))
                    }
                    _ => parts.push(block.clone()),
                }
            }
        }
        _ => {}
    };
    push_content(&message["content"], &mut parts);
    if let Some(text) = message["reasoning_content"].as_str() {
        parts.insert(0, json!(["thinking", text]));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
        parts.push(json!([
            "tool",
            call["id"],
            call["function"]["name"],
            arguments_form(arguments)
        ]));
    }
    if let Some(id) = message["tool_call_id"].as_str() {
        parts.insert(0, json!(["result", id]));
    }
    json!({"role": role, "parts": parts})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(event: Option<&str>, data: Value) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_string(),
        }
    }

    fn client_texts_of(format: Format, request: &mut Value) -> Vec<String> {
        let mut seen = Vec::new();
        client_texts(format, request, |text| {
            seen.push(text.clone());
            text.make_ascii_uppercase();
        });
        seen
    }

    #[test]
    fn client_texts_are_what_the_client_wrote_and_nothing_else() {
        let mut request = json!({"model": "m", "system": [{"type": "text", "text": "sys"}, {"type": "image"}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "answer"},
                         {"role": "user", "content": [{"type": "text", "text": "more"},
                             {"type": "tool_result", "content": [{"type": "text", "text": "out"}]},
                             {"type": "thinking", "thinking": "signed"}]}]});
        assert_eq!(
            client_texts_of(Format::Messages, &mut request),
            ["sys", "hi", "more", "out"]
        );
        assert_eq!(request["messages"][0]["content"], "HI");
        assert_eq!(request["messages"][1]["content"], "answer");
        assert_eq!(
            request["system"][1],
            json!({"type": "image"}),
            "no key added"
        );
        let mut request = json!({"model": "m", "input": [{"type": "function_call_output", "output": "rows"},
                                                          {"type": "function_call", "arguments": "{}"}]});
        assert_eq!(client_texts_of(Format::Responses, &mut request), ["rows"]);
        assert!(request.get("instructions").is_none(), "no key added");
    }

    /// A request that Turn::read accepts, with a message or system block that is
    /// not an object, panicked where the texts were indexed for writing.
    #[test]
    fn client_texts_of_requests_of_any_shape_do_not_panic() {
        for (format, request) in [
            (
                Format::Chat,
                json!({"model": "m", "messages": ["x", 1, null, [2]]}),
            ),
            (
                Format::Messages,
                json!({"model": "m", "system": [1, "a"], "messages": [{"content": [3]}]}),
            ),
            (
                Format::Responses,
                json!({"model": "m", "input": [true, {"content": [[]]}]}),
            ),
            (Format::Chat, json!([1, 2])),
        ] {
            let mut copy = request.clone();
            client_texts_of(format, &mut copy);
            assert_eq!(copy, request, "nothing to visit, nothing changed");
        }
    }

    /// A message_start whose usage was not an object panicked when a message_delta's usage was
    /// merged into it.
    #[test]
    fn anthropic_usage_of_any_shape_is_merged_without_panicking() {
        let mut answer = Answer::default();
        for usage in [json!(7), json!("x"), json!([1])] {
            answer.on_event(
                Format::Messages,
                &sse(Some("message_start"), json!({"message": {"usage": usage}})),
            );
            answer.on_event(
                Format::Messages,
                &sse(
                    Some("message_delta"),
                    json!({"usage": {"output_tokens": 9}}),
                ),
            );
            assert_eq!(answer.usage, Some(json!({"output_tokens": 9})));
        }
    }

    #[test]
    fn openai_parallel_tool_calls_interleaved() {
        let mut answer = Answer::default();
        let chunks = [
            json!({"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me look."}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "query", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "describe", "arguments": "{\"conn"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"sql\": \"select 1\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "ection\": \"db\"}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}),
        ];
        for chunk in chunks {
            answer.on_event(Format::Chat, &sse(None, chunk));
        }
        answer.on_event(
            Format::Chat,
            &SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
        );
        assert_eq!(answer.text(), "Let me look.");
        let calls = answer.tool_calls();
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].arguments, "{\"sql\": \"select 1\"}");
        assert_eq!(calls[1].name, "describe");
        assert_eq!(calls[1].arguments, "{\"connection\": \"db\"}");
        assert_eq!(answer.stop_reason.as_deref(), Some("tool_calls"));
        assert_eq!(answer.usage.as_ref().unwrap()["completion_tokens"], 5);
        assert!(answer.finished);
        let echoed = json!({"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "query", "arguments": "{\"sql\":\"select 1\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "describe", "arguments": "{\"connection\": \"db\"}"}}]});
        assert_eq!(normal_form(&echoed), answer.as_message());
    }

    #[test]
    fn a_stream_beyond_the_bounds_is_not_assembled_further() {
        let mut answer = Answer::default();
        for i in 0..(MAX_BLOCKS as u64 + 10) {
            let fragment = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "id": format!("call_{i}"), "function": {"name": "f", "arguments": "{}"}}]}}]});
            answer.on_event(Format::Chat, &sse(None, fragment));
        }
        assert!(answer.truncated);
        assert_eq!(answer.blocks.len(), MAX_BLOCKS);
    }

    #[test]
    fn tool_call_indexes_from_the_provider_are_bounded() {
        let mut answer = Answer::default();
        let calls: Vec<Value> = (0..MAX_BLOCKS as u64 + 10)
            .map(|i| json!({"index": i, "function": {"name": "f"}}))
            .collect();
        let one_chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]});
        answer.on_event(Format::Chat, &sse(None, one_chunk));
        assert!(answer.truncated);
        assert_eq!(answer.blocks.len(), MAX_BLOCKS);

        let mut answer = Answer::default();
        let huge = json!({"choices": [{"index": 0, "delta": {"content": "text", "tool_calls": [
            {"index": u64::MAX, "id": "call_x", "function": {"name": "f", "arguments": "{}"}}]}}]});
        answer.on_event(Format::Chat, &sse(None, huge));
        assert_eq!(answer.blocks.len(), 2, "the text and the call, apart");
    }

    #[test]
    fn anthropic_thinking_text_and_tool_use() {
        let mut answer = Answer::default();
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 12}}}),
            ),
            (
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "thinking_delta", "thinking": "The user wants"}}),
            ),
            (
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "signature_delta", "signature": "sig=="}}),
            ),
            (
                "content_block_start",
                json!({"index": 1, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"index": 1, "delta": {"type": "text_delta", "text": "Running it."}}),
            ),
            (
                "content_block_start",
                json!({"index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "query", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"sql\": "}}),
            ),
            (
                "content_block_delta",
                json!({"index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"select 1\"}"}}),
            ),
            (
                "message_delta",
                json!({"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
            ),
            ("message_stop", json!({})),
        ];
        for (name, data) in events {
            answer.on_event(Format::Messages, &sse(Some(name), data));
        }
        assert_eq!(
            answer.blocks[&0],
            Block::Thinking {
                text: "The user wants".into(),
                signature: Some("sig==".into())
            }
        );
        assert_eq!(answer.text(), "Running it.");
        assert_eq!(answer.tool_calls()[0].arguments, "{\"sql\": \"select 1\"}");
        assert_eq!(
            answer.usage.as_ref().unwrap(),
            &json!({"input_tokens": 12, "output_tokens": 30})
        );
        let echoed = json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants", "signature": "sig=="},
            {"type": "text", "text": "Running it."},
            {"type": "tool_use", "id": "toolu_1", "name": "query", "input": {"sql": "select 1"}}]});
        assert_eq!(normal_form(&echoed), answer.as_message());
        let mut failed = Answer::default();
        failed.on_event(Format::Messages, &sse(Some("error"), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
        assert_eq!(failed.error.unwrap()["type"], "overloaded_error");
    }
}
