//! A JSON-RPC message posted to the MCP endpoint, read as the server reads it (the SDK's client
//! message types); a tool call's arguments are then read as Proctor's tools take them and looked up
//! among the tool calls models proposed, in canonical JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_core::proposals::Proposals;
use proctor_mcp::{DescribeArgs, QueryArgs};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(data) else {
        return;
    };
    let JsonRpcMessage::Request(request) = message else {
        return;
    };
    let ClientRequest::CallToolRequest(call) = request.request else {
        return;
    };
    let arguments = Value::Object(call.params.arguments.unwrap_or_default());
    let _ = serde_json::from_value::<QueryArgs>(arguments.clone());
    let _ = serde_json::from_value::<DescribeArgs>(arguments.clone());
    let proposals = Proposals::default();
    proposals.remember(
        "alice",
        "chain",
        1,
        "call",
        &call.params.name,
        &arguments.to_string(),
    );
    assert!(
        proposals
            .find("alice", &call.params.name, &arguments)
            .is_some(),
        "a tool call is not found among the proposals made with its own arguments"
    );
});
