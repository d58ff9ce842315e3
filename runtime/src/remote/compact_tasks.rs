//! Compact wire forms ([`crate::wire::compact`]) of a tiny chain task and of
//! its result: the few numbers the scheduler and the worker exchange about it,
//! then its partition's batch in the batch's own compact form.
//!
//! A task (all numbers little-endian): the form's version (1 byte), the run
//! (u32), the stage (u16) and partition (u32), when it became ready (f64), the
//! stage's index in the message (u32), flags (1 byte: hold, keep the fit's
//! rows, input held on the worker), the fewest bytes to hold (u64), then the
//! input batch unless the worker holds it.
//!
//! A result: the version, the run, the stage and partition, when it became
//! ready and how long it ran (f64 each), the samples that failed in it (u32),
//! whether the output stayed on the worker (1 byte), then the output batch.
//!
//! Only a chain task with no resources and its input sent along or held (a
//! fetch from a peer goes as fields), and only a chain's result with nothing
//! but its batch (no failed sample shown, no checkpoint figures, no
//! contribution) have this form.

use super::protocol::WireOutcome;
use super::protocol::{WirePayload, WireResult, WireTask};
use crate::actors::messages::{ChainInput, TaskKind};
use crate::batch::Batch;
use crate::exec::ChainOutput;
use crate::resources::Resources;
use crate::wire::compact::{ByteReader, Compact};
use serde::{Deserializer, Serializer};
use std::sync::Arc;

/// The forms' version byte.
const VERSION: u8 = 1;
/// Task flags.
const HOLD: u8 = 1;
const KEEP_FIT_INPUT: u8 = 2;
const INPUT_HELD: u8 = 4;

/// What a compact task and its result both begin with (after the version).
struct Head {
    run: u32,
    stage: u16,
    partition: u32,
    ready_s: f64,
}

impl Head {
    /// The head of a chain task of `run` (a fit has no compact form).
    fn of(run: u32, task: TaskKind, ready_s: f64) -> Option<Head> {
        match task {
            TaskKind::Chain { stage, partition } => Some(Head {
                run,
                stage,
                partition,
                ready_s,
            }),
            TaskKind::Fit { .. } => None,
        }
    }

    /// Appends the version and the head; returns where it began.
    fn write(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.push(VERSION);
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.stage.to_le_bytes());
        out.extend_from_slice(&self.partition.to_le_bytes());
        out.extend_from_slice(&self.ready_s.to_le_bytes());
        start
    }

    fn read(r: &mut ByteReader<'_>) -> Result<Head, String> {
        r.version(VERSION)?;
        Ok(Head {
            run: r.u32("its run")?,
            stage: r.u16("its stage")?,
            partition: r.u32("its partition")?,
            ready_s: r.f64("its ready time")?,
        })
    }

    fn task(&self) -> TaskKind {
        TaskKind::Chain {
            stage: self.stage,
            partition: self.partition,
        }
    }
}

/// Appends `batch`'s compact form, the last part of a compact task or result;
/// a batch without one leaves `out` as it was at `start` (the value then goes
/// as fields).
fn ends_with_batch(out: &mut Vec<u8>, start: usize, batch: &Batch) -> bool {
    if batch.write_compact(out) {
        return true;
    }
    out.truncate(start);
    false
}

impl Compact for WireTask {
    const NAME: &'static str = "task";

    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        let (
            Some(head),
            WirePayload::Chain {
                input,
                stage: stage_index,
                hold,
                hold_min_bytes,
                keep_fit_input,
            },
        ) = (Head::of(self.run, self.task, self.ready_s), &self.payload)
        else {
            return false;
        };
        let batch = match input {
            ChainInput::Here(batch) => Some(batch),
            ChainInput::Held => None,
            ChainInput::Peer { .. } => return false,
        };
        if !self.resources.is_empty() {
            return false;
        }
        let start = head.write(out);
        out.extend_from_slice(&stage_index.to_le_bytes());
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(*hold, HOLD)
            | flag(*keep_fit_input, KEEP_FIT_INPUT)
            | flag(batch.is_none(), INPUT_HELD);
        out.push(flags);
        out.extend_from_slice(&hold_min_bytes.to_le_bytes());
        match batch {
            Some(batch) => ends_with_batch(out, start, batch),
            None => true,
        }
    }

    fn read_compact(bytes: &[u8]) -> Result<Self, String> {
        let mut r = ByteReader::new(bytes, Self::NAME);
        let head = Head::read(&mut r)?;
        let stage_index = r.u32("its stage's index")?;
        let flags = r.u8("its flags")?;
        let hold_min_bytes = r.u64("its fewest bytes to hold")?;
        if flags & !(HOLD | KEEP_FIT_INPUT | INPUT_HELD) != 0 {
            return Err(format!(
                "a compact task with the unknown flags {flags:#04x}"
            ));
        }
        let input = match flags & INPUT_HELD {
            0 => ChainInput::Here(Arc::new(Batch::read_compact(r.rest())?)),
            _ => ChainInput::Held,
        };
        r.finish()?;
        Ok(WireTask {
            run: head.run,
            task: head.task(),
            resources: Resources::none(),
            ready_s: head.ready_s,
            payload: WirePayload::Chain {
                input,
                stage: stage_index,
                hold: flags & HOLD != 0,
                hold_min_bytes,
                keep_fit_input: flags & KEEP_FIT_INPUT != 0,
            },
        })
    }

    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireTask::serialize(self, s)
    }

    fn deserialize_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WireTask::deserialize(d)
    }
}

