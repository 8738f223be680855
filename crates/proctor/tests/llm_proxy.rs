//! End to end: the official OpenAI and Anthropic Python SDKs talk to Proctor's LLM proxy, which
//! forwards to a local fixture speaking each provider's wire format (streaming included). What the
//! SDKs get, what left Proctor, and what the journal holds are checked.

mod support;

use std::io::Write;

use serde_json::Value;
use support::{of_kind, python, search_secret, stdout, FixtureProvider, Proctor};

const SECRET: &str = "S3cr3tPassw0rd-llm-e2e";
const PROVIDER_KEY: &str = "sk-fixture-provider-key-0001";

fn start() -> (Proctor, FixtureProvider, String) {
    let provider = FixtureProvider::start();
    let config = format!(
        r#"
[[llm.provider]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:{port}"
api_key_env = "FIXTURE_PROVIDER_KEY"
allow = ["group:dev"]

[[llm.provider]]
name = "anthropic"
kind = "anthropic"
base_url = "http://127.0.0.1:{port}"
api_key_env = "FIXTURE_PROVIDER_KEY"
allow = ["group:dev"]
"#,
        port = provider.port
    );
    let proctor = Proctor::start_with_env(&config, &[("FIXTURE_PROVIDER_KEY", PROVIDER_KEY)]);
    let token = proctor.add_identity("alice", &["dev"]);
    (proctor, provider, token)
}

fn sdk(scenario: &str, proctor: &Proctor, token: &str) -> Value {
    python(
        "llm_clients.py",
        &[scenario, &proctor.http_port.to_string(), token, SECRET],
    )
}

/// The events of alice's LLM sessions, once the proxy has closed them (at shutdown).
fn llm_events(proctor: &mut Proctor) -> Vec<Vec<Value>> {
    proctor.stop();
    proctor
        .sessions(&["--identity", "alice"])
        .iter()
        .filter(|s| s["protocol"] == "llm")
        .map(|s| proctor.events(s["id"].as_str().unwrap()))
        .collect()
}

fn requests_to(provider: &FixtureProvider, path: &str) -> Vec<Value> {
    provider
        .received()
        .into_iter()
        .filter(|r| r["path"] == path && !r["body"].is_null())
        .collect()
}

#[test]
fn the_openai_sdk_streams_through_proctor_and_every_turn_is_recorded() {
    let (mut proctor, provider, token) = start();
    let out = sdk("openai", &proctor, &token);

    assert_eq!(out["stream"]["text"], "Hello there");
    assert_eq!(
        out["stream"]["usage"], 27,
        "the usage-only final chunk arrives"
    );
    let last_event_at = provider
        .received()
        .iter()
        .find_map(|r| r["last_event_at"].as_f64())
        .unwrap();
    assert!(
        out["stream"]["first_delta_at"].as_f64().unwrap() < last_event_at,
        "the first token reached the client before the provider sent the last event"
    );
    let update = "UPDATE accounts SET plan = 'pro' WHERE id = 7";
    assert_eq!(out["tools_whole"]["calls"][0][0], "query");
    assert_eq!(out["tools_whole"]["calls"][0][1]["sql"], update);
    assert_eq!(out["tools_stream"][0]["name"], "query");
    assert_eq!(
        serde_json::from_str::<Value>(out["tools_stream"][0]["arguments"].as_str().unwrap())
            .unwrap()["sql"],
        update,
        "interleaved fragments of parallel tool calls reach the SDK whole"
    );
    assert_eq!(out["tools_stream"][1]["name"], "describe");
    assert!(
        out["midstream_error"]
            .as_str()
            .unwrap()
            .contains("server had an error"),
        "{out}"
    );
    assert_eq!(out["ratelimit"]["status"], 429);
    assert_eq!(out["unauthenticated"], 401);

    let sent = requests_to(&provider, "/v1/chat/completions");
    assert!(!sent.is_empty());
    for request in &sent {
        assert_eq!(
            request["headers"]["authorization"],
            format!("Bearer {PROVIDER_KEY}")
        );
        let text = request.to_string();
        assert!(
            !text.contains(SECRET),
            "the provider received the password: {text}"
        );
        assert!(
            !text.contains(&token),
            "the provider received the Proctor token"
        );
    }
    assert!(sent[0]["body"]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("postgres://admin:[MASKED:"));

    let chain_id = out["tools_whole"]["chain"].as_str().unwrap().to_owned();
    let sessions = llm_events(&mut proctor);
    let conversation = sessions
        .iter()
        .find(|events| events[0]["session_id"] == chain_id.as_str())
        .expect("the conversation's session");
    let requests = of_kind(conversation, "llm.request");
    let context: Vec<u64> = requests
        .iter()
        .map(|r| r["body"]["context"].as_u64().unwrap())
        .collect();
    assert_eq!(
        context,
        [0, 3, 5],
        "each turn records only the messages not sent before"
    );
    let new: Vec<usize> = requests
        .iter()
        .map(|r| r["body"]["new_messages"].as_array().unwrap().len())
        .collect();
    assert_eq!(new, [2, 1, 1]);
    assert_eq!(requests[0]["body"]["masked_before_provider"], 1);
    assert!(requests[0]["findings"][0]["fingerprint"].is_string());
    assert_eq!(requests[0]["findings"][0]["masked_before_provider"], true);
    let responses = of_kind(conversation, "llm.response");
    assert_eq!(responses[0]["body"]["text"], "Hello there");
    assert_eq!(responses[0]["body"]["usage"]["total_tokens"], 27);
    assert!(responses[0]["body"]["ttfb_ms"].is_u64());
    assert_eq!(responses[1]["body"]["tool_calls"][0]["name"], "query");
    assert_eq!(
        responses[2]["body"]["tool_calls"].as_array().unwrap().len(),
        2
    );
    let all: Vec<&Value> = sessions.iter().flatten().collect();
    assert!(all
        .iter()
        .any(|e| e["kind"] == "llm.response" && e["body"]["error"]["type"] == "server_error"));
    assert!(all
        .iter()
        .any(|e| e["kind"] == "llm.response" && e["body"]["status"] == 429));

    assert!(
        !proctor.data_dir_contains(SECRET),
        "the password is in the data dir"
    );
    let (found_it, found) = search_secret(&proctor, SECRET);
    assert!(found_it);
    assert!(
        found.contains("llm.request") && found.contains(&chain_id),
        "{found}"
    );

    let listed: Vec<Value> =
        serde_json::from_slice(&proctor.cli(&["chains", "list", "--format", "json"]).stdout)
            .unwrap();
    let listed = listed
        .iter()
        .find(|c| c["chain"] == chain_id.as_str())
        .unwrap();
    assert_eq!(
        (listed["identity"].as_str(), listed["turns"].as_u64()),
        (Some("alice"), Some(3))
    );
    assert_eq!(
        listed["proposals"], 3,
        "one tool call in the second answer, two in the third"
    );
    let shown = stdout(&proctor.cli(&["chains", "show", &chain_id]));
    for expected in [
        "started by  alice",
        "human: Then fix plan of account 7.",
        "AI: Hello there",
        "AI proposed: query {\"connection\": \"app-db\", \"sql\": \"UPDATE accounts SET plan = 'pro' WHERE id = 7\"}",
        "masked before storage, masked before the provider",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
    let json: Value = serde_json::from_slice(
        &proctor
            .cli(&["chains", "show", &chain_id, "--format", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json["secrets"][0]["masked_before_provider"], true);
    assert_eq!(json["turns"][1]["new_messages"][0]["role"], "user");
}

#[test]
fn the_anthropic_sdk_streams_thinking_and_its_signed_blocks_go_back_untouched() {
    let (mut proctor, provider, token) = start();
    let out = sdk("anthropic", &proctor, &token);

    let blocks = out["thinking"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(
        blocks[0]["signature"],
        "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxdiCRl"
    );
    assert_eq!(blocks[1]["text"], "I will run it.");
    assert_eq!(blocks[2]["type"], "tool_use");
    assert_eq!(
        blocks[2]["input"]["sql"],
        "UPDATE accounts SET plan = 'pro' WHERE id = 7"
    );
    assert_eq!(out["second"], "Hello there");
    assert!(
        out["midstream_error"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{out}"
    );
    assert_eq!(out["ratelimit"]["status"], 429);
    assert_eq!(out["ratelimit"]["type"], "rate_limit_error");

    let sent = requests_to(&provider, "/v1/messages");
    for request in &sent {
        assert_eq!(request["headers"]["x-api-key"], PROVIDER_KEY);
        assert!(!request.to_string().contains(SECRET));
    }
    let echoed = &sent[1]["body"]["messages"][1]["content"];
    assert_eq!(
        echoed[0]["signature"], "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxdiCRl",
        "signed blocks are sent back as they came"
    );
    assert_eq!(
        echoed[2]["input"]["sql"],
        "UPDATE accounts SET plan = 'pro' WHERE id = 7"
    );

    let sessions = llm_events(&mut proctor);
    let conversation = sessions
        .iter()
        .find(|events| of_kind(events, "llm.request").len() == 2)
        .expect("both turns in one conversation");
    let requests = of_kind(conversation, "llm.request");
    assert_eq!(
        requests[1]["body"]["context"], 2,
        "the answer, echoed with its signature, was recognised: {}",
        requests[1]["body"]["new_messages"]
    );
    let response = of_kind(conversation, "llm.response")[0];
    assert_eq!(response["body"]["thinking"][0]["signed"], true);
    assert_eq!(response["body"]["stop_reason"], "tool_use");
    assert_eq!(response["body"]["usage"]["output_tokens"], 40);
    assert!(!proctor.data_dir_contains(SECRET));
}

#[test]
fn the_openai_responses_api_streams_and_continues_a_chain_by_response_id() {
    let (mut proctor, provider, token) = start();
    let out = sdk("responses", &proctor, &token);
    assert_eq!(out["stream"]["text"], "Hello there");
    let last_event_at = provider
        .received()
        .iter()
        .find_map(|r| r["last_event_at"].as_f64())
        .unwrap();
    assert!(out["stream"]["first_delta_at"].as_f64().unwrap() < last_event_at);
    assert_eq!(out["call"]["name"], "query");
    assert_eq!(out["call"]["arguments"]["connection"], "app-db");
    assert_eq!(out["ratelimit"], 429);
    let sent = requests_to(&provider, "/v1/responses");
    assert!(sent[0]["body"]["input"]
        .as_str()
        .unwrap()
        .contains("postgres://admin:[MASKED:"));
    assert!(sent.iter().all(|r| !r.to_string().contains(SECRET)));

    let chain = out["call"]["chain"].as_str().unwrap().to_owned();
    let sessions = llm_events(&mut proctor);
    let conversation = sessions
        .iter()
        .find(|events| events[0]["session_id"] == chain.as_str())
        .unwrap();
    let requests = of_kind(conversation, "llm.request");
    assert_eq!(
        requests.len(),
        2,
        "previous_response_id continued the chain"
    );
    assert_eq!(requests[1]["body"]["endpoint"], "/v1/responses");
    let responses = of_kind(conversation, "llm.response");
    assert_eq!(responses[0]["body"]["text"], "Hello there");
    assert_eq!(responses[0]["body"]["usage"]["total_tokens"], 27);
    assert_eq!(responses[1]["body"]["tool_calls"][0]["name"], "query");
    assert!(!proctor.data_dir_contains(SECRET));
}

#[test]
fn a_client_that_leaves_mid_stream_is_recorded_as_such() {
    use std::io::Read;
    let (mut proctor, _provider, token) = start();
    let body =
        r#"{"model": "long", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", proctor.http_port)).unwrap();
    write!(
        stream,
        "POST /llm/openai/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 512];
    let read = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"));
    drop(stream);
    // The proxy records the answer once it notices that the client left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let response = loop {
        let recorded = proctor
            .sessions(&["--identity", "alice"])
            .iter()
            .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
            .find(|e| e["kind"] == "llm.response");
        if let Some(response) = recorded {
            break response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the answer was not recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(response["body"]["client_disconnected"], true, "{response}");
    proctor.stop();
}

#[test]
fn a_long_conversation_is_accepted_up_to_the_configured_size() {
    use std::io::Read;
    let (proctor, _provider, token) = start();
    let post = |size: usize| {
        let body = format!(
            r#"{{"model": "text", "messages": [{{"role": "user", "content": "{}"}}]}}"#,
            "x".repeat(size)
        );
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", proctor.http_port)).unwrap();
        write!(
            stream,
            "POST /llm/openai/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        let _ = stream.write_all(body.as_bytes());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    };
    let three_megabytes = post(3 << 20);
    assert!(
        three_megabytes.starts_with("HTTP/1.1 200"),
        "{}",
        &three_megabytes[..200.min(three_megabytes.len())]
    );
    let too_large = post(9 << 20);
    assert!(
        too_large.starts_with("HTTP/1.1 413"),
        "{}",
        &too_large[..200.min(too_large.len())]
    );
}

#[test]
fn a_turn_that_cannot_be_recorded_is_not_sent_to_the_provider() {
    use std::io::Read;
    let (proctor, provider, token) = start();
    // Larger than the journal's reserved space, which the file size limit keeps from growing.
    support::limit_file_size(proctor.pid(), "1");
    let body = format!(
        r#"{{"model": "text", "messages": [{{"role": "user", "content": "never sent {}"}}]}}"#,
        "x".repeat(2 << 20)
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", proctor.http_port)).unwrap();
    write!(
        stream,
        "POST /llm/openai/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    support::limit_file_size(proctor.pid(), "unlimited");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.contains("so it does not forward it") || response.contains("so it was not sent"),
        "{response}"
    );
    assert!(
        requests_to(&provider, "/v1/chat/completions").is_empty(),
        "the provider received a turn the journal did not hold"
    );
}

#[test]
fn a_request_with_no_valid_token_is_refused_and_recorded_without_the_token() {
    let (mut proctor, _provider, token) = start();
    // A revoked-looking slip: a token of the right shape whose secret is wrong.
    let id = token.split('_').nth(1).unwrap();
    let wrong = format!("prt_{id}_{}", "A".repeat(43));
    let body = r#"{"model":"text","messages":[{"role":"user","content":"hi"}]}"#;
    for bearer in [Some(wrong.as_str()), None] {
        let (status, _) = proctor.http("POST", "/llm/openai/v1/chat/completions", bearer, body);
        assert_eq!(status, 401);
    }
    let (status, _) = proctor.http("POST", "/mcp", Some(&wrong), "{}");
    assert_eq!(status, 401);

    let refused = proctor.ended_sessions_of("-", 3);
    let failures: Vec<Value> = refused
        .iter()
        .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
        .filter(|e| e["kind"] == "auth.failure")
        .collect();
    assert_eq!(failures.len(), 3, "{refused:?}");
    let with_id = failures
        .iter()
        .filter(|f| f["body"]["token_id"] == id)
        .count();
    assert_eq!(
        with_id, 2,
        "the LLM and MCP refusals name the token's id: {failures:?}"
    );
    assert!(failures
        .iter()
        .any(|f| f["body"]["reason"] == "no token given"));
    proctor.stop();
    assert!(
        !proctor.data_dir_contains(&wrong),
        "the token is not stored"
    );
}

#[test]
fn an_identity_not_on_a_providers_allow_list_cannot_spend_its_key() {
    let (proctor, provider, _) = start();
    let outsider = proctor.add_identity("mallory", &["ops"]);
    let openai = r#"{"model":"text","messages":[{"role":"user","content":"hi"}]}"#;
    let anthropic =
        r#"{"model":"text","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    for (path, body, error) in [
        ("/llm/openai/v1/chat/completions", openai, "/error/type"),
        ("/llm/anthropic/v1/messages", anthropic, "/error/type"),
    ] {
        let (status, answer) = proctor.http("POST", path, Some(&outsider), body);
        assert_eq!(status, 403, "{path}: {answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            answer.pointer(error).unwrap(),
            "permission_error",
            "{answer}"
        );
    }
    assert!(
        provider.received().is_empty(),
        "a refused request reached the provider"
    );
    let refused = proctor.ended_sessions_of("mallory", 2);
    for session in &refused {
        let events = proctor.events(session["id"].as_str().unwrap());
        let failure = &of_kind(&events, "auth.failure")[0];
        assert_eq!(failure["body"]["stage"], "authorize", "{failure}");
    }
}

#[test]
fn a_prompt_is_masked_before_the_provider_at_any_size() {
    let (mut proctor, provider, token) = start();
    // A short request is masked on the event loop, a long one on a blocking thread: both before
    // they leave.
    for filler in [0, 200_000] {
        let content = format!(
            "{} Why does this fail? postgres://admin:{SECRET}@db.internal:5432/prod",
            "x".repeat(filler)
        );
        let body = serde_json::json!({"model": "text", "messages": [{"role": "user", "content": content}]});
        let (status, answer) = proctor.http(
            "POST",
            "/llm/openai/v1/chat/completions",
            Some(&token),
            &body.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let sent = requests_to(&provider, "/v1/chat/completions");
    assert_eq!(sent.len(), 2);
    for request in &sent {
        let text = request.to_string();
        assert!(
            text.contains("db.internal"),
            "the prompt reached the provider"
        );
        assert!(!text.contains(SECRET), "the provider received the password");
    }
    let requests: Vec<Value> = llm_events(&mut proctor)
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "llm.request")
        .collect();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request["body"]["masked_before_provider"], 1, "{request}");
    }
    assert!(!proctor.data_dir_contains(SECRET));
}
