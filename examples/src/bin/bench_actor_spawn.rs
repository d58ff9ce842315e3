//! What one actix actor per partition would cost: start an actor, send it one
//! message, let it report back and stop, N times on one arbiter. Prints one JSON line.
//! (This figure is why partitions are state machines in the scheduler, not actors.)

use actix::prelude::*;
use clap::Parser;
use std::time::Instant;

/// Actor start/stop cost.
#[derive(Parser, Debug)]
struct Args {
    /// Number of actors.
    #[arg(long, default_value_t = 200_000)]
    actors: usize,
}

struct Partition {
    sink: Recipient<Done>,
}

impl Actor for Partition {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Go;

#[derive(Message)]
#[rtype(result = "()")]
struct Done;

impl Handler<Go> for Partition {
    type Result = ();
    fn handle(&mut self, _: Go, ctx: &mut Context<Self>) {
        self.sink.do_send(Done);
        ctx.stop();
    }
}

struct Counter {
    left: usize,
    start: Instant,
    reply: Option<tokio::sync::oneshot::Sender<f64>>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Done> for Counter {
    type Result = ();
    fn handle(&mut self, _: Done, _: &mut Context<Self>) {
        self.left -= 1;
        if self.left == 0 {
            if let Some(r) = self.reply.take() {
                let _ = r.send(self.start.elapsed().as_secs_f64());
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let n = args.actors;
    let total = System::new().block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let counter = Counter {
            left: n,
            start: Instant::now(),
            reply: Some(tx),
        }
        .start();
        for _ in 0..n {
            let p = Partition {
                sink: counter.clone().recipient(),
            }
            .start();
            p.do_send(Go);
        }
        rx.await.expect("all actors reported")
    });
    let line = serde_json::json!({
        "bench": "actor_spawn",
        "actors": n,
        "wall_s": total,
        "us_per_actor": total * 1e6 / n as f64,
    });
    println!("{line}");
}
