//! A run's timeline: tasks per worker over time, and on a cluster the jobs per
//! queue (pending and running) against demand, with the scaling decisions marked.
//! Drawn with plotters' SVG backend (no font library needed: text is SVG text).

use crate::report::RunReport;
use plotters::prelude::*;

/// One queue's jobs at one moment, in seconds since the run started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueuePoint {
    /// Seconds since the run started (negative: before it).
    pub at_s: f64,
    /// Jobs pending.
    pub pending: usize,
    /// Jobs running.
    pub running: usize,
    /// Ready tasks the queue could serve.
    pub demand: usize,
}

/// One queue over time.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueSeries {
    /// The queue's label.
    pub label: String,
    /// Its points, oldest first.
    pub points: Vec<QueuePoint>,
}

/// A scaling decision to mark.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionMark {
    /// Seconds since the run started.
    pub at_s: f64,
    /// The queue's label.
    pub label: String,
    /// A short text (e.g. `+2`, `-1`, `retire 17`).
    pub text: String,
}

/// A cluster's jobs and decisions over a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterTimeline {
    /// Per queue.
    pub queues: Vec<QueueSeries>,
    /// Decisions.
    pub decisions: Vec<DecisionMark>,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(46, 125, 196),
    RGBColor(224, 146, 32),
    RGBColor(46, 157, 87),
    RGBColor(208, 69, 58),
    RGBColor(139, 95, 191),
    RGBColor(96, 160, 176),
    RGBColor(181, 138, 27),
    RGBColor(120, 120, 120),
];

