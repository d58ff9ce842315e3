//! Tests of the queue actor against the fake batch system.

use super::*;
use crate::batch_system::fake::FakeBatchSystem;
use std::path::PathBuf;

fn template() -> JobTemplate {
    JobTemplate {
        name: "gridpipe-worker".into(),
        program: PathBuf::from("/opt/app/bin/app"),
        scheduler_addr: "10.0.0.1:7000".into(),
        secret_file: PathBuf::from("/shared/secret"),
        log_dir: PathBuf::from("/shared/logs"),
        hold: false,
    }
}

fn actor(fake: &Arc<FakeBatchSystem>, max_jobs: Option<u32>) -> Addr<QueueActor> {
    let mut spec = QueueSpec::new("q_1day");
    spec.max_jobs = max_jobs;
    QueueActor::new("default", spec, fake.clone(), template()).start()
}

#[actix_rt::test]
async fn scales_within_its_own_queue_and_max_jobs() {
    let fake = Arc::new(FakeBatchSystem::new());
    let q = actor(&fake, Some(4));
    let c = q.send(ScaleTo(3)).await.unwrap().unwrap();
    assert_eq!(c.submitted.len(), 3);
    assert_eq!(fake.submissions(), 3);
    assert!(fake
        .jobs()
        .iter()
        .all(|j| j.queue.as_deref() == Some("q_1day")));
    let c = q.send(ScaleTo(10)).await.unwrap().unwrap();
    assert_eq!(c.submitted.len(), 1, "capped at max_jobs = 4");
    assert_eq!(q.send(Jobs).await.unwrap().active(), 4);
}

#[actix_rt::test]
async fn shrinking_deletes_pending_jobs_first_then_the_newest_running() {
    let fake = Arc::new(FakeBatchSystem::new());
    let q = actor(&fake, None);
    let ids = q.send(ScaleTo(4)).await.unwrap().unwrap().submitted;
    fake.set_state(&ids[0], JobState::Running);
    fake.set_state(&ids[1], JobState::Running);
    let seen = q.send(Refresh).await.unwrap().unwrap();
    assert_eq!((seen.pending.len(), seen.running.len()), (2, 2));
    let c = q.send(ScaleTo(1)).await.unwrap().unwrap();
    assert_eq!(
        c.deleted,
        vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]
    );
    let left = q.send(Jobs).await.unwrap();
    assert_eq!(left.running, vec![ids[0].clone()]);
    assert!(left.pending.is_empty());
}

#[actix_rt::test]
async fn finished_jobs_leave_and_failed_submissions_are_errors() {
    let fake = Arc::new(FakeBatchSystem::new());
    let q = actor(&fake, None);
    let ids = q.send(ScaleTo(2)).await.unwrap().unwrap().submitted;
    fake.set_state(&ids[0], JobState::Finished);
    let seen = q.send(Refresh).await.unwrap().unwrap();
    assert_eq!(seen.active(), 1);
    fake.fail_next_submits(1);
    assert!(q.send(ScaleTo(3)).await.unwrap().is_err());
}

#[actix_rt::test]
async fn close_deletes_every_job_and_waits_until_none_is_listed() {
    let fake = Arc::new(FakeBatchSystem::new());
    let q = actor(&fake, None);
    q.send(ScaleTo(3)).await.unwrap().unwrap();
    fake.start_pending();
    q.send(Close).await.unwrap().unwrap();
    assert!(fake.active_jobs().is_empty());
    assert_eq!(q.send(Jobs).await.unwrap().active(), 0);
}

#[actix_rt::test]
async fn a_stopped_actor_leaves_no_job_behind() {
    let fake = Arc::new(FakeBatchSystem::new());
    let q = actor(&fake, None);
    q.send(ScaleTo(2)).await.unwrap().unwrap();
    drop(q);
    for _ in 0..100 {
        if fake.active_jobs().is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        fake.active_jobs().is_empty(),
        "jobs deleted when the actor stopped"
    );
}
