//! A provider's event stream: bytes cut into chunks where the first byte says, read by the SSE reader
//! with small bounds, each event assembled into an answer in all three formats (OpenAI chat and
//! responses, Anthropic messages), then read back as the client will send it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_llm::sse::SseReader;
use proctor_llm::wire::{Answer, Format};

const FORMATS: [Format; 3] = [Format::Chat, Format::Responses, Format::Messages];

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut % 64) + 1;
    let mut reader = SseReader::new(512, 2048);
    let mut answers = FORMATS.map(|_| Answer::default());
    for piece in stream.chunks(chunk) {
        for event in reader.feed(piece) {
            for (format, answer) in FORMATS.into_iter().zip(&mut answers) {
                answer.on_event(format, &event);
            }
        }
    }
    for (format, answer) in FORMATS.into_iter().zip(&answers) {
        let _ = answer.text();
        let _ = answer.tool_calls();
        let _ = answer.as_messages(format);
    }
});