/// The timeline as SVG: tasks per worker (coloured by stage or fit), and below,
/// when `cluster` is given, jobs per queue against demand with decisions marked.
pub fn timeline_svg(
    report: &RunReport,
    cluster: Option<&ClusterTimeline>,
) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, report, cluster).map_err(|e| format!("cannot draw the timeline: {e}"))?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    report: &RunReport,
    cluster: Option<&ClusterTimeline>,
) -> Result<(), Box<dyn std::error::Error>> {
    let workers: Vec<u32> = {
        let mut w: Vec<u32> = report.tasks.iter().map(|t| t.worker).collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    let end = report
        .tasks
        .iter()
        .map(|t| t.finished_s)
        .fold(report.wall_s, f64::max)
        .max(1e-3);
    let start = cluster
        .iter()
        .flat_map(|c| {
            c.queues
                .iter()
                .flat_map(|q| q.points.iter().map(|p| p.at_s))
        })
        .fold(0.0f64, f64::min);
    let height = if cluster.is_some() {
        720
    } else {
        140 + 28 * workers.len() as u32
    };
    let root = SVGBackend::with_string(svg, (1000, height.max(220))).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = match cluster {
        Some(_) => {
            let (a, b) = root.split_vertically(330);
            (a, Some(b))
        }
        None => (root.clone(), None),
    };
    let names: Vec<String> = workers
        .iter()
        .map(|w| {
            report
                .workers
                .get(*w as usize)
                .map(|i| match &i.queue {
                    Some(q) => format!("{} ({q})", i.name),
                    None => i.name.clone(),
                })
                .unwrap_or_else(|| format!("worker {w}"))
        })
        .collect();
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("run {}: tasks per worker", report.run_id),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(150)
        .build_cartesian_2d(start..end, -0.5f64..workers.len().max(1) as f64 - 0.5)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run started")
        .y_labels(workers.len().max(1) + 1)
        .y_label_formatter(&|y| {
            let i = y.round() as usize;
            if (*y - y.round()).abs() < 1e-9 && *y >= 0.0 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .disable_y_mesh()
        .draw()?;
    let min_w = (end - start) / 1500.0;
    chart.draw_series(report.tasks.iter().map(|t| {
        let row = workers.iter().position(|w| *w == t.worker).unwrap_or(0) as f64;
        let color = PALETTE[t.label as usize % PALETTE.len()];
        Rectangle::new(
            [
                (t.started_s, row - 0.35),
                (t.finished_s.max(t.started_s + min_w), row + 0.35),
            ],
            color.filled(),
        )
    }))?;
    for (i, label) in report.labels.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(format!("{} {}", label.op.as_str(), label.step_names()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    if let (Some(area), Some(c)) = (bottom, cluster) {
        let peak = c
            .queues
            .iter()
            .flat_map(|q| {
                q.points
                    .iter()
                    .map(|p| p.pending.max(p.running).max(p.demand))
            })
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut jobs = ChartBuilder::on(&area)
            .caption(
                "cluster jobs per queue (running, pending) and demand (ready tasks)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(150)
            .build_cartesian_2d(start..end, 0f64..peak * 1.15)?;
        jobs.configure_mesh()
            .x_desc("seconds since the run started")
            .y_desc("jobs / tasks")
            .draw()?;
        for (i, q) in c.queues.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let steps = |value: fn(&QueuePoint) -> usize| -> Vec<(f64, f64)> {
                let mut pts = Vec::new();
                for (j, p) in q.points.iter().enumerate() {
                    let next = q.points.get(j + 1).map_or(end, |n| n.at_s);
                    pts.push((p.at_s, value(p) as f64));
                    pts.push((next, value(p) as f64));
                }
                pts
            };
            jobs.draw_series(LineSeries::new(steps(|p| p.running), color.stroke_width(3)))?
                .label(format!("{} running", q.label))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(3))
                });
            jobs.draw_series(LineSeries::new(
                steps(|p| p.pending),
                color.mix(0.6).stroke_width(1),
            ))?
            .label(format!("{} pending", q.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.mix(0.6)));
            jobs.draw_series(LineSeries::new(
                steps(|p| p.demand),
                color.mix(0.3).stroke_width(1),
            ))?
            .label(format!("{} demand", q.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.mix(0.3)));
        }
        for d in &c.decisions {
            let i = c
                .queues
                .iter()
                .position(|q| q.label == d.label)
                .unwrap_or(0);
            let color = PALETTE[i % PALETTE.len()];
            jobs.draw_series(std::iter::once(PathElement::new(
                vec![(d.at_s, 0.0), (d.at_s, peak * 1.1)],
                color.mix(0.5),
            )))?;
            jobs.draw_series(std::iter::once(Text::new(
                format!("{} {}", d.label, d.text),
                (d.at_s, peak * 1.1),
                ("sans-serif", 10).into_font().color(&color),
            )))?;
        }
        jobs.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{TaskLabel, TaskOp, TaskRecord, WorkerInfo};
    use crate::resources::Resources;

    fn report() -> RunReport {
        let worker = |id: u32| WorkerInfo {
            memory: None,
            label: None,
            id,
            name: format!("w{id}"),
            resources: Resources::none(),
            queue: Some("q_1day".into()),
            job: Some(format!("{id}")),
        };
        let task = |label, worker, started_s, finished_s| TaskRecord {
            label,
            partition: Some(0),
            worker,
            ready_s: 0.0,
            started_s,
            finished_s,
            failed_samples: 0,
            error: None,
        };
        RunReport {
            run_id: "r1".into(),
            labels: vec![TaskLabel {
                op: TaskOp::Transform,
                steps: vec!["scale".into()],
                resources: Resources::none(),
                after_fit: None,
                feeds_fit: None,
            }],
            tasks: vec![task(0, 0, 0.0, 1.0), task(0, 1, 0.5, 2.0)],
            workers: vec![worker(0), worker(1)],
            partitions: 2,
            samples: 2,
            failed: Vec::new(),
            checkpoints: Default::default(),
            loaded_models: Vec::new(),
            workers_lost: 0,
            wall_s: 2.0,
        }
    }

    #[test]
    fn the_timeline_draws_each_task_and_names_the_workers() {
        let svg = timeline_svg(&report(), None).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..80]
        );
        assert!(svg.contains("w0 (q_1day)") && svg.contains("w1 (q_1day)"));
        assert!(
            svg.contains("transform scale"),
            "the legend names the stage"
        );
        assert!(svg.matches("<rect").count() >= 3, "the tasks are drawn");
    }

    #[test]
    fn the_cluster_part_shows_queues_and_decisions() {
        let c = ClusterTimeline {
            queues: vec![QueueSeries {
                label: "default".into(),
                points: vec![
                    QueuePoint {
                        at_s: -0.5,
                        pending: 1,
                        running: 0,
                        demand: 2,
                    },
                    QueuePoint {
                        at_s: 0.2,
                        pending: 0,
                        running: 2,
                        demand: 0,
                    },
                ],
            }],
            decisions: vec![DecisionMark {
                at_s: -0.5,
                label: "default".into(),
                text: "+1".into(),
            }],
        };
        let svg = timeline_svg(&report(), Some(&c)).unwrap();
        assert!(svg.contains("default running") && svg.contains("default +1"));
    }
}
