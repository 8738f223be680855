//! The floor of `passthrough.rs` on io_uring instead of epoll, for `bench/pgbench.sh` (`FLOOR=1`,
//! its `floor-uring`) and `bench/costs.sh`: a relay that copies bytes between each client and its own
//! connection to the target and does nothing else, laid out as the tokio floor is (one
//! single-threaded monoio event loop per core, each driving its own io_uring, sessions placed on them
//! in turn, `TCP_NODELAY` on both sides, 64 KiB reads). Set beside the tokio floor, it tells what
//! moving the bytes through io_uring's completions rather than epoll's readiness would save a gateway
//! built this way.
//!
//!     cargo run --release -p proctor-net --example passthrough_uring -- LISTEN TARGET [LOOPS]

use std::net::{SocketAddr, TcpListener};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use monoio::{IoUringDriver, RuntimeBuilder};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

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
    // A monoio runtime cannot be handed tasks from another thread: each loop takes the accepted
    // sockets from a channel instead, whose sender wakes its io_uring when it sleeps.
    let mut event_loops: Vec<UnboundedSender<std::net::TcpStream>> = Vec::with_capacity(loops);
    for n in 0..loops {
        let (sessions, accepted) = unbounded_channel();
        let (started, start) = std::sync::mpsc::sync_channel(1);
        event_loops.push(sessions);
        std::thread::Builder::new()
            .name(format!("passthrough-uring-{n}"))
            .spawn(move || {
                // A runtime stays on the thread that builds it; whether it could is told back.
                match RuntimeBuilder::<IoUringDriver>::new().build() {
                    Ok(mut runtime) => {
                        let _ = started.send(Ok(()));
                        runtime.block_on(serve(accepted, target));
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
            })?;
        start
            .recv()
            .map_err(|_| std::io::Error::other("an event loop did not start"))??;
    }
    let listener = TcpListener::bind(listen)?;
    for next in (0..event_loops.len()).cycle() {
        let (client, _) = listener.accept()?;
        if event_loops[next].send(client).is_err() {
            return Err(std::io::Error::other("an event loop stopped"));
        }
    }
    unreachable!("the accept loop only ends by an error")
}

fn usage() -> ! {
    eprintln!("usage: passthrough_uring LISTEN_ADDR TARGET_ADDR [EVENT_LOOPS]");
    std::process::exit(2)
}

/// Runs on one event loop: a session for each client placed on it, until the acceptor stops.
async fn serve(mut accepted: UnboundedReceiver<std::net::TcpStream>, target: SocketAddr) {
    while let Some(client) = accepted.recv().await {
        monoio::spawn(async move {
            let Ok(client) = TcpStream::from_std(client) else {
                return;
            };
            if let Ok(upstream) = TcpStream::connect_addr(target).await {
                relay(client, upstream).await;
            }
        });
    }
}

/// Copies each side's bytes to the other as they arrive, until either side leaves.
async fn relay(client: TcpStream, upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_reads, client_writes) = client.into_split();
    let (upstream_reads, upstream_writes) = upstream.into_split();
    monoio::select! {
        () = copy(client_reads, upstream_writes) => {},
        () = copy(upstream_reads, client_writes) => {},
    }
}

/// Writes what one side sends to the other, reusing one buffer, until the sender leaves or the
/// receiver can no longer be written to.
async fn copy(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRentExt) {
    let mut buffer = Vec::with_capacity(READ_CHUNK);
    loop {
        let (read, filled) = from.read(buffer).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (written, sent) = to.write_all(filled).await;
        if written.is_err() {
            return;
        }
        buffer = sent;
    }
}
