//! `proctor serve`: opens the journal, builds the Gate, and runs the PostgreSQL, MySQL and HTTP
//! listeners until SIGINT or SIGTERM, then lets sessions end and the journal drain.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use proctor_core::journal::{now_ns, Store, Writer};
use proctor_core::masking::fingerprint_key;
use proctor_core::{Config, Gate, Masker};
use proctor_llm::LlmProxy;
use proctor_mysql::MysqlGateway;
use proctor_pg::PgGateway;
use proctor_ssh::SshGateway;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::workers::Workers;

/// How long an event that nobody waits for (a result summary) may stay queued before it is committed.
const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// A conversation with a model unused this long is ended (its next turn starts a new session).
const CONVERSATION_IDLE: Duration = Duration::from_secs(30 * 60);
const CONVERSATION_SWEEP: Duration = Duration::from_secs(60);
/// Threads of the HTTP runtime.
const HTTP_THREADS: usize = 2;

pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROCTOR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log that cannot be written (disk full, file size limit) must not panic a session: eprintln!,
        // which reports such errors, panics when stderr itself fails.
        .log_internal_errors(false)
        .init();
    if config.connection.is_empty() {
        tracing::warn!(
            "no connection is configured, so no client can reach a database yet: run `proctor init \
             --connection postgres://USER@HOST:PORT/DATABASE`, or add a [[connection]] to the \
             configuration (README, \"Configuration reference\")"
        );
    }
    let secrets = config.resolve_secrets()?;
    let store = Arc::new(crate::admin::open_store(&config)?);
    store.log_verifier_key()?;
    store.record_configuration(&serde_json::to_value(&config.connection)?)?;
    let masker = masker(&config)?;
    let writer = Writer::start(&store)?;
    // The writer holds the data dir now, so no other gateway's session still waits for these.
    let abandoned = store.withdraw_pending_approvals(
        "the gateway stopped while the statement was held; it was not run",
        now_ns(),
    )?;
    if abandoned > 0 {
        tracing::warn!(
            requests = abandoned,
            "withdrew approval requests left pending by a gateway that stopped"
        );
    }
    let workers = Workers::start(config.server.workers)?;
    // HTTP (LLM proxy, MCP, approvals), the listeners' accept loops and the journal's flush run on a
    // runtime of their own, apart from the workers that carry PostgreSQL sessions, with threads
    // enough that one long request does not hold up the others.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_THREADS)
        .thread_name("proctor-http")
        .enable_all()
        .build()?;
    let served = runtime.block_on(serve(
        config,
        secrets,
        store,
        writer.clone(),
        masker,
        workers.handles(),
    ));
    workers.stop();
    served?;
    runtime.block_on(writer.commit());
    writer.shutdown();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    config: Config,
    secrets: proctor_core::config::ResolvedSecrets,
    store: Arc<Store>,
    writer: Writer,
    masker: Masker,
    workers: Vec<Handle>,
) -> anyhow::Result<()> {
    let postgres_listen = config.server.postgres_listen;
    let mysql_listen = config.mysql_listen();
    let ssh_listen = config.ssh_listen();
    let http_listen = config.server.http_listen;
    let data_dir = config.server.data_dir.clone();
    log_file_size_limit_signals()?;
    tokio::spawn(writer.clone().flush_every(FLUSH_INTERVAL));
    let log_store = store.clone();
    let mut secrets = secrets;
    let llm_keys = std::mem::take(&mut secrets.llm_keys);
    let gate = Arc::new(Gate::new(config, secrets, store, writer, masker));
    let llm = LlmProxy::new(gate.clone(), &gate.config().llm, llm_keys);
    let reaper = tokio::spawn({
        let llm = llm.clone();
        async move {
            loop {
                tokio::time::sleep(CONVERSATION_SWEEP).await;
                llm.close_idle(CONVERSATION_IDLE).await;
            }
        }
    });
    let pg = PgGateway::new(gate.clone())?;
    let pg_listener = TcpListener::bind(postgres_listen)
        .await
        .with_context(|| format!("cannot listen on {postgres_listen} (server.postgres_listen)"))?;
    let mysql = match mysql_listen {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (server.mysql_listen)"))?;
            Some((MysqlGateway::new(gate.clone())?, listener))
        }
        None => None,
    };
    let ssh = match ssh_listen {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (server.ssh_listen)"))?;
            Some((SshGateway::new(gate.clone())?, listener))
        }
        None => None,
    };
    let http_listener = TcpListener::bind(http_listen)
        .await
        .with_context(|| format!("cannot listen on {http_listen} (server.http_listen)"))?;
    let mysql_address = match &mysql {
        Some((_, listener)) => listener.local_addr()?.to_string(),
        None => "off".into(),
    };
    let ssh_address = match &ssh {
        Some((_, listener)) => listener.local_addr()?.to_string(),
        None => "off".into(),
    };
    tracing::info!(
        postgres = %pg_listener.local_addr()?,
        mysql = %mysql_address,
        ssh = %ssh_address,
        http = %http_listener.local_addr()?,
        data_dir = %data_dir.display(),
        "proctor is ready"
    );
    let (stop, stopped) = watch::channel(false);
    let mysql_task = mysql.map(|(gateway, listener)| {
        tokio::spawn(gateway.serve(listener, workers.clone(), stopped.clone()))
    });
    let ssh_task = ssh.map(|(gateway, listener)| {
        tracing::info!(host_key = %gateway.host_key(), "SSH host key");
        tokio::spawn(gateway.serve(listener, workers.clone(), stopped.clone()))
    });
    let pg_task = tokio::spawn(pg.clone().serve(pg_listener, workers, stopped.clone()));
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/log/checkpoint",
            get(move || {
                let store = log_store.clone();
                async move { newest_checkpoint(&store) }
            }),
        )
        .merge(proctor_web::router(gate.clone()))
        .merge(llm.clone().router())
        .merge(proctor_mcp::router(gate.clone(), pg.clone()));
    let mut http_stopped = stopped.clone();
    let http_task = tokio::spawn(async move {
        // Streamed answers go out chunk by chunk: without TCP_NODELAY each small chunk would wait
        // for the client's delayed acknowledgement of the one before.
        let http_listener = http_listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            http_listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stopped.changed().await;
        })
        .await
    });
    wait_for_signal().await;
    tracing::info!("shutting down: ending sessions");
    let _ = stop.send(true);
    let _ = pg_task.await;
    if let Some(mysql_task) = mysql_task {
        let _ = mysql_task.await;
    }
    if let Some(ssh_task) = ssh_task {
        let _ = ssh_task.await;
    }
    let _ = http_task.await;
    reaper.abort();
    llm.close_idle(Duration::ZERO).await;
    drop(gate);
    Ok(())
}

