//! The two provider wire formats: what a request asks (model, messages, tools, streaming), what a
//! response said, assembled from one JSON body or from its stream of events, and the normal form of a
//! message that recognises a conversation when the client sends it back.
//!
//! OpenAI chat completions: `choices[].delta` carries `content`, `reasoning_content` and `tool_calls`
//! fragments keyed by `index`; a final chunk may carry only `usage`; `[DONE]` ends it. Anthropic
//! messages: `message_start`, `content_block_start/delta/stop` (text, `input_json_delta` of a
//! `tool_use`, `thinking_delta` and `signature_delta`), `message_delta` (stop reason, usage),
//! `message_stop`, and `error`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::sse::SseEvent;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
}

/// What one request asks.
pub struct Turn {
    pub model: String,
    pub stream: bool,
    /// The whole conversation as sent, in order (Anthropic's `system` first, as a system message).
    pub messages: Vec<Value>,
    pub tools: Vec<String>,
}

impl Turn {
    pub fn read(kind: Kind, body: &Value) -> Result<Turn, String> {
        let model = body["model"]
            .as_str()
            .ok_or("the request has no \"model\"")?
            .to_owned();
        let mut messages = Vec::new();
        if kind == Kind::Anthropic && !body["system"].is_null() {
            messages.push(json!({"role": "system", "content": body["system"]}));
        }
        let listed = body["messages"]
            .as_array()
            .ok_or("the request has no \"messages\" list")?;
        messages.extend(listed.iter().cloned());
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
    /// Events or chunks seen.
    pub events: u64,
    pub finished: bool,
}

/// OpenAI streams text and reasoning without block indexes: they get fixed keys before tool calls.
const OPENAI_REASONING: u64 = 0;
const OPENAI_TEXT: u64 = 1;
const OPENAI_TOOLS: u64 = 2;

impl Answer {
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
    pub fn on_event(&mut self, kind: Kind, event: &SseEvent) {
        self.events += 1;
        if event.data == "[DONE]" {
            self.finished = true;
            return;
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        match kind {
            Kind::OpenAi => self.on_openai_chunk(&data),
            Kind::Anthropic => self.on_anthropic_event(event.event.as_deref(), &data),
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
                let index = fragment["index"].as_u64().unwrap_or(0);
                let call = self.tool_at(OPENAI_TOOLS + index);
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
                    let merged = self.usage.get_or_insert_with(|| json!({}));
                    for (k, v) in usage {
                        merged[k] = v.clone();
                    }
                }
            }
            "message_stop" => self.finished = true,
            "error" => self.error = Some(data["error"].clone()),
            _ => {}
        }
    }

    /// A whole (non-streamed) response body.
    pub fn from_body(kind: Kind, body: &Value) -> Answer {
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
        match kind {
            Kind::OpenAi => {
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
            Kind::Anthropic => {
                for (i, block) in body["content"].as_array().into_iter().flatten().enumerate() {
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

    /// The answer as the client will send it back, in normal form (see [`normal_form`]).
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

/// Tool arguments compare as JSON values when they are JSON, else as text.
fn arguments_form(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// A message in the form that recognises it when a client sends it again: its role and its parts
/// (text, thinking, tool calls and results), whatever the wire spelling (a string or a list of blocks,
/// with or without signatures).
pub fn normal_form(message: &Value) -> Value {
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
            answer.on_event(Kind::OpenAi, &sse(None, chunk));
        }
        answer.on_event(
            Kind::OpenAi,
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
            answer.on_event(Kind::Anthropic, &sse(Some(name), data));
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
        failed.on_event(Kind::Anthropic, &sse(Some("error"), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
        assert_eq!(failed.error.unwrap()["type"], "overloaded_error");
    }
}
