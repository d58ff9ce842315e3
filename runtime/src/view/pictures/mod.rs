//! Pictures of a run: its task graph (Graphviz DOT, or SVG drawn here) and its
//! timeline (SVG, drawn with plotters): tasks per worker over time and, on a
//! cluster, jobs per queue against demand with the scaling decisions marked.

mod graph;
mod timeline;

pub use graph::{graph_dot, graph_svg};
pub use timeline::{timeline_svg, ClusterTimeline, DecisionMark, QueuePoint, QueueSeries};

/// `text` escaped for XML (SVG) and DOT strings.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
