//! Both directions of an sftp channel, as records of a head byte (high bit: the server's side; low
//! seven bits: how many bytes follow) and its bytes. One tracker is fed each record whole, another
//! fed it in pieces of the size the input's first byte says, then an empty feed: they must answer
//! alike and report the same files. The first byte's high bit makes the out-of-order budget tiny,
//! so that files left unhashed are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proctor_ssh::sftp::{SftpError, SftpLimits, SftpTracker};

fn feed(tracker: &mut SftpTracker, server: bool, bytes: &[u8]) -> Result<(), SftpError> {
    if server {
        tracker.server_bytes(bytes)
    } else {
        tracker.client_bytes(bytes)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, mut rest)) = data.split_first() else {
        return;
    };
    let limits = SftpLimits {
        max_pending_bytes: if shape & 0x80 != 0 { 16 } else { 8 << 20 },
        ..SftpLimits::default()
    };
    let piece = usize::from(shape & 0x0f) + 1;
    let mut whole = SftpTracker::new(limits);
    let mut cut = SftpTracker::new(limits);
    let mut whole_records = Vec::new();
    let mut cut_records = Vec::new();
    while let Some((&head, after)) = rest.split_first() {
        let (bytes, after) = after.split_at(usize::from(head & 0x7f).min(after.len()));
        rest = after;
        let server = head & 0x80 != 0;
        let answer = feed(&mut whole, server, bytes);
        let answer_in_pieces = bytes
            .chunks(piece)
            .try_for_each(|bytes| feed(&mut cut, server, bytes))
            .and_then(|()| feed(&mut cut, server, &[]));
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
