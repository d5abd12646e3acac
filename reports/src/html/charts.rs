//! The report's inline SVG charts: requests per replica of a batch, and a scenario's timeline
//! of every request and fault.

use std::fmt::Write;

use meshcert_model::{Expectation, FaultRecord, Observations, RequestBatch, RequestRecord};

use super::escape;
use crate::millis;

/// One bar: the requests a replica answered, or those that failed.
struct Bar {
    name: String,
    label: String,
    count: usize,
    failed: bool,
}

/// Where a bar chart's parts go; `max` is the value at the top of the plot.
struct BarPlot {
    left: f64,
    top: f64,
    plot_h: f64,
    bar_w: f64,
    gap: f64,
    width: f64,
    max: f64,
}

impl BarPlot {
    fn new(bars: usize, max: f64) -> Self {
        let (left, top, plot_h, bar_w, gap) = (44.0, 14.0, 120.0, 34.0, 10.0);
        let width = left + bars as f64 * (bar_w + gap) + 20.0;
        BarPlot {
            left,
            top,
            plot_h,
            bar_w,
            gap,
            width,
            max,
        }
    }

    fn height(&self) -> f64 {
        self.top + self.plot_h + 58.0
    }

    fn y(&self, v: f64) -> f64 {
        self.top + self.plot_h - v / self.max * self.plot_h
    }
}

/// The part of each name after the prefix all share (pod names share their deployment's).
fn short_names(names: &[String]) -> Vec<String> {
    if names.len() < 2 {
        return names.to_vec();
    }
    let first = &names[0];
    let mut common = first.len();
    for n in &names[1..] {
        common = common.min(
            first
                .chars()
                .zip(n.chars())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    // Cut at a dash, so a label never starts mid-word.
    let cut = first[..common].rfind('-').map(|i| i + 1).unwrap_or(0);
    names.iter().map(|n| n[cut..].to_string()).collect()
}

/// Requests per replica of one batch; failures as a red bar; the expected share as a dashed
/// mark on the replicas expected to share it.
pub(super) fn bars(
    out: &mut String,
    index: usize,
    b: usize,
    batch: &RequestBatch,
    expected: Option<&Expectation>,
) {
    let values = bar_values(batch, expected);
    let total = batch.records.len();
    // The expectation with the number of requests its share means.
    let expected = expected.map(|e| (e, e.share * total as f64));
    let max = values
        .iter()
        .map(|v| v.count as f64)
        .chain(expected.map(|(_, want)| want))
        .fold(1.0, f64::max);
    let plot = BarPlot::new(values.len(), max);
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"bars-{index}-{b}\"><svg width=\"{:.0}\" height=\"{:.0}\" \
         role=\"img\" aria-label=\"requests per replica\">",
        plot.width,
        plot.height()
    );
    bar_axis(out, &plot);
    for (i, bar) in values.iter().enumerate() {
        bar_marks(out, &plot, i, bar, total, expected);
    }
    bars_caption(out, b, batch, total, expected);
}

/// A bar per replica answering or expected to answer, sorted when some are only expected, then
/// one for the failed requests if any failed.
fn bar_values(batch: &RequestBatch, expected: Option<&Expectation>) -> Vec<Bar> {
    let counts = batch.counts();
    let failures = batch.failures();
    let mut names: Vec<String> = counts.keys().cloned().collect();
    if let Some(e) = expected {
        for r in &e.replicas {
            if !names.contains(r) {
                names.push(r.clone());
            }
        }
        names.sort();
    }
    let labels = short_names(&names);
    let mut values: Vec<Bar> = names
        .iter()
        .zip(&labels)
        .map(|(n, l)| Bar {
            name: n.clone(),
            label: l.clone(),
            count: counts.get(n).copied().unwrap_or(0),
            failed: false,
        })
        .collect();
    if failures > 0 {
        values.push(Bar {
            name: "failed".into(),
            label: "failed".into(),
            count: failures,
            failed: true,
        });
    }
    values
}

/// Axis with ticks at 0, half and the maximum, in requests.
fn bar_axis(out: &mut String, plot: &BarPlot) {
    let (left, top, plot_h, max) = (plot.left, plot.top, plot.plot_h, plot.max);
    for tick in [0.0, (max / 2.0).round(), max.ceil()] {
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            plot.width - 10.0,
            plot.y(tick),
            plot.y(tick),
            left - 4.0,
            plot.y(tick) + 4.0
        );
    }
    let _ = write!(
        out,
        "<text x=\"10\" y=\"{:.0}\" transform=\"rotate(-90 10 {:.0})\" text-anchor=\"middle\">requests</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
}

/// The `i`th bar with its count and label, and the expected share's mark when this replica is
/// expected to share it.
fn bar_marks(
    out: &mut String,
    plot: &BarPlot,
    i: usize,
    bar: &Bar,
    total: usize,
    expected: Option<(&Expectation, f64)>,
) {
    let (top, plot_h, bar_w, count) = (plot.top, plot.plot_h, plot.bar_w, bar.count);
    let x = plot.left + plot.gap / 2.0 + i as f64 * (bar_w + plot.gap);
    let colour = if bar.failed { "#cf222e" } else { "#0969da" };
    let _ = write!(
        out,
        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{:.1}\" fill=\"{colour}\">\
         <title>{}: {count} of {total} requests</title></rect>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{count}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" transform=\"rotate(-35 {:.1} {:.1})\">{}</text>",
        plot.y(count as f64),
        top + plot_h - plot.y(count as f64),
        escape(&bar.name),
        x + bar_w / 2.0,
        plot.y(count as f64) - 2.0,
        x + bar_w / 2.0,
        top + plot_h + 12.0,
        x + bar_w / 2.0,
        top + plot_h + 12.0,
        escape(&bar.label)
    );
    if let Some((e, want)) = expected
        && e.replicas.contains(&bar.name)
    {
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1f2328\" \
             stroke-width=\"2\" stroke-dasharray=\"4 2\"><title>expected {want:.1}</title></line>",
            x - 3.0,
            x + bar_w + 3.0,
            plot.y(want),
            plot.y(want)
        );
    }
}

