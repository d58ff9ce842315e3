//! [`RemoteWorker`]: the scheduler's actor for one worker process. It lives on its own
//! arbiter (thread), so encoding and decoding never delay the scheduler; it keeps
//! every task it handed over until the worker reports it, so a lost worker's tasks
//! go back to the scheduler to run elsewhere.

use super::in_flight::InFlight;
use super::protocol::{group_by_bytes, outcome_from_wire, FromWorker, ToWorker};
use super::sending::{send_tasks, TooBig};
use crate::actors::messages::{
    ForgetWorker, PartitionsReturned, ReleaseHeld, RunTasks, TaskEnvelope, TaskOutcome, TaskResult,
    TasksDone,
};
use crate::actors::scheduler::{AddWorker, FitInputsFetched, Scheduler, WorkerLost};
use crate::wire::frame::encode;

/// The outcome of a task whose message is bigger than a message may be.
fn too_large_outcome(e: TaskEnvelope, size: u64, limit: u64) -> TaskOutcome {
    TaskOutcome::without_running(&e, TaskResult::TooLarge { size, limit })
}
use crate::wire::handshake::{Admitted, Channel, WorkerIdentity};
use crate::wire::traffic::{Counted, Traffic};
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The scheduler-side proxy of one connected worker process.
pub struct RemoteWorker {
    identity: WorkerIdentity,
    channel: Option<Channel>,
    stream: Option<std::net::TcpStream>,
    scheduler: Addr<Scheduler>,
    id: Option<u32>,
    out: Option<tokio::sync::mpsc::UnboundedSender<Outgoing>>,
    in_flight: InFlight,
    last_seen: Instant,
    heartbeat_timeout: Duration,
    lost: bool,
    /// The largest message to or from the worker.
    max_message: u64,
    /// Bytes of data per message of tasks.
    send_group_bytes: u64,
    /// Where the connection's bytes are counted.
    traffic: Arc<Traffic>,
}

/// What the connection's writer sends, in order.
enum Outgoing {
    /// An encoded message.
    Message(Vec<u8>),
    /// Tasks, encoded by the writer on a blocking thread (heartbeats go on
    /// meanwhile), in as many messages as they need.
    Tasks(Vec<TaskEnvelope>),
}

/// The writer found tasks whose message would be over the largest message:
/// they were not sent (run and task, and the size they would have had).
#[derive(Message)]
#[rtype(result = "()")]
struct Oversized(Vec<TooBig>);

/// The connection's reader: a frame of a long message came in (the worker is
/// alive while its transfer goes on).
#[derive(Message)]
#[rtype(result = "()")]
struct Progress;

impl Handler<Progress> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, _msg: Progress, _ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
    }
}

impl RemoteWorker {
    /// A proxy for an admitted connection.
    pub fn new(
        admitted: Admitted,
        stream: std::net::TcpStream,
        scheduler: Addr<Scheduler>,
        heartbeat_timeout: Duration,
    ) -> Self {
        Self {
            identity: admitted.identity,
            channel: None,
            stream: Some(stream),
            scheduler,
            id: None,
            out: None,
            in_flight: InFlight::default(),
            last_seen: Instant::now(),
            heartbeat_timeout,
            lost: false,
            max_message: admitted.channel.max_message,
            send_group_bytes: 16 << 20,
            traffic: Arc::default(),
        }
        .with_channel(admitted.channel)
    }

    /// Sends tasks in messages of about `bytes` bytes of data each.
    pub fn sending_groups_of(mut self, bytes: u64) -> Self {
        self.send_group_bytes = bytes;
        self
    }

    /// Counts the connection's bytes into `traffic` (the runtime's).
    pub fn counting_into(mut self, traffic: Arc<Traffic>) -> Self {
        self.traffic = traffic;
        self
    }

