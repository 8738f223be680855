//! A client's request to the LLM proxy, in each of the three formats: read as a turn, its messages put
//! in normal form and hashed as the chain does, and the texts the client wrote visited for masking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_llm::chains::message_hash;
use proctor_llm::wire::{client_texts, Format, Turn};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for format in [Format::Chat, Format::Responses, Format::Messages] {
        if let Ok(turn) = Turn::read(format, &request) {
            for message in &turn.messages {
                let _ = message_hash(message);
            }
        }
        let mut outgoing = request.clone();
        client_texts(format, &mut outgoing, |text| text.push_str("[MASKED:fuzz]"));
    }
});
