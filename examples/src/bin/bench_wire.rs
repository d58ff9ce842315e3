//! The wire's throughput on loopback: one connection carries `--mib` MiB of
//! `f64` arrays in messages of `--message-mib` MiB, sent as the scheduler and
//! workers send data (`Outbound::write_streamed`: each array a block beside its
//! message, in frames of 4 MiB, written from the array's memory), plain or
//! sealed (`--sealed`: AES-256-GCM, as every connection beyond loopback is),
//! and the receiver reads each block into the array it becomes. Prints one
//! JSON line.

use clap::Parser;
use gridpipe_examples::failure::Failure;
use gridpipe_runtime::wire::auth::{random_bytes, Secret};
use gridpipe_runtime::wire::raw;
use gridpipe_runtime::wire::session::{Inbound, Outbound, SessionKeys};
use gridpipe_runtime::wire::stream::{CHUNK, DEFAULT_MAX_MESSAGE};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Wire benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// MiB to send in all.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// MiB per message.
    #[arg(long, default_value_t = 8)]
    message_mib: usize,
    /// Seal every frame (encrypt and authenticate).
    #[arg(long)]
    sealed: bool,
}

/// One message: a block of values.
#[derive(Serialize, Deserialize)]
struct Block {
    #[serde(with = "raw::array")]
    values: ArrayD<f64>,
}

fn halves(sealed: bool) -> ((Outbound, Inbound), (Outbound, Inbound)) {
    if !sealed {
        return (
            (Outbound::plain(), Inbound::plain()),
            (Outbound::plain(), Inbound::plain()),
        );
    }
    let keys = SessionKeys::derive(&Secret::generate(), &random_bytes(), &random_bytes());
    (keys.worker_halves(), keys.scheduler_halves())
}

fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let per_message = (args.message_mib << 20) / 8;
    let messages = (args.mib / args.message_mib.max(1)).max(1);
    let block = Arc::new(Block {
        values: ArrayD::from_shape_fn(IxDyn(&[per_message]), |d| d[0] as f64 * 0.5),
    });
    let block_bytes = (per_message * 8) as u64;
    let ((mut out, _), (_, mut inbound)) = halves(args.sealed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (wall_s, received) = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut values = 0usize;
            for _ in 0..messages {
                let b: Block = inbound
                    .read_msg(&mut s, DEFAULT_MAX_MESSAGE)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                values += b.values.len();
            }
            Ok::<usize, std::io::Error>(values)
        });
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let start = Instant::now();
        for _ in 0..messages {
            out.write_streamed(
                &mut s,
                block.clone(),
                block_bytes,
                DEFAULT_MAX_MESSAGE,
                None,
            )
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        s.flush().await?;
        let values = receiver.await.map_err(std::io::Error::other)??;
        Ok::<_, std::io::Error>((start.elapsed().as_secs_f64(), values))
    })?;
    if received != messages * per_message {
        return Err(format!("received {received} values of {}", messages * per_message).into());
    }
    let bytes = (messages * per_message * 8) as f64;
    let line = serde_json::json!({
        "bench": "wire",
        "mib": bytes / (1u64 << 20) as f64,
        "message_mib": args.message_mib,
        "frame_mib": CHUNK >> 20,
        "sealed": args.sealed,
        "wall_s": wall_s,
        "gib_per_s": bytes / (1u64 << 30) as f64 / wall_s,
    });
    println!("{line}");
    Ok(())
}