impl Compact for WireOutcome {
    const NAME: &'static str = "task result";

    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        let (Some(head), WireResult::Chain(c)) =
            (Head::of(self.run, self.task, self.ready_s), &self.result)
        else {
            return false;
        };
        let plain = self.resources.is_empty()
            && c.first_failed.is_empty()
            && c.checkpoints.is_empty()
            && c.contribution.is_none();
        let Some(new_failures) = u32::try_from(c.new_failures).ok().filter(|_| plain) else {
            return false;
        };
        let start = head.write(out);
        out.extend_from_slice(&self.run_s.to_le_bytes());
        out.extend_from_slice(&new_failures.to_le_bytes());
        out.push(u8::from(c.held));
        ends_with_batch(out, start, &c.batch)
    }

    fn read_compact(bytes: &[u8]) -> Result<Self, String> {
        let mut r = ByteReader::new(bytes, Self::NAME);
        let head = Head::read(&mut r)?;
        let run_s = r.f64("its running time")?;
        let new_failures = r.u32("its failed samples")? as usize;
        let held = match r.u8("whether it stayed")? {
            0 => false,
            1 => true,
            other => return Err(format!("a compact task result with held = {other}")),
        };
        let batch = Arc::new(Batch::read_compact(r.rest())?);
        r.finish()?;
        Ok(WireOutcome {
            run: head.run,
            task: head.task(),
            resources: Resources::none(),
            ready_s: head.ready_s,
            run_s,
            result: WireResult::Chain(ChainOutput {
                batch,
                new_failures,
                first_failed: Vec::new(),
                held,
                checkpoints: Vec::new(),
                contribution: None,
            }),
        })
    }

    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireOutcome::serialize(self, s)
    }

    fn deserialize_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WireOutcome::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Contribution;
    use crate::wire::blocks::BLOCK_MIN;
    use ndarray::ArrayD;

    fn batch(rows: usize, width: usize) -> Arc<Batch> {
        let keys = (0..rows).map(|i| format!("k{i}")).collect();
        let data = ArrayD::from_shape_fn(ndarray::IxDyn(&[rows, width]), |i| i[1] as f64 + 0.25);
        Arc::new(Batch::from_parts(keys, data))
    }

    fn task(input: ChainInput, resources: Resources) -> WireTask {
        WireTask {
            run: 7,
            task: TaskKind::Chain {
                stage: 3,
                partition: 123_456,
            },
            resources,
            ready_s: 1.5,
            payload: WirePayload::Chain {
                input,
                stage: 2,
                hold: true,
                hold_min_bytes: 1 << 40,
                keep_fit_input: true,
            },
        }
    }

    fn outcome(output: ChainOutput) -> WireOutcome {
        WireOutcome {
            run: 7,
            task: TaskKind::Chain {
                stage: 3,
                partition: 9,
            },
            resources: Resources::none(),
            ready_s: 0.125,
            run_s: 3e-6,
            result: WireResult::Chain(output),
        }
    }

    fn output(batch: Arc<Batch>) -> ChainOutput {
        ChainOutput {
            batch,
            new_failures: 2,
            first_failed: Vec::new(),
            held: true,
            checkpoints: Vec::new(),
            contribution: None,
        }
    }

    /// Encodes as the wire does; returns the bytes and whether they are the
    /// compact form (a MessagePack byte string).
    fn wire<T: serde::Serialize>(value: &T) -> (Vec<u8>, bool) {
        let bytes = rmp_serde::to_vec(value).unwrap();
        let compact = matches!(bytes[0], 0xc4..=0xc6);
        (bytes, compact)
    }

    /// Reads `bytes` back and says whether the value is the one encoded (by
    /// its full debug text: every field, every key and value).
    fn reads_back<T: serde::de::DeserializeOwned + std::fmt::Debug>(value: &T, bytes: &[u8]) {
        let back: T = rmp_serde::from_slice(bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
    }

    #[test]
    fn tiny_chain_tasks_go_compact_and_read_back_the_same() {
        for t in [
            task(ChainInput::Here(batch(1, 1)), Resources::none()),
            task(ChainInput::Here(batch(4, 3)), Resources::none()),
            task(ChainInput::Held, Resources::none()),
        ] {
            let (bytes, compact) = wire(&t);
            assert!(compact, "{t:?} went as fields");
            reads_back(&t, &bytes);
        }
    }

    #[test]
    fn other_tasks_keep_their_fields_form_and_read_back_the_same() {
        let peer = ChainInput::Peer {
            addr: "10.0.0.2:4000".into(),
            holder: 3,
        };
        let big = batch(1, BLOCK_MIN / 8);
        for t in [
            task(ChainInput::Here(batch(1, 1)), Resources::one("gpu", 1)),
            task(peer, Resources::none()),
            task(ChainInput::Here(big), Resources::none()),
        ] {
            let (bytes, compact) = wire(&t);
            assert!(!compact, "{t:?} went compact");
            reads_back(&t, &bytes);
        }
    }

    #[test]
    fn results_with_only_a_batch_go_compact_the_others_as_fields() {
        for (o, want_compact) in [
            (outcome(output(batch(1, 2))), true),
            (outcome(output(Arc::new(Batch::empty()))), true),
            (
                outcome(ChainOutput {
                    checkpoints: vec![("scaler".into(), Default::default())],
                    ..output(batch(1, 2))
                }),
                false,
            ),
            (
                outcome(ChainOutput {
                    contribution: Some(Contribution::Failed("no".into())),
                    ..output(batch(1, 2))
                }),
                false,
            ),
            (outcome(output(batch(1, BLOCK_MIN / 8))), false),
        ] {
            let (bytes, compact) = wire(&o);
            assert_eq!(compact, want_compact, "{o:?}");
            reads_back(&o, &bytes);
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the readers: a value or an error. Bytes
        /// that begin like a real task or result (its version byte, a valid
        /// head) reach the batch reader too.
        #[test]
        fn arbitrary_bytes_give_a_value_or_an_error(
            mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            real_head in proptest::prelude::any::<bool>(),
        ) {
            let mut t = Vec::new();
            task(ChainInput::Held, Resources::none()).write_compact(&mut t);
            if real_head && bytes.len() >= t.len() {
                bytes[..t.len()].copy_from_slice(&t);
                bytes[t.len() - 9] &= !INPUT_HELD;
            }
            let _ = WireTask::read_compact(&bytes);
            let _ = WireOutcome::read_compact(&bytes);
            let _ = Batch::read_compact(&bytes);
        }

        /// Tasks and results of any plain small batch read back as written.
        #[test]
        fn any_plain_small_task_and_result_reads_back(
            rows in 0usize..5,
            width in 0usize..5,
            run in proptest::prelude::any::<u32>(),
            partition in proptest::prelude::any::<u32>(),
            ready_s in proptest::prelude::any::<f64>(),
            hold in proptest::prelude::any::<bool>(),
        ) {
            let mut t = task(ChainInput::Here(batch(rows, width)), Resources::none());
            t.run = run;
            t.task = TaskKind::Chain { stage: 1, partition };
            t.ready_s = ready_s;
            if let WirePayload::Chain { hold: h, .. } = &mut t.payload {
                *h = hold;
            }
            let (bytes, compact) = wire(&t);
            proptest::prop_assert!(compact);
            reads_back(&t, &bytes);
            let mut o = outcome(output(batch(rows, width)));
            o.run = run;
            o.ready_s = ready_s;
            let (bytes, compact) = wire(&o);
            proptest::prop_assert!(compact);
            reads_back(&o, &bytes);
        }
    }

    #[test]
    fn damaged_compact_tasks_and_results_are_refused_with_a_reason() {
        let mut t = Vec::new();
        assert!(task(ChainInput::Here(batch(2, 2)), Resources::none()).write_compact(&mut t));
        let mut o = Vec::new();
        assert!(outcome(output(batch(2, 2))).write_compact(&mut o));
        for cut in 0..t.len() {
            assert!(WireTask::read_compact(&t[..cut]).is_err(), "cut at {cut}");
        }
        for cut in 0..o.len() {
            assert!(
                WireOutcome::read_compact(&o[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let flags_at = 1 + 4 + 2 + 4 + 8 + 4;
        let mut bad_flags = t.clone();
        bad_flags[flags_at] |= 0x80;
        let e = WireTask::read_compact(&bad_flags).unwrap_err();
        assert!(e.contains("unknown flags"), "{e}");
        let held_at = 1 + 4 + 2 + 4 + 8 + 8 + 4;
        let mut bad_held = o.clone();
        bad_held[held_at] = 2;
        let e = WireOutcome::read_compact(&bad_held).unwrap_err();
        assert!(e.contains("held = 2"), "{e}");
        let mut version = o.clone();
        version[0] = 3;
        let e = WireOutcome::read_compact(&version).unwrap_err();
        assert!(e.contains("task result of form 3"), "{e}");
        // A held input has no batch after it: a byte there is one too many.
        let mut held = Vec::new();
        assert!(task(ChainInput::Held, Resources::none()).write_compact(&mut held));
        held.push(0);
        let e = WireTask::read_compact(&held).unwrap_err();
        assert!(e.contains("1 bytes after its end"), "{e}");
    }
}
