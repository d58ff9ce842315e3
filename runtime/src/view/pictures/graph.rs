//! A run's task graph: stages (fused steps over every partition) in columns,
//! partitions in rows, fits as barriers between the stage that feeds them and
//! the stage that waits for them; resource tags on the stages and fits.

use super::escape;
use crate::report::{RunReport, TaskOp};

/// Partitions drawn one by one up to this many; beyond, the first few, an
/// ellipsis and the last one.
const MAX_ROWS: usize = 12;

/// A column of the picture.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Column {
    Stage(usize),
    Fit(usize),
}

/// Stages and fits in the order they run.
fn columns(report: &RunReport) -> Vec<Column> {
    let stages = report
        .labels
        .iter()
        .take_while(|l| l.op == TaskOp::Transform)
        .count();
    let mut out = Vec::new();
    for s in 0..stages {
        if let Some(f) = report.labels[s].after_fit {
            if !out.contains(&Column::Fit(f)) {
                out.push(Column::Fit(f));
            }
        }
        out.push(Column::Stage(s));
        if let Some(f) = report.labels[s].feeds_fit {
            if !out.contains(&Column::Fit(f)) {
                out.push(Column::Fit(f));
            }
        }
    }
    out
}

/// The partition rows drawn: `Some(p)` a partition, `None` the ellipsis.
fn rows(partitions: usize) -> Vec<Option<usize>> {
    if partitions <= MAX_ROWS {
        (0..partitions).map(Some).collect()
    } else {
        let mut r: Vec<Option<usize>> = (0..MAX_ROWS - 2).map(Some).collect();
        r.push(None);
        r.push(Some(partitions - 1));
        r
    }
}

fn stage_title(report: &RunReport, s: usize) -> String {
    let l = &report.labels[s];
    let mut t = if l.steps.is_empty() {
        "(feeds a fit)".to_string()
    } else {
        l.step_names()
    };
    if !l.resources.is_empty() {
        t.push_str(&format!(" {}", l.resources));
    }
    t
}

fn fit_title(report: &RunReport, f: usize) -> String {
    let stages = report.labels.len() - report.labels.iter().filter(|l| l.op == TaskOp::Fit).count();
    let l = &report.labels[stages + f];
    let mut t = format!("fit {}", l.step_names());
    if !l.resources.is_empty() {
        t.push_str(&format!(" {}", l.resources));
    }
    t
}

/// The run's task graph in Graphviz DOT (render with `dot -Tsvg`).
pub fn graph_dot(report: &RunReport) -> String {
    let cols = columns(report);
    let rows = rows(report.partitions);
    let node = |c: Column, r: Option<usize>| match (c, r) {
        (Column::Fit(f), _) => format!("fit{f}"),
        (Column::Stage(s), Some(p)) => format!("s{s}p{p}"),
        (Column::Stage(s), None) => format!("s{s}more"),
    };
    let mut out = String::from(
        "digraph run {\n  rankdir=LR;\n  node [shape=box, fontsize=10, style=rounded];\n",
    );
    for &c in &cols {
        match c {
            Column::Stage(s) => {
                out.push_str(&format!(
                    "  subgraph cluster_stage{s} {{\n    label=\"stage {s}: {}\";\n",
                    escape(&stage_title(report, s))
                ));
                for &r in &rows {
                    let label = r.map_or(format!("... {} partitions", report.partitions), |p| {
                        format!("partition {p}")
                    });
                    out.push_str(&format!("    {} [label=\"{label}\"];\n", node(c, r)));
                }
                out.push_str("  }\n");
            }
            Column::Fit(f) => out.push_str(&format!(
                "  {} [label=\"{}\", shape=doubleoctagon, style=filled, fillcolor=\"#f5d491\"];\n",
                node(c, None),
                escape(&fit_title(report, f))
            )),
        }
    }
    for pair in cols.windows(2) {
        for &r in &rows {
            let (a, b) = (pair[0], pair[1]);
            let edge = match (a, b) {
                (Column::Fit(_), Column::Fit(_)) => continue,
                (Column::Fit(_), _) | (_, Column::Fit(_)) => {
                    format!("  {} -> {};\n", node(a, r), node(b, r))
                }
                _ => format!("  {} -> {};\n", node(a, r), node(b, r)),
            };
            if !out.contains(&edge) {
                out.push_str(&edge);
            }
        }
    }
    // A stage after a fit also reads its partition from the stage before the fit.
    for (i, &c) in cols.iter().enumerate() {
        if let (Column::Fit(_), Some(Column::Stage(before)), Some(Column::Stage(after))) = (
            c,
            i.checked_sub(1).map(|j| cols[j]),
            cols.get(i + 1).copied(),
        ) {
            for &r in &rows {
                out.push_str(&format!(
                    "  {} -> {} [style=dashed];\n",
                    node(Column::Stage(before), r),
                    node(Column::Stage(after), r)
                ));
            }
        }
    }
    out.push_str("}\n");
    out
}

