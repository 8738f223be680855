//! The floor under the gateway's throughput, for `bench/pgbench.sh` (`FLOOR=1`) and
//! `bench/sysbench.sh` (its `relay`): a relay that copies bytes between each client and its own
//! connection to the target and does nothing else (no parsing, no authentication, no recording),
//! whatever the protocol, laid out as `proctor serve` runs its sessions: one
//! single-threaded tokio event loop per core, sessions placed on them in turn, `TCP_NODELAY` on both
//! sides, 64 KiB reads. What it costs is what any gateway built this way pays to move the bytes, so
//! Proctor over this relay is what Proctor's own work (the protocol, masking, the journal) costs.
//!
//!     cargo run --release -p proctor-net --example passthrough -- LISTEN TARGET [LOOPS]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Handle};

const READ_CHUNK: usize = 64 * 1024;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, target, loops) = match args.as_slice() {
        [_, listen, target] => (listen, target, None),
        [_, listen, target, loops] => (listen, target, Some(loops)),
        _ => usage(),
    };
    let listen: SocketAddr = listen.parse().unwrap_or_else(|_| usage());
    let target: SocketAddr = target.parse().unwrap_or_else(|_| usage());
    let loops = match loops {
        Some(loops) => loops.parse().unwrap_or_else(|_| usage()),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut event_loops: Vec<Handle> = Vec::with_capacity(loops);
    for n in 0..loops {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        event_loops.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("passthrough-{n}"))
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    }
    let acceptor = Builder::new_current_thread().enable_all().build()?;
    acceptor.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        for next in (0..event_loops.len()).cycle() {
            // As `proctor serve` does, the socket leaves the acceptor's reactor and joins the
            // reactor of the loop it runs on: else the acceptor's thread would take every one of
            // the client's wake-ups and hand it over to that loop.
            let client = listener.accept().await?.0.into_std()?;
            event_loops[next].spawn(async move {
                let Ok(client) = TcpStream::from_std(client) else {
                    return;
                };
                if let Ok(upstream) = TcpStream::connect(target).await {
                    relay(client, upstream).await;
                }
            });
        }
        Ok(())
    })
}

fn usage() -> ! {
    eprintln!("usage: passthrough LISTEN_ADDR TARGET_ADDR [EVENT_LOOPS]");
    std::process::exit(2)
}

/// Copies each side's bytes to the other as they arrive, until either side leaves.
async fn relay(mut client: TcpStream, mut upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut from_client = vec![0; READ_CHUNK];
    let mut from_upstream = vec![0; READ_CHUNK];
    loop {
        let copied = tokio::select! {
            read = client.read(&mut from_client) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => upstream.write_all(&from_client[..n]).await,
            },
            read = upstream.read(&mut from_upstream) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => client.write_all(&from_upstream[..n]).await,
            },
        };
        if copied.is_err() {
            return;
        }
    }
}
