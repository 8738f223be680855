//! Both sides of a legacy scp exec channel, as records of a head byte (high bit: the sink's side;
//! low seven bits: how many bytes follow) and its bytes, under the command the input's first byte
//! picks (an upload or a download, recursive or not). One tracker is fed each record whole, another
//! fed it in pieces of the size the first byte also says, then an empty feed: they must answer
//! alike and report the same files. The whole input is also read as an exec command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_ssh::scp::{ScpError, ScpTracker};

const COMMANDS: [&str; 4] = [
    "scp -t /srv/in/",
    "scp -r -p -t /srv",
    "scp -f /etc/motd",
    "scp -r -f /home/u/docs",
];

fn feed(tracker: &mut ScpTracker, sink: bool, bytes: &[u8]) -> Result<(), ScpError> {
    if sink {
        tracker.sink_bytes(bytes)
    } else {
        tracker.source_bytes(bytes)
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = ScpTracker::from_command(&String::from_utf8_lossy(data));
    let Some((&shape, mut rest)) = data.split_first() else {
        return;
    };
    let command = COMMANDS[usize::from(shape & 0x03)];
    let piece = usize::from((shape >> 2) & 0x0f) + 1;
    let (Some(mut whole), Some(mut cut)) = (
        ScpTracker::from_command(command),
        ScpTracker::from_command(command),
    ) else {
        return;
    };
    let mut whole_records = Vec::new();
    let mut cut_records = Vec::new();
    while let Some((&head, after)) = rest.split_first() {
        let (bytes, after) = after.split_at(usize::from(head & 0x7f).min(after.len()));
        rest = after;
        let sink = head & 0x80 != 0;
        let answer = feed(&mut whole, sink, bytes);
        let answer_in_pieces = bytes
            .chunks(piece)
            .try_for_each(|bytes| feed(&mut cut, sink, bytes))
            .and_then(|()| feed(&mut cut, sink, &[]));
        assert_eq!(answer, answer_in_pieces);
        whole_records.extend(whole.take_records());
        cut_records.extend(cut.take_records());
    }
    whole_records.extend(whole.finish());
    cut_records.extend(cut.finish());
    assert_eq!(whole_records, cut_records);
    for record in &whole_records {
        let _ = record.to_json();
    }
});
