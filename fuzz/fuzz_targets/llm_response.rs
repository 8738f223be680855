//! A provider's whole (non-streamed) response body, read as an answer in each of the three formats and
//! then as the messages the client will send back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_llm::chains::message_hash;
use proctor_llm::wire::{Answer, Format};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for format in [Format::Chat, Format::Responses, Format::Messages] {
        let answer = Answer::from_body(format, &body);
        let _ = answer.text();
        let _ = answer.tool_calls();
        for message in answer.as_messages(format) {
            let _ = message_hash(&message);
        }
    }
});
