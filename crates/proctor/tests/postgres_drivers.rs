//! End to end with tokio-postgres: the extended protocol with typed parameters, cancel, concurrent
//! sessions, LISTEN/NOTIFY.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{admin_sql, of_kind, Proctor, APP_DB};
use tokio_postgres::NoTls;

async fn connect(proctor: &Proctor, token: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&proctor.conninfo("alice", token, "app-db"), NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_queries_record_sql_and_decoded_binary_parameters() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let client = connect(&proctor, &token).await;
    let statement = client
        .prepare("select $1::int4 + 1 as n, $2::text as t, $3::bool as b, $4::int8 as big, $5::float8 as f")
        .await
        .unwrap();
    let row = client
        .query_one(&statement, &[&41i32, &"hello", &true, &-7i64, &2.5f64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("n"), 42);
    assert_eq!(row.get::<_, &str>("t"), "hello");
    let rows = client
        .query("select generate_series(1, $1::int4)", &[&5i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let error = client
        .query("select * from no_such_table_e2e", &[])
        .await
        .unwrap_err();
    assert_eq!(error.code().unwrap().code(), "42P01");
    drop(client);

    let session = &tokio::task::spawn_blocking(move || {
        let sessions = proctor.ended_sessions_of("alice", 1);
        let events = proctor.events(sessions[0]["id"].as_str().unwrap());
        (proctor, events)
    })
    .await
    .unwrap();
    let events = &session.1;
    let queries = of_kind(events, "db.query");
    assert_eq!(queries[0]["body"]["protocol"], "extended");
    assert!(queries[0]["body"]["sql"]
        .as_str()
        .unwrap()
        .starts_with("select $1::int4 + 1"));
    assert_eq!(
        queries[0]["body"]["params"],
        json!([41, "hello", true, -7, 2.5])
    );
    assert_eq!(queries[1]["body"]["params"], json!([5]));
    let results = of_kind(events, "db.result");
    assert_eq!(
        results[0]["body"]["sample"],
        json!([[42, "hello", true, -7, 2.5]])
    );
    assert_eq!(results[1]["body"]["rows"], 5);
    assert_eq!(
        results[1]["body"]["sample"],
        json!([[1], [2], [3], [4], [5]])
    );
    let error = of_kind(events, "db.error")[0];
    assert_eq!(error["body"]["sqlstate"], "42P01");
    assert_eq!(error["body"]["sql"], "select * from no_such_table_e2e");
    assert_eq!(error["body"]["stage"], "parse");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_long_query_stops_and_the_cancel_is_recorded() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let client = connect(&proctor, &token).await;
    let cancel = client.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("select pg_sleep(60)").await;
        (client, result)
    });
    // Cancel once the target runs the query, as its own view of its backends shows.
    let running = "select count(*) from pg_stat_activity \
                   where query = 'select pg_sleep(60)' and state = 'active'";
    while tokio::task::spawn_blocking(move || admin_sql(running))
        .await
        .unwrap()
        != "1"
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel_query(NoTls).await.unwrap();
    let (client, result) = sleeper.await.unwrap();
    assert_eq!(result.unwrap_err().code().unwrap().code(), "57014");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the query was not cancelled"
    );
    let after = client.simple_query("select 1").await.unwrap();
    assert_eq!(after.len(), 3);
    drop(client);

    let events = tokio::task::spawn_blocking(move || {
        let sessions = proctor.ended_sessions_of("alice", 1);
        proctor.events(sessions[0]["id"].as_str().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(of_kind(&events, "db.cancel").len(), 1);
    assert_eq!(of_kind(&events, "db.error")[0]["body"]["sqlstate"], "57014");
    let position = |kind: &str| events.iter().position(|e| e["kind"] == kind).unwrap();
    assert!(
        position("db.cancel") < position("db.error"),
        "the cancel is recorded before its effect"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sessions_each_keep_a_complete_intact_chain() {
    // Sessions spread over three event loops share one journal and its group commit.
    let proctor = Proctor::start(&format!("workers = 3\n{APP_DB}"));
    let token = proctor.add_identity("alice", &["dba"]);
    let worker_threads = std::fs::read_dir(format!("/proc/{}/task", proctor.pid()))
        .unwrap()
        .filter(|task| {
            let comm = std::fs::read_to_string(task.as_ref().unwrap().path().join("comm"));
            comm.unwrap().starts_with("proctor-worker-")
        })
        .count();
    assert_eq!(worker_threads, 3);
    let mut tasks = Vec::new();
    for n in 0..8i32 {
        let client = connect(&proctor, &token).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..50i32 {
                let row = client
                    .query_one("select $1::int4 * 1000 + $2::int4", &[&n, &i])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>(0), n * 1000 + i);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let sessions = proctor.ended_sessions_of("alice", 8);
        assert_eq!(sessions.len(), 8);
        for session in &sessions {
            assert_eq!(session["queries"], 50);
            let id = session["id"].as_str().unwrap();
            let verify = proctor.cli(&["sessions", "verify", id]);
            assert!(verify.status.success(), "{}", support::stdout(&verify));
            let events = proctor.events(id);
            let results = of_kind(&events, "db.result");
            assert_eq!(results.len(), 50);
            let n = results[0]["body"]["sample"][0][0].as_i64().unwrap() / 1000;
            for (i, result) in results.iter().enumerate() {
                assert_eq!(result["body"]["sample"], json!([[n * 1000 + i as i64]]));
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_and_notify_pass_through_and_notifications_are_recorded() {
    let proctor = Proctor::start(&APP_DB);
    let token = proctor.add_identity("alice", &["dba"]);
    let (listener, mut connection) =
        tokio_postgres::connect(&proctor.conninfo("alice", &token, "app-db"), NoTls)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_poll::messages(&mut connection);
        while let Some(message) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("listen e2e_channel").await.unwrap();
    let notifier = connect(&proctor, &token).await;
    notifier
        .batch_execute("notify e2e_channel, 'hello there'")
        .await
        .unwrap();
    let (channel, payload) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (channel.as_str(), payload.as_str()),
        ("e2e_channel", "hello there")
    );
    drop(listener);
    drop(notifier);
    tokio::task::spawn_blocking(move || {
        let sessions = proctor.ended_sessions_of("alice", 2);
        let recorded: Vec<_> = sessions
            .iter()
            .flat_map(|s| proctor.events(s["id"].as_str().unwrap()))
            .filter(|e| e["kind"] == "db.notification")
            .collect();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0]["body"]["channel"], "e2e_channel");
        assert_eq!(recorded[0]["body"]["payload"], "hello there");
    })
    .await
    .unwrap();
}

/// Polls a tokio-postgres connection for asynchronous messages without a futures dependency.
mod futures_poll {
    use std::future::poll_fn;

    pub struct Messages<'a, S, T>(&'a mut tokio_postgres::Connection<S, T>);

    pub fn messages<S, T>(connection: &mut tokio_postgres::Connection<S, T>) -> Messages<'_, S, T> {
        Messages(connection)
    }

    impl<S, T> Messages<'_, S, T>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        pub async fn next(&mut self) -> Option<tokio_postgres::AsyncMessage> {
            poll_fn(|cx| self.0.poll_message(cx))
                .await
                .and_then(Result::ok)
        }
    }
}
