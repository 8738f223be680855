//! The brief's scenario end to end: an engineer pastes a production connection string into a chat
//! (the official OpenAI SDK through Proctor's LLM proxy, to a fixture model); the model answers with a
//! tool call `query(app-db, "UPDATE ...")`; an agent runs it with the official MCP SDK through
//! Proctor's MCP server against the real PostgreSQL; the engineer answers. `proctor chains show` then
//! answers the brief's four questions, and the password is nowhere it should not be.

mod support;

use serde_json::{json, Value};
use support::{admin_sql, python, search_secret, stdout, FixtureProvider, Proctor, APP_DB};

const PASSWORD: &str = "S3cr3tProdPassw0rd-brief";

#[test]
fn a_pasted_secret_a_proposed_update_and_its_execution_form_one_readable_chain() {
    admin_sql(
        "drop table if exists accounts; create table accounts (id int primary key, plan text); \
         insert into accounts values (7, 'free'), (8, 'free')",
    );
    let model = FixtureProvider::start();
    let mut proctor = Proctor::start(&format!(
        "{APP_DB}guardrails = \"recommended\"\n\n[[llm.provider]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}\"\nallow = [\"*\"]\n",
        model.port
    ));
    let token = proctor.add_identity("alice", &["dba"]);
    let port = proctor.http_port.to_string();
    let state = model.dir.path().join("conversation.json");
    let state = state.to_str().unwrap();

    // 1. The engineer pastes the connection string; the model proposes an UPDATE.
    let proposed = python(
        "llm_clients.py",
        &["brief-1", &port, &token, PASSWORD, state],
    );
    let chain = proposed["chain"].as_str().unwrap().to_owned();
    assert_eq!(proposed["tool"], "query");
    let update = "UPDATE accounts SET plan = 'pro' WHERE id = 7";
    assert_eq!(proposed["arguments"]["sql"], update);

    // 2. The agent runs it (and tries something the guardrails refuse) over MCP, naming the chain.
    let calls = json!([
        ["list_connections", {}],
        ["query", proposed["arguments"]],
        ["query", {"connection": "app-db", "sql": "DELETE FROM accounts"}],
        ["describe", {"connection": "app-db", "table": "accounts"}],
        ["query", {"connection": "app-db", "sql": "ALTER TABLE accounts ADD COLUMN note text"}],
    ]);
    let ran = python(
        "mcp_client.py",
        &[&port, &token, &calls.to_string(), &chain],
    );
    assert_eq!(
        ran["tools"],
        json!(["describe", "list_connections", "query"])
    );
    assert_eq!(
        ran["results"][0]["content"]["connections"][0]["name"],
        "app-db"
    );
    assert_eq!(ran["results"][1]["error"], false, "{ran}");
    assert_eq!(ran["results"][1]["content"]["rows_affected"], 1);
    assert_eq!(ran["results"][2]["error"], true);
    assert_eq!(ran["results"][2]["content"]["sqlstate"], "42501");
    assert_eq!(
        ran["results"][3]["content"]["rows"],
        json!([["id", "integer", "NO"], ["plan", "text", "YES"]])
    );
    let held = &ran["results"][4]["content"];
    assert_eq!(held["status"], "pending approval", "{ran}");
    let request = held["approval"].as_str().unwrap().to_owned();
    let pending = stdout(&proctor.cli(&["approvals", "list", "--format", "json"]));
    assert!(pending.contains(&request), "{pending}");
    assert_eq!(admin_sql("select plan from accounts where id = 7"), "pro");
    assert_eq!(
        admin_sql("select count(*) from accounts"),
        "2",
        "the DELETE never ran"
    );

    // 3. The engineer answers the model.
    let answered = python(
        "llm_clients.py",
        &["brief-2", &port, &token, PASSWORD, state, "UPDATE 1"],
    );
    assert_eq!(
        answered["chain"],
        chain.as_str(),
        "the answer continues the same chain"
    );

    // The four questions, from the CLI.
    proctor.stop();
    let shown = stdout(&proctor.cli(&["chains", "show", &chain]));
    for expected in [
        // Which identity started the chain.
        "started by  alice",
        // What the AI proposed, and how the human answered.
        &format!("AI proposed: query {{\"connection\": \"app-db\", \"sql\": \"{update}\"}}"),
        "human: Thanks, that fixed it.",
        // Which commands reached which target, and which were blocked.
        "query on app-db by alice (proposed by the AI in #",
        &format!("{update} -> ran: UPDATE 1"),
        "DELETE FROM accounts -> BLOCKED by rule recommended/deny-delete-without-where",
        &format!("ALTER TABLE accounts ADD COLUMN note text -> HELD for approval (request {request}) by rule recommended/hold-ddl"),
        // Which secrets were found, where, and whether they were masked.
        "masked before storage, masked before the provider",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
    let json: Value = serde_json::from_slice(
        &proctor
            .cli(&["chains", "show", &chain, "--format", "json"])
            .stdout,
    )
    .unwrap();
    let statements: Vec<Value> = proctor
        .sessions(&["--identity", "alice"])
        .iter()
        .filter(|s| s["protocol"] == "postgres")
        .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
        .filter(|e| e["kind"] == "db.query")
        .collect();
    let ran = statements
        .iter()
        .find(|e| e["body"]["sql"] == update)
        .expect("the UPDATE's db.query");
    assert_eq!(
        ran["body"]["chain"],
        chain.as_str(),
        "the statement names its chain"
    );
    let command = &json["commands"][0];
    assert_eq!(command["proposed_by"]["tool_call_id"], "call_q");
    assert_eq!(command["statements"][0]["reached_target"], true);
    assert_eq!(json["secrets"][0]["masked_before_provider"], true);

    // The same four questions, from the web API, for an auditor.
    proctor.spawn();
    let auditor = proctor.add_identity("audra", &["auditor"]);
    let (status, listed) = proctor.http("GET", "/api/v1/chains", Some(&auditor), "");
    assert_eq!(status, 200, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["chains"][0]["chain"], chain.as_str(), "{listed}");
    let (status, shown) = proctor.http(
        "GET",
        &format!("/api/v1/chains/{chain}"),
        Some(&auditor),
        "",
    );
    assert_eq!(status, 200, "{shown}");
    let answers = &serde_json::from_str::<Value>(&shown).unwrap()["answers"];
    assert_eq!(answers["started_by"]["identity"], "alice", "{answers}");
    let proposed = answers["proposed"].as_array().unwrap();
    let replies = proposed
        .iter()
        .flat_map(|p| p["replies"].as_array().unwrap())
        .map(|r| r["text"].as_str().unwrap_or_default());
    assert!(
        replies.clone().any(|text| text.contains("UPDATE 1")),
        "the tool's answer: {answers}"
    );
    assert!(
        answers["ran"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["sql"] == update && r["outcome"]["tag"] == "UPDATE 1"),
        "{answers}"
    );
    assert!(
        answers["stopped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["sql"] == "DELETE FROM accounts"),
        "{answers}"
    );
    assert_eq!(
        answers["secrets"][0]["masked_before_provider"], true,
        "{answers}"
    );
    assert_eq!(answers["secrets_reaching_provider"], 0);

    // The model never received the password; no file of the data dir holds it; search finds it.
    let sent = std::fs::read_to_string(&model.log).unwrap();
    assert!(
        !sent.contains(PASSWORD),
        "the fixture model received the password"
    );
    assert!(!proctor.data_dir_contains(PASSWORD));
    let (found_it, found) = search_secret(&proctor, PASSWORD);
    assert!(found_it);
    assert!(
        found.contains(&chain) && found.contains("llm.request"),
        "{found}"
    );
}

#[test]
fn a_stdio_mcp_client_reaches_the_same_tools_through_the_bridge() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("carol", &["dba"]);
    let bridge = format!(
        "stdio:{}:{}",
        env!("CARGO_BIN_EXE_proctor"),
        proctor.config_path.display()
    );
    let calls = json!([["query", {"connection": "app-db", "sql": "select 41 + 1 as answer"}]]);
    let ran = python("mcp_client.py", &[&bridge, &token, &calls.to_string()]);
    assert_eq!(
        ran["results"][0]["content"]["rows"],
        json!([["42"]]),
        "{ran}"
    );
    let sessions = proctor.ended_sessions_of("carol", 2);
    let kinds: Vec<&str> = sessions
        .iter()
        .map(|s| s["protocol"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"mcp") && kinds.contains(&"postgres"),
        "{kinds:?}"
    );
}
