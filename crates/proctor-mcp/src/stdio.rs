//! `proctor mcp stdio`: a bridge for MCP clients that only speak stdio. Each JSON-RPC message read
//! from standard input (one per line) is posted to the gateway's `/mcp` endpoint with the caller's
//! token; each message of the answer (a JSON body, or the events of an SSE stream) is written to
//! standard output, one per line. The session id the server assigns is carried on later posts.
//!
//! It holds no state beyond that id and records nothing itself: the gateway behind `/mcp` does.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Longest message line accepted from the client.
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("standard input or output failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a message from the client is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the gateway at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the gateway at {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The messages of an answer: the body itself, or each `data:` of its SSE events.
fn messages(content_type: &str, body: &str) -> Vec<String> {
    if !content_type.starts_with("text/event-stream") {
        return (!body.trim().is_empty())
            .then(|| body.trim().to_owned())
            .into_iter()
            .collect();
    }
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.trim().is_empty() {
                messages.push(std::mem::take(&mut data));
            }
            data.clear();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    messages
}

/// Runs the bridge until standard input ends.
pub async fn bridge(url: &str, token: &str) -> Result<(), BridgeError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| BridgeError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let mut session: Option<String> = None;
    let mut input = BufReader::new(tokio::io::stdin());
    let mut output = tokio::io::stdout();
    let mut line = String::new();
    loop {
        line.clear();
        // Reads at most one byte past the bound, so a line without an end cannot grow memory.
        if (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await?
            == 0
        {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(BridgeError::TooLong);
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut request = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(line.trim().to_owned());
        if let Some(id) = &session {
            request = request.header("mcp-session-id", id);
        }
        let response = request.send().await.map_err(|e| BridgeError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            session = Some(id.to_owned());
        }
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(BridgeError::Refused {
                url: url.to_owned(),
                status: status.as_u16(),
                body,
            });
        }
        for message in messages(&content_type, &body) {
            output.write_all(message.as_bytes()).await?;
            output.write_all(b"\n").await?;
        }
        output.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_one_message_per_line() {
        assert_eq!(messages("application/json", "{\"id\":1}\n"), ["{\"id\":1}"]);
        assert!(messages("application/json", "").is_empty());
        let stream = "id: 1\nretry: 3000\ndata: \n\nevent: message\ndata: {\"id\":2,\ndata: \"result\":{}}\n\n";
        assert_eq!(
            messages("text/event-stream", stream),
            ["{\"id\":2,\n\"result\":{}}"]
        );
    }
}