/// Closes the bar chart with what it shows: the batch, and the expected share if one is marked.
fn bars_caption(
    out: &mut String,
    b: usize,
    batch: &RequestBatch,
    total: usize,
    expected: Option<(&Expectation, f64)>,
) {
    out.push_str("</svg><figcaption>");
    let _ = write!(
        out,
        "Requests per replica, batch {} ({} requests to {})",
        b + 1,
        total,
        escape(&batch.plan.url)
    );
    if let Some((e, want)) = expected {
        let _ = write!(
            out,
            "; dashed: expected share {:.0}% ({want:.1} requests) each for &quot;{}&quot;",
            e.share * 100.0,
            escape(&e.statement)
        );
    }
    out.push_str("</figcaption></figure>");
}

/// Where a timeline's parts go; `t0` and `t1` are the times (ms) at its left and right edges.
struct TimelinePlot {
    left: f64,
    top: f64,
    lane_h: f64,
    plot_w: f64,
    plot_h: f64,
    t0: f64,
    t1: f64,
}

impl TimelinePlot {
    /// The x coordinate of a time in ms.
    fn x(&self, ms: f64) -> f64 {
        self.left + (ms - self.t0) / (self.t1 - self.t0) * self.plot_w
    }
}

/// Every request of the scenario as a mark over time (mesh clock), one lane per replica and a
/// red lane for failures, with each fault's start and end.
pub(super) fn timeline(out: &mut String, index: usize, o: &Observations) {
    let records: Vec<_> = o.batches.iter().flat_map(|b| b.records.iter()).collect();
    let (lanes, labels) = lanes(&records);
    let Some((t0, t1)) = time_span(&records, &o.faults) else {
        return;
    };
    // Two label rows above the plot: faults on the first, their removal on the second.
    let (left, top, lane_h, plot_w) = (110.0, 36.0, 18.0, 620.0);
    let plot = TimelinePlot {
        left,
        top,
        lane_h,
        plot_w,
        plot_h: lanes.len() as f64 * lane_h,
        t0,
        t1,
    };
    let width = left + plot_w + 20.0;
    let height = top + plot.plot_h + 40.0;
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"timeline-{index}\"><svg width=\"{width:.0}\" height=\"{height:.0}\" \
         role=\"img\" aria-label=\"failover timeline\">"
    );
    lane_lines(out, &plot, &lanes, &labels);
    time_axis(out, &plot);
    for r in &records {
        request_mark(out, &plot, &lanes, r);
    }
    for f in &o.faults {
        fault_marks(out, &plot, f);
    }
    let failed = records.iter().filter(|r| r.failed()).count();
    let _ = write!(
        out,
        "</svg><figcaption>Failover timeline: {} requests, {failed} failed (red); each mark spans \
         the request's latency; dashed red: the fault goes in, dashed green: it is removed.</figcaption></figure>",
        records.len()
    );
}

/// The lanes (the replicas that answered, sorted, then `failed` if any request failed) and the
/// replicas' short labels.
fn lanes(records: &[&RequestRecord]) -> (Vec<String>, Vec<String>) {
    let mut lanes: Vec<String> = records
        .iter()
        .filter_map(|r| r.replica().map(str::to_string))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let any_failed = records.iter().any(|r| r.failed());
    let labels = short_names(&lanes);
    if any_failed {
        lanes.push("failed".into());
    }
    (lanes, labels)
}

/// The times (ms) the timeline spans: every request and fault, with a margin; none when there
/// are no requests or faults.
fn time_span(records: &[&RequestRecord], faults: &[FaultRecord]) -> Option<(f64, f64)> {
    let mut t0 = records
        .iter()
        .map(|r| millis(r.started_at))
        .fold(f64::INFINITY, f64::min);
    let mut t1 = records
        .iter()
        .map(|r| millis(r.started_at) + millis(r.latency))
        .fold(0.0, f64::max);
    for f in faults {
        t0 = t0.min(millis(f.handle.injected_at));
        t1 = t1.max(f.undone_at.map(millis).unwrap_or(0.0));
    }
    if !t0.is_finite() {
        return None;
    }
    let span = (t1 - t0).max(100.0);
    Some((t0 - span * 0.02, t1 + span * 0.02))
}