/// The detectors and the fingerprint key; every rule refused from a rule file is logged.
fn masker(config: &Config) -> anyhow::Result<Masker> {
    let key = fingerprint_key(&config.server.data_dir).context("the fingerprint key")?;
    let (masker, report) = Masker::from_config(config, key)?;
    for refused in &report.refused {
        tracing::warn!(rule = %refused, "a masking rule was refused");
    }
    tracing::info!(
        rules = report.rules,
        refused = report.refused.len(),
        "masking detectors loaded"
    );
    Ok(masker)
}

/// The newest signed checkpoint, as text (C2SP signed note).
fn newest_checkpoint(store: &Store) -> (StatusCode, String) {
    match store.newest_log_checkpoint() {
        Ok(Some(note)) => (StatusCode::OK, note),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "the log has no checkpoint yet\n".into(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "reading the newest checkpoint failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the checkpoint could not be read\n".into(),
            )
        }
    }
}

/// SIGXFSZ (a file size limit reached) is only logged: the write that hit the limit fails and the
/// journal fails closed, instead of the process dying.
fn log_file_size_limit_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut file_too_large = signal(SignalKind::from_raw(libc::SIGXFSZ))?;
    tokio::spawn(async move {
        while file_too_large.recv().await.is_some() {
            tracing::error!(
                "a file size limit was reached; journal writes fail until it is raised"
            );
        }
    });
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