    fn with_channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }

    fn send(&self, msg: &ToWorker) {
        if let (Some(out), Ok(bytes)) = (&self.out, encode(msg)) {
            let _ = out.send(Outgoing::Message(bytes));
        }
    }

    fn lose(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.lost {
            return;
        }
        self.lost = true;
        if self.in_flight.is_empty() {
            tracing::info!(worker = %self.identity.name, %reason, "idle worker left");
        } else {
            tracing::warn!(worker = %self.identity.name, %reason, tasks = self.in_flight.len(), "worker lost");
        }
        if let Some(id) = self.id {
            self.scheduler.do_send(WorkerLost {
                worker: id,
                unfinished: self.in_flight.take_all(),
                ran: true,
                reason,
            });
        }
        // The proxy stays until the scheduler forgets the worker, handing back
        // whatever it is still given; a minute at most if that never comes.
        ctx.run_later(Duration::from_secs(60), |_, ctx| ctx.stop());
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct FromConn(FromWorker);

#[derive(Message)]
#[rtype(result = "()")]
struct ConnClosed(String);

/// Asks the proxy to end its worker (the runtime is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownWorker;

impl Actor for RemoteWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let std_stream = self.stream.take().expect("stream given");
        let stream = match tokio::net::TcpStream::from_std(std_stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%e, "cannot adopt the worker connection");
                ctx.stop();
                return;
            }
        };
        let (rd, wr) = stream.into_split();
        let mut rd = Counted::new(rd, self.traffic.clone());
        let mut wr = Counted::new(wr, self.traffic.clone());
        let Channel {
            mut outbound,
            mut inbound,
            max_message,
        } = self.channel.take().expect("channel given");
        let group_bytes = self.send_group_bytes;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
        self.out = Some(tx);
        let me = ctx.address();
        let progress = me.clone();
        let writer_me = me.clone();
        actix_rt::spawn(async move {
            // Each frame of a long message counts as a sign of life.
            let mut alive = move || progress.do_send(Progress);
            loop {
                match inbound
                    .read_msg_with::<_, FromWorker>(&mut rd, max_message, None, &mut alive)
                    .await
                {
                    Ok(m) => me.do_send(FromConn(m)),
                    Err(e) => {
                        me.do_send(ConnClosed(e.to_string()));
                        break;
                    }
                }
            }
        });
        actix_rt::spawn(async move {
            // Frames are sealed here, in the order they are written; a long
            // message streams in several. Tasks with data are encoded on a
            // blocking thread straight into their frames as those are written
            // (`write_streamed`: a 256 MiB partition is never one 256 MiB
            // message here), with heartbeats until the first frame; the
            // messages after them wait, so order holds. Ticks missed while idle
            // are skipped, never sent in a burst.
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            // A batch of tasks goes in groups of about `group_bytes` of data, one
            // message each.
            while let Some(outgoing) = rx.recv().await {
                let groups = match outgoing {
                    Outgoing::Message(m) => {
                        if outbound.write_message(&mut wr, m).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Outgoing::Tasks(tasks) => group_by_bytes(tasks, group_bytes),
                };
                for group in groups {
                    let sent = send_tasks(&mut outbound, &mut wr, group, max_message, &mut beat);
                    let oversized = match sent.await {
                        Ok(oversized) => oversized,
                        Err(e) => {
                            writer_me.do_send(ConnClosed(format!("cannot send tasks: {e}")));
                            return;
                        }
                    };
                    if !oversized.is_empty() {
                        writer_me.do_send(Oversized(oversized));
                    }
                }
            }
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.send(&ToWorker::Heartbeat);
            if act.last_seen.elapsed() > act.heartbeat_timeout {
                let reason = format!("no heartbeat for {:?}", act.heartbeat_timeout);
                act.lose(reason, ctx);
            }
        });
        let identity = self.identity.clone();
        self.scheduler
            .send(AddWorker {
                name: identity.name,
                resources: identity.resources,
                addr: ctx.address().recipient(),
                queue: identity.queue,
                job: identity.job,
                label: identity.label,
                remote: true,
                release: Some(ctx.address().recipient()),
                forget: Some(ctx.address().recipient()),
                memory: identity.memory,
                peer: identity.peer,
            })
            .into_actor(self)
            .then(|id, act, ctx| {
                match id {
                    Ok(id) => act.id = Some(id),
                    Err(_) => ctx.stop(),
                }
                fut::ready(())
            })
            .wait(ctx);
    }
}

