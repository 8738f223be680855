//! End to end: a driver that pipelines (psycopg's pipeline mode, JDBC and pgx batches, tokio-postgres
//! with many queries in flight) keeps writing while the database answers. Proctor must read both sides
//! while either write waits, or the two directions stall each other.

mod support;

use std::time::Duration;

use futures_util::future::try_join_all;
use futures_util::FutureExt;
use support::{of_kind, pg_host_and_port, Proctor, APP_DB, PG_DATABASE};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Pairs of a large INSERT and a large SELECT sent in one pipeline: their requests (26 MB) and their
/// answers (100 MB) are far more than the sockets on the way can hold.
const PAIRS: usize = 400;
const PARAMETER_BYTES: usize = 64 * 1024;
const RESULT_BYTES: usize = 256 * 1024;
/// Far longer than the pipeline takes; a stalled relay fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

/// Sends every pair before awaiting any answer, and checks what comes back.
async fn pipeline(through: &str, conninfo: &str) {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("create temp table pipelined (v text)")
        .await
        .unwrap();
    let insert = client
        .prepare("insert into pipelined values ($1)")
        .await
        .unwrap();
    let select = client
        .prepare(&format!("select repeat('x', {RESULT_BYTES})"))
        .await
        .unwrap();
    let value = "v".repeat(PARAMETER_BYTES);
    let params: [&(dyn ToSql + Sync); 1] = [&value];
    // Each request is sent when its future is first polled: all of them, in order, before any answer.
    let requests = (0..PAIRS).flat_map(|_| {
        [
            async { client.execute(&insert, &params).await.map(|n| n as usize) }.boxed(),
            async {
                let row = client.query_one(&select, &[]).await?;
                Ok(row.get::<_, &str>(0).len())
            }
            .boxed(),
        ]
    });
    let answers = tokio::time::timeout(PATIENCE, try_join_all(requests))
        .await
        .unwrap_or_else(|_| panic!("the pipeline through {through} stalled"))
        .unwrap();
    assert_eq!(answers.len(), 2 * PAIRS);
    assert!(answers.chunks(2).all(|pair| pair == [1, RESULT_BYTES]));
    let stored = client
        .query_one("select count(*), sum(length(v))::int8 from pipelined", &[])
        .await
        .unwrap();
    assert_eq!(stored.get::<_, i64>(0), PAIRS as i64);
    assert_eq!(stored.get::<_, i64>(1), (PAIRS * PARAMETER_BYTES) as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_of_large_writes_and_reads_completes_and_is_recorded() {
    let (host, port) = pg_host_and_port();
    pipeline(
        "PostgreSQL directly",
        &format!("host={host} port={port} user=postgres dbname={PG_DATABASE} sslmode=disable"),
    )
    .await;

    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    pipeline("Proctor", &proctor.conninfo("alice", &token, "app-db")).await;

    let events = tokio::task::spawn_blocking(move || {
        let sessions = proctor.ended_sessions_of("alice", 1);
        proctor.events(sessions[0]["id"].as_str().unwrap())
    })
    .await
    .unwrap();
    let results = of_kind(&events, "db.result");
    let tagged = |tag: &str| results.iter().filter(|r| r["body"]["tag"] == tag).count();
    assert_eq!(tagged("INSERT 0 1"), PAIRS);
    assert_eq!(tagged("SELECT 1"), PAIRS + 1, "the pairs' and the count's");
    // Each result follows the record of the statement it answers.
    for result in results {
        let query = result["body"]["query"].as_u64().unwrap();
        assert!(query < result["seq"].as_u64().unwrap());
    }
}