/// The run's task graph as an SVG picture.
pub fn graph_svg(report: &RunReport) -> String {
    let cols = columns(report);
    let rows = rows(report.partitions);
    let (col_w, box_w, row_h, box_h, top, left) = (190.0, 160.0, 30.0, 22.0, 64.0, 20.0);
    let width = left * 2.0 + col_w * cols.len().max(1) as f64;
    let height = top + row_h * rows.len().max(1) as f64 + 20.0;
    let x_of = |i: usize| left + col_w * i as f64;
    let y_of = |r: usize| top + row_h * r as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
         <text x=\"{left}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">run {} ({} partitions, {} samples)</text>\n",
        escape(&report.run_id),
        report.partitions,
        report.samples
    );
    // Edges first, under the boxes.
    for i in 0..cols.len().saturating_sub(1) {
        for (r, _) in rows.iter().enumerate() {
            let (x1, x2) = (x_of(i) + box_w, x_of(i + 1));
            let y = y_of(r) + box_h / 2.0;
            let (y1, y2) = match (cols[i], cols[i + 1]) {
                (Column::Fit(_), _) => (top + row_h * rows.len() as f64 / 2.0, y),
                (_, Column::Fit(_)) => (y, top + row_h * rows.len() as f64 / 2.0),
                _ => (y, y),
            };
            out.push_str(&format!(
                "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#8a93a6\" stroke-width=\"1\"/>\n"
            ));
        }
    }
    for (i, &c) in cols.iter().enumerate() {
        let x = x_of(i);
        match c {
            Column::Stage(s) => {
                out.push_str(&format!(
                    "<text x=\"{x}\" y=\"{}\" font-weight=\"bold\">stage {s}</text>\n<text x=\"{x}\" y=\"{}\">{}</text>\n",
                    top - 26.0,
                    top - 10.0,
                    escape(&stage_title(report, s))
                ));
                for (r, p) in rows.iter().enumerate() {
                    let y = y_of(r);
                    let text = p.map_or(format!("... {} partitions", report.partitions), |p| {
                        format!("partition {p}")
                    });
                    out.push_str(&format!(
                        "<rect x=\"{x}\" y=\"{y}\" width=\"{box_w}\" height=\"{box_h}\" rx=\"4\" fill=\"#dcecf9\" stroke=\"#5b8cc7\"/>\n\
                         <text x=\"{}\" y=\"{}\">{text}</text>\n",
                        x + 6.0,
                        y + 15.0
                    ));
                }
            }
            Column::Fit(f) => {
                let h = row_h * rows.len() as f64 - (row_h - box_h);
                out.push_str(&format!(
                    "<rect x=\"{x}\" y=\"{top}\" width=\"{box_w}\" height=\"{h}\" rx=\"6\" fill=\"#f5d491\" stroke=\"#b58a1b\"/>\n\
                     <text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>\n\
                     <text x=\"{}\" y=\"{}\">barrier: every partition</text>\n",
                    x + 8.0,
                    top + h / 2.0 - 4.0,
                    escape(&fit_title(report, f)),
                    x + 8.0,
                    top + h / 2.0 + 12.0
                ));
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TaskLabel;
    use crate::resources::Resources;

    fn report(partitions: usize) -> RunReport {
        let stage = |steps: &[&str], after, feeds| TaskLabel {
            op: TaskOp::Transform,
            steps: steps.iter().map(|s| s.to_string()).collect(),
            resources: Resources::none(),
            after_fit: after,
            feeds_fit: feeds,
        };
        RunReport {
            run_id: "r1".into(),
            labels: vec![
                stage(&["a"], None, Some(0)),
                stage(&["b"], Some(0), None),
                TaskLabel {
                    op: TaskOp::Fit,
                    steps: vec!["b".into()],
                    resources: Resources::one("gpu", 1),
                    after_fit: None,
                    feeds_fit: None,
                },
            ],
            tasks: Vec::new(),
            workers: Vec::new(),
            partitions,
            samples: partitions * 2,
            failed: Vec::new(),
            checkpoints: Default::default(),
            loaded_models: Vec::new(),
            workers_lost: 0,
            wall_s: 0.0,
        }
    }

    #[test]
    fn a_fit_sits_between_the_stage_feeding_it_and_the_stage_after_it() {
        let r = report(3);
        assert_eq!(
            columns(&r),
            vec![Column::Stage(0), Column::Fit(0), Column::Stage(1)]
        );
        let dot = graph_dot(&r);
        assert!(dot.contains("s0p2 -> fit0;"), "{dot}");
        assert!(dot.contains("fit0 -> s1p2;"), "{dot}");
        assert!(dot.contains("fit b {gpu: 1}"), "{dot}");
        assert!(dot.contains("s0p1 -> s1p1 [style=dashed];"), "{dot}");
        let svg = graph_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("fit b {gpu: 1}") && svg.contains("partition 2"));
    }

    #[test]
    fn many_partitions_are_drawn_with_an_ellipsis() {
        let r = report(1000);
        let svg = graph_svg(&r);
        assert!(svg.contains("... 1000 partitions"));
        assert!(svg.contains("partition 999"));
        assert!(!svg.contains("partition 500<"));
        assert!(svg.len() < 40_000, "{} bytes", svg.len());
    }
}