impl Handler<RunTasks> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, msg: RunTasks, _ctx: &mut Context<Self>) {
        if self.lost {
            // Too late for this worker: hand the tasks straight back.
            if let Some(id) = self.id {
                self.scheduler.do_send(WorkerLost {
                    worker: id,
                    unfinished: msg.0,
                    ran: false,
                    reason: "worker already lost".into(),
                });
            }
            return;
        }
        // Kept until the worker reports them; encoded and sent by the writer.
        let tasks: Vec<TaskEnvelope> = msg.0.to_vec();
        for e in msg.0 {
            self.in_flight.push(e);
        }
        if let Some(out) = &self.out {
            let _ = out.send(Outgoing::Tasks(tasks));
        }
    }
}

impl Handler<Oversized> for RemoteWorker {
    type Result = ();

    /// A task too big for any message never left: it comes back as such, and
    /// its run fails naming the step and partition (no worker could take it).
    fn handle(&mut self, msg: Oversized, _ctx: &mut Context<Self>) {
        let too_large: Vec<TaskOutcome> = msg
            .0
            .into_iter()
            .filter_map(|(key, size)| {
                let e = self.in_flight.take(key.0, key.1)?;
                Some(too_large_outcome(e, size, self.max_message))
            })
            .collect();
        if let (Some(id), false) = (self.id, too_large.is_empty()) {
            self.scheduler.do_send(TasksDone {
                worker: id,
                outcomes: too_large,
            });
        }
    }
}

impl Handler<FromConn> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, msg: FromConn, _ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
        match msg.0 {
            FromWorker::Done(outcomes) => {
                let mut done = Vec::with_capacity(outcomes.len());
                for o in outcomes {
                    // Only tasks this worker still holds count: never a duplicate.
                    if let Some(env) = self.in_flight.take(o.run, o.task) {
                        let mut outcome = outcome_from_wire(o);
                        if let Some(id) = self.id {
                            outcome.name_holder(id);
                        }
                        outcome.hand_contribution(env.contribute_to.as_ref());
                        done.push(outcome);
                    }
                }
                if let (Some(id), false) = (self.id, done.is_empty()) {
                    self.scheduler.do_send(TasksDone {
                        worker: id,
                        outcomes: done,
                    });
                }
            }
            FromWorker::Released(parts) => {
                if let Some(id) = self.id {
                    self.scheduler
                        .do_send(PartitionsReturned { worker: id, parts });
                }
            }
            FromWorker::InputsFetched(run, fit) => {
                self.scheduler.do_send(FitInputsFetched { run, fit });
            }
            FromWorker::Heartbeat => {}
        }
    }
}

impl Handler<ReleaseHeld> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, msg: ReleaseHeld, _ctx: &mut Context<Self>) {
        if !msg.parts.is_empty() {
            self.send(&if msg.discard {
                ToWorker::Discard(msg.parts)
            } else {
                ToWorker::Release(msg.parts)
            });
        }
        if !msg.drop_inputs.is_empty() {
            self.send(&ToWorker::DropInputs(msg.drop_inputs));
        }
    }
}

impl Handler<ConnClosed> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, msg: ConnClosed, ctx: &mut Context<Self>) {
        self.lose(msg.0, ctx);
    }
}

impl Handler<ForgetWorker> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, _msg: ForgetWorker, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<ShutdownWorker> for RemoteWorker {
    type Result = ();

    fn handle(&mut self, _msg: ShutdownWorker, _ctx: &mut Context<Self>) {
        self.send(&ToWorker::Shutdown);
    }
}
