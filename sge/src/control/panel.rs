//! The cluster's part of the dashboard: its jobs per queue and its scaling
//! decisions, read from the cluster controller.

use crate::control::adaptive::GetAdaptReport;
use crate::control::controller::{ClusterController, Status};
use actix::Addr;
use futures::future::BoxFuture;
use gridpipe_runtime::dashboard::view::{ClusterView, DecisionRow, JobPhase, JobRow};
use gridpipe_runtime::dashboard::ClusterPanel;

/// Shows a cluster controller on the dashboard.
pub struct ControllerPanel(pub Addr<ClusterController>);

impl ClusterPanel for ControllerPanel {
    fn view(&self) -> BoxFuture<'static, ClusterView> {
        let addr = self.0.clone();
        Box::pin(async move {
            let (Ok(status), Ok(report)) =
                futures::join!(addr.send(Status), addr.send(GetAdaptReport))
            else {
                return ClusterView::default();
            };
            let mut jobs = Vec::new();
            for (label, q) in &status.queues {
                let rows = [
                    (JobPhase::Pending, &q.jobs.pending),
                    (JobPhase::Running, &q.jobs.running),
                    (JobPhase::Failed, &q.jobs.failed),
                ];
                for (state, ids) in rows {
                    jobs.extend(ids.iter().map(|id| JobRow {
                        queue: label.clone(),
                        grid_queue: q.queue.clone(),
                        job: id.to_string(),
                        state,
                    }));
                }
            }
            let skip = report.decisions.len().saturating_sub(200);
            let decisions = report.decisions[skip..]
                .iter()
                .map(|d| DecisionRow {
                    at_s: d.at_s,
                    queue: d.label.clone(),
                    action: format!("{:?}", d.action),
                    reason: d.reason.clone(),
                    latency_s: d.latency_s,
                    error: d.error.clone(),
                })
                .collect();
            ClusterView { jobs, decisions }
        })
    }
}
