//! Local port forwards (`ssh -L`, `direct-tcpip` channels): allowed or denied per connection, and
//! recorded with where they led and the bytes that crossed each way. Their content is not stored.

use russh::server::Msg as ServerMsg;
use russh::{client, Channel, ChannelId, ChannelMsg};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::channel::{channel_number, ChannelContext};
use crate::journal::SessionJournal;

/// Where a forward asks to go, and where it comes from on the user's side.
pub struct Request {
    pub host: String,
    pub port: u32,
    pub originator: String,
}

pub async fn record_denied(journal: &SessionJournal, request: &Request, channel: ChannelId) {
    let _ = journal
        .queue(
            "ssh.forward",
            json!({"action": "deny", "channel": channel_number(channel), "direction": "local",
                   "host": request.host, "originator": request.originator, "port": request.port,
                   "reason": "port forwarding is not allowed on this connection"}),
        )
        .await;
}

/// Copies a forward's bytes both ways until either side closes, then records what crossed.
pub async fn relay(
    context: ChannelContext,
    request: Request,
    user: Channel<ServerMsg>,
    upstream: Channel<client::Msg>,
) {
    let number = channel_number(user.id());
    let opened = context
        .journal
        .commit_event(
            "ssh.forward",
            json!({"action": "allow", "channel": number, "direction": "local",
                   "host": request.host, "originator": request.originator, "port": request.port}),
        )
        .await;
    if opened.is_err() {
        let _ = user.close().await;
        let _ = upstream.close().await;
        return;
    }
    let (sent, received) = copy_both_ways(user, upstream).await;
    let _ = context
        .journal
        .queue(
            "ssh.forward.end",
            json!({"bytes_from_target": received, "bytes_to_target": sent, "channel": number}),
        )
        .await;
    drop(context.alive);
}

/// Copies a channel's bytes both ways until either side closes it (then both are closed); returns
/// the bytes sent to the target and received from it.
pub async fn copy_both_ways(
    user: Channel<ServerMsg>,
    upstream: Channel<client::Msg>,
) -> (u64, u64) {
    let (mut user_rx, user_tx) = user.split();
    let (mut upstream_rx, upstream_tx) = upstream.split();
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut to_target_out, mut to_user_out) = (upstream_tx.make_writer(), user_tx.make_writer());
    let to_target = async {
        while let Some(message) = user_rx.wait().await {
            match message {
                ChannelMsg::Data { data } => {
                    sent += data.len() as u64;
                    if to_target_out.write_all(&data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = upstream_tx.eof().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    };
    let from_target = async {
        while let Some(message) = upstream_rx.wait().await {
            match message {
                ChannelMsg::Data { data } => {
                    received += data.len() as u64;
                    if to_user_out.write_all(&data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = user_tx.eof().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    };
    // Either side's close ends the channel: the other side is told, whether or not it answers.
    tokio::select! {
        () = to_target => {}
        () = from_target => {}
    }
    let _ = upstream_tx.close().await;
    let _ = user_tx.close().await;
    (sent, received)
}
