//! The journal's throughput, for `bench/journal.sh`: many concurrent sessions append events through the
//! group-commit writer, each statement's event committed before the next (as the gateway does), its
//! result queued behind it. Prints events committed per second, then how long the store took to take
//! them all in and seal them, how fast `proctor log check` rehashes the whole store, and exports the
//! longest session as a bundle for the verify timing.
//!
//!     cargo run --release -p proctor-journal --example journal_bench -- DATA_DIR SESSIONS SECONDS

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_journal::note::NoteVerifier;
use proctor_journal::{
    no_findings, now_ns, Body, Chain, SessionFilter, SessionHeader, Store, SyncMode, Writer,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, sessions, seconds] = args.as_slice() else {
        eprintln!("usage: journal_bench DATA_DIR SESSIONS SECONDS");
        std::process::exit(2);
    };
    let sessions: usize = sessions.parse().expect("SESSIONS is a number");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let dir = std::path::Path::new(dir);
    let store = Store::open(dir, SyncMode::Normal).expect("open the store");
    let writer = Writer::start(&store).expect("start the writer");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..sessions {
            let writer = writer.clone();
            let committed = committed.clone();
            tasks.push(tokio::spawn(async move {
                let header = SessionHeader {
                    session_id: format!("bench-{n}"),
                    protocol: "postgres".into(),
                    identity: "bench".into(),
                    connection: "bench-db".into(),
                    client_addr: "127.0.0.1:1".into(),
                    started_at: now_ns(),
                };
                let broken = Arc::new(AtomicBool::new(false));
                let mut chain = Chain::start(&header).unwrap();
                writer.open_session(header, &broken).await.unwrap();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i}");
                    let query = Body::new()
                        .str("protocol", "simple")
                        .str("sql", &sql)
                        .finish();
                    let event = chain.next_event(now_ns(), "db.query", query, no_findings());
                    writer.append_queued(event, &broken).await;
                    writer.commit().await;
                    let result = Body::new()
                        .uint("bytes", 11)
                        .uint("query", 2 * i + 1)
                        .uint("rows", 1)
                        .str("tag", "SELECT 1")
                        .finish();
                    let event = chain.next_event(now_ns(), "db.result", result, no_findings());
                    writer.append_queued(event, &broken).await;
                    committed.fetch_add(2, Ordering::Relaxed);
                    i += 1;
                    if i.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
                writer
                    .close_session(chain.session_id().into(), now_ns(), "done".into(), &broken)
                    .await
                    .unwrap();
                assert!(!broken.load(Ordering::Acquire), "a commit failed");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let events = committed.load(Ordering::Relaxed);
    println!(
        "append: {sessions} sessions, {events} events committed in {elapsed:.2} s: {:.0} events/s",
        events as f64 / elapsed
    );
    let ingest_started = Instant::now();
    writer.shutdown();
    let listed = store.list_sessions(&SessionFilter::default()).unwrap();
    let stored: u64 = listed.iter().map(|s| s.events).sum();
    assert_eq!(stored, events, "every event is in the store");
    println!(
        "ingest: the store took in and sealed the rest in {:.2} s after the last commit",
        ingest_started.elapsed().as_secs_f64()
    );
    let key = NoteVerifier::parse(&store.log_verifier_key().unwrap()).unwrap();
    let check_started = Instant::now();
    let checks = store.check_log(&key).unwrap();
    let check_elapsed = check_started.elapsed().as_secs_f64();
    assert!(checks.iter().all(|c| c.holds), "the store checks out");
    println!(
        "check: `proctor log check` rehashed {stored} events of {} sessions in {check_elapsed:.2} s: {:.0} events/s",
        listed.len(),
        stored as f64 / check_elapsed
    );
    let longest = listed.iter().max_by_key(|s| s.events).unwrap();
    let bundle = store.export_bundle(longest).unwrap();
    let path = dir.join("longest-session.json");
    std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
    println!(
        "bundle: {} with {} events, key {}",
        path.display(),
        bundle.events.len(),
        store.log_verifier_key().unwrap()
    );
}
