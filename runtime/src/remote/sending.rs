//! Sending tasks and results over a worker connection: one message when they
//! fit in one, encoded straight into its frames ([`Outbound::write_streamed`]);
//! else as many messages as they need, and whatever is too big for any message
//! kept back and named.

use super::protocol::{
    data_bytes, frames_from_worker, frames_to_worker, pack, FromWorker, ToWorker,
};
use crate::actors::messages::{TaskEnvelope, TaskKind};
use crate::wire::frame::{encode, encode_message, Split};
use crate::wire::session::Outbound;
use crate::wire::streamed::Beating;
use crate::wire::WireError;
use std::sync::Arc;
use tokio::io::AsyncWrite;

/// A task (run and task) whose message would be this many bytes, over the
/// largest message.
pub type TooBig = ((u32, TaskKind), u64);

/// Sends a group of tasks for one worker; returns the tasks too big for any
/// message, which were not sent (with the size they would have had).
pub async fn send_tasks<W: AsyncWrite + Unpin>(
    outbound: &mut Outbound,
    w: &mut W,
    group: Vec<TaskEnvelope>,
    max_message: u64,
    beat: &mut tokio::time::Interval,
) -> Result<Vec<TooBig>, WireError> {
    let data = group.iter().map(data_bytes).sum();
    let packed = Arc::new(pack(&group));
    let heartbeat = || encode(&ToWorker::Heartbeat);
    let beating = Beating {
        beat: &mut *beat,
        heartbeat: &heartbeat,
    };
    match outbound
        .write_streamed(w, packed, data, max_message, Some(beating))
        .await
    {
        Ok(()) => Ok(Vec::new()),
        Err(WireError::Oversized { size, .. }) if group.len() == 1 => {
            Ok(vec![((group[0].run, group[0].task), size)])
        }
        Err(WireError::Oversized { .. }) => {
            let (messages, oversized) = outbound
                .encode_beating(
                    w,
                    data,
                    move || split_tasks(&group, max_message),
                    beat,
                    heartbeat,
                )
                .await?;
            for m in messages {
                outbound.write_message(w, m).await?;
            }
            Ok(oversized)
        }
        Err(e) => Err(e),
    }
}

/// Encodes tasks into messages; returns them and the tasks too big for any
/// message (with the size they would have had).
fn split_tasks(
    tasks: &[TaskEnvelope],
    max_message: u64,
) -> Result<(Vec<Vec<u8>>, Vec<TooBig>), WireError> {
    let Split { frames, oversized } = frames_to_worker(tasks, max_message)?;
    let oversized = oversized
        .into_iter()
        .map(|(i, size)| ((tasks[i].run, tasks[i].task), size))
        .collect();
    Ok((frames, oversized))
}

/// Sends a worker's message to the scheduler: one message when it fits, else
/// as many as it needs, a result too big for any going back as `TooLarge`.
pub async fn send_results<W: AsyncWrite + Unpin>(
    outbound: &mut Outbound,
    w: &mut W,
    msg: FromWorker,
    max_message: u64,
    beat: &mut tokio::time::Interval,
) -> Result<(), WireError> {
    let data = msg.data_bytes();
    let msg = Arc::new(msg);
    let heartbeat = || encode_message(&FromWorker::Heartbeat, max_message);
    let beating = Beating {
        beat: &mut *beat,
        heartbeat: &heartbeat,
    };
    match outbound
        .write_streamed(w, msg.clone(), data, max_message, Some(beating))
        .await
    {
        Err(WireError::Oversized { .. }) => {
            // The encoder has let go of its share: the message is ours again.
            let msg = Arc::try_unwrap(msg)
                .map_err(|_| WireError::Garbage("a message still being encoded".into()))?;
            let messages = outbound
                .encode_beating(
                    w,
                    data,
                    move || frames_from_worker(msg, max_message),
                    beat,
                    heartbeat,
                )
                .await?;
            for m in messages {
                outbound.write_message(w, m).await?;
            }
            Ok(())
        }
        other => other,
    }
}
