//! What a run produces: a human table, a JSON file with every figure, and an SVG with the
//! latency percentile curve and the throughput over time.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::invariant::Verdict;
use crate::stats::{figures, Local, OpFigures};
use crate::target::Error;

/// Everything about one run of one system.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    /// The system measured ("conductor in-process", "redis-lua (appendfsync always)", ...).
    pub system: String,
    /// False for configurations that acknowledge before the change is on disk.
    pub durable: bool,
    pub model: String,
    pub concurrency: usize,
    pub rate_per_s: Option<f64>,
    pub elapsed_s: f64,
    /// Acknowledged holds (or the scenario's main operation) per second.
    pub throughput_per_s: f64,
    pub ops: Vec<OpFigures>,
    pub refusals: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// (seconds since start, operations per second).
    pub timeline: Vec<(f64, f64)>,
    pub invariant: Verdict,
    pub seed: u64,
    pub notes: Vec<String>,
}

impl RunReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        system: &str,
        durable: bool,
        pace: &crate::load::Pace,
        elapsed: std::time::Duration,
        main_op: &str,
        local: Local,
        timeline: Vec<(f64, f64)>,
        invariant: Verdict,
        seed: u64,
    ) -> RunReport {
        let ops: Vec<OpFigures> = local
            .latency
            .iter()
            .map(|(op, h)| figures(op, h, elapsed))
            .collect();
        let throughput_per_s = ops
            .iter()
            .find(|o| o.op == main_op)
            .map_or(0.0, |o| o.per_s);
        RunReport {
            scenario: scenario.into(),
            system: system.into(),
            durable,
            model: pace.model().into(),
            concurrency: pace.concurrency,
            rate_per_s: pace.rate,
            elapsed_s: elapsed.as_secs_f64(),
            throughput_per_s,
            ops,
            refusals: local.refusals,
            errors: local.errors,
            timeline,
            invariant,
            seed,
            notes: Vec::new(),
        }
    }

    pub fn op(&self, name: &str) -> Option<&OpFigures> {
        self.ops.iter().find(|o| o.op == name)
    }

    /// The table printed at the end of a run.
    pub fn print(&self) {
        println!();
        println!(
            "{} — {} — {} model, {} workers{}, {:.2} s, seed {}",
            self.scenario,
            self.system,
            self.model,
            self.concurrency,
            self.rate_per_s
                .map(|r| format!(", {r:.0}/s offered"))
                .unwrap_or_default(),
            self.elapsed_s,
            self.seed
        );
        println!(
            "{:<22} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation",
            "count",
            "per s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "p99.99 µs",
            "max µs"
        );
        for o in &self.ops {
            println!(
                "{:<22} {:>9} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                o.op,
                o.count,
                o.per_s,
                o.p50_us,
                o.p90_us,
                o.p99_us,
                o.p999_us,
                o.p9999_us,
                o.max_us
            );
        }
        for (kind, n) in &self.refusals {
            println!("  refused  {kind}: {n}");
        }
        for (kind, n) in &self.errors {
            println!("  error    {kind}: {n}");
        }
        for note in &self.notes {
            println!("  note     {note}");
        }
        println!("  invariant {}", self.invariant.summary());
    }
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Draws, for every report, the latency percentile curve of `op` (log-scaled percentile axis,
/// the HdrHistogram plot) on top, and the throughput over time below.
pub fn plot(path: &Path, reports: &[&RunReport], op: &str) -> Result<(), Error> {
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(480);
    // x = -log10(1 - percentile/100): 90 → 1, 99 → 2, 99.9 → 3 ...
    let nines = |p: f64| -(1.0 - p / 100.0).max(1e-6).log10();
    let curves: Vec<(String, Vec<(f64, f64)>)> = reports
        .iter()
        .filter_map(|r| {
            r.op(op).map(|o| {
                let points = o
                    .curve
                    .iter()
                    .map(|(p, us)| (nines(*p), (*us).max(1) as f64 / 1000.0))
                    .collect();
                (r.system.clone(), points)
            })
        })
        .collect();
    let max_ms = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.01f64, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{op} latency by percentile"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5.2f64, (0.001f64..max_ms * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{:.3}%", 100.0 * (1.0 - 10f64.powf(-x))))
        .draw()?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    let max_t = reports
        .iter()
        .flat_map(|r| r.timeline.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_rate = reports
        .iter()
        .flat_map(|r| r.timeline.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("throughput over time", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_t, 0f64..max_rate * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("operations / s")
        .draw()?;
    for (i, r) in reports.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(r.timeline.clone(), color.stroke_width(2)))?
            .label(r.system.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