/// A line and a label per lane.
fn lane_lines(out: &mut String, plot: &TimelinePlot, lanes: &[String], labels: &[String]) {
    let (left, top, lane_h) = (plot.left, plot.top, plot.lane_h);
    for (i, lane) in lanes.iter().enumerate() {
        let yc = top + i as f64 * lane_h + lane_h / 2.0;
        let label = labels.get(i).map(String::as_str).unwrap_or(lane);
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{yc:.1}\" y2=\"{yc:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot.plot_w,
            left - 6.0,
            yc + 4.0,
            escape(label)
        );
    }
}

/// Time axis in seconds, about six ticks.
fn time_axis(out: &mut String, plot: &TimelinePlot) {
    let (top, plot_h, t0, t1) = (plot.top, plot.plot_h, plot.t0, plot.t1);
    let step = nice_step((t1 - t0) / 6.0);
    let mut tick = (t0 / step).ceil() * step;
    while tick <= t1 {
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            plot.x(tick),
            plot.x(tick),
            top + plot_h,
            plot.x(tick),
            top + plot_h + 14.0,
            trim_float(tick / 1e3)
        );
        tick += step;
    }
    let _ = write!(
        out,
        "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">time since the mesh was created (s)</text>",
        plot.left + plot.plot_w / 2.0,
        top + plot_h + 32.0
    );
}

/// A request as a mark spanning its latency, on its replica's lane or the failed lane.
fn request_mark(out: &mut String, plot: &TimelinePlot, lanes: &[String], r: &RequestRecord) {
    let lane = match (r.replica(), r.failure()) {
        (Some(replica), None) => lanes.iter().position(|l| l == replica),
        _ => lanes.iter().position(|l| l == "failed"),
    };
    let Some(lane) = lane else { return };
    let (started, latency) = (millis(r.started_at), millis(r.latency));
    let y0 = plot.top + lane as f64 * plot.lane_h + 3.0;
    let w = (plot.x(started + latency) - plot.x(started)).max(2.0);
    let (colour, what) = match r.failure() {
        Some(failure) => ("#cf222e", failure.to_string()),
        None => (
            "#0969da",
            format!("answered by {}", r.replica().unwrap_or_default()),
        ),
    };
    let _ = write!(
        out,
        "<rect x=\"{:.1}\" y=\"{y0:.1}\" width=\"{w:.1}\" height=\"{:.0}\" fill=\"{colour}\" opacity=\"0.8\">\
         <title>#{} at {:.3} s: {} in {:.0} ms</title></rect>",
        plot.x(started),
        plot.lane_h - 6.0,
        r.index,
        started / 1e3,
        escape(&what),
        latency
    );
}

/// A fault's start as a dashed red line with what it was, and its removal as a dashed green one.
fn fault_marks(out: &mut String, plot: &TimelinePlot, f: &FaultRecord) {
    let (top, plot_h) = (plot.top, plot.plot_h);
    let at = millis(f.handle.injected_at);
    let what = format!(
        "{} on {}",
        f.handle.fault.kind.brief(),
        f.handle.fault.pod.name
    );
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.0}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-width=\"2\" \
         stroke-dasharray=\"5 3\"/><text x=\"{:.1}\" y=\"{:.0}\" fill=\"#cf222e\">fault: {}</text>",
        plot.x(at),
        plot.x(at),
        top - 30.0,
        top + plot_h,
        plot.x(at) + 3.0,
        top - 22.0,
        escape(&what)
    );
    if let Some(undone) = f.undone_at.map(millis) {
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.0}\" y2=\"{:.1}\" stroke=\"#1a7f37\" stroke-width=\"2\" \
             stroke-dasharray=\"5 3\"/><text x=\"{:.1}\" y=\"{:.0}\" fill=\"#1a7f37\">fault removed</text>",
            plot.x(undone),
            plot.x(undone),
            top - 16.0,
            top + plot_h,
            plot.x(undone) + 3.0,
            top - 6.0
        );
    }
}

/// 1, 2 or 5 times a power of ten, in milliseconds.
fn nice_step(rough: f64) -> f64 {
    let power = 10f64.powf(rough.max(1.0).log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * power >= rough {
            return m * power;
        }
    }
    10.0 * power
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_the_shared_prefix_at_a_dash() {
        let names = vec![
            "in-ambient-7d8f-abc12".to_string(),
            "in-ambient-7d8f-abd34".to_string(),
        ];
        assert_eq!(short_names(&names), ["abc12", "abd34"]);
        assert_eq!(short_names(&["solo".to_string()]), ["solo"]);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(nice_step(700.0), 1000.0);
        assert_eq!(nice_step(0.2), 1.0);
        assert_eq!(trim_float(1.5), "1.5");
        assert_eq!(trim_float(2.0), "2");
    }
}
