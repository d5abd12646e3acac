//! The HTML report: one file made from the results alone, with inline CSS, JavaScript and SVG
//! and nothing fetched. It opens on the verdict per behaviour ID grouped by area, then every
//! scenario, failed ones first and open, with a bar chart of requests per replica (expected
//! share marked) and, where a fault or a failure happened, a timeline of every request.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::view::{Batch, Expectation, Observations};
use crate::{
    Conformance, Counts, RunOutcome, RunResults, ScenarioResult, Verdict, format_timestamp,
};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--ok:#1a7f37;--bad:#cf222e;--skip:#9a6700;--na:#6e7781;--ink:#1f2328;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);margin:0;background:#fff}
header{padding:10px 18px;border-bottom:1px solid var(--line);background:var(--bg)}
h1{font-size:18px;margin:0 0 2px}h2{font-size:15px;margin:16px 0 8px}h3{font-size:13px;margin:0}
.meta{color:#57606a}.counts b{margin-right:10px}
main{padding:0 18px 24px}
#summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:8px;margin-top:10px}
.area{border:1px solid var(--line);border-radius:6px;padding:6px 8px}
.area table{width:100%;border-collapse:collapse}.area td{padding:1px 4px;white-space:nowrap}
.area td.n{color:#57606a;text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 6px;border-radius:10px;color:#fff;font-size:11px;font-weight:600}
.conformant,.passed{background:var(--ok)}.not-conformant,.failed{background:var(--bad)}
.skipped{background:var(--skip)}.not-applicable{background:var(--na)}
details.scenario{border:1px solid var(--line);border-radius:6px;margin:6px 0;padding:4px 10px}
details.scenario[data-verdict=failed]{border-color:var(--bad)}
summary{cursor:pointer}summary .where{color:#57606a;margin-left:6px}
.message{white-space:pre-wrap;background:#fff1f0;border-left:3px solid var(--bad);padding:6px;margin:6px 0;font-family:ui-monospace,monospace;font-size:12px}
.reason{color:#57606a;margin:4px 0}
table.steps,table.log{border-collapse:collapse;margin:6px 0;font-size:12px}
table.steps td,table.log td,table.log th{padding:1px 6px;border-bottom:1px solid #eaeef2;vertical-align:top}
table.log{font-family:ui-monospace,monospace}td.warn{color:var(--skip)}td.error{color:var(--bad)}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eaeef2;border-radius:4px;padding:4px}
.chart figcaption{font-size:12px;color:#57606a;max-width:560px}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
.toolbar{margin:10px 0}.toolbar button{margin-right:6px}
#js-errors{display:none}
.banner{margin-top:8px;padding:6px 10px;border:2px solid;border-radius:6px;font-size:14px}
.banner ul{margin:4px 0 0;padding-left:20px;font-size:13px}
.banner.failure{border-color:var(--bad);background:#fff1f0}
.banner.partial,.banner.interrupted{border-color:var(--skip);background:#fff8c5}
.banner.invalid{border-color:var(--na);background:var(--bg)}
"#;

const JS: &str = r#"
window.addEventListener('error',function(e){var x=document.getElementById('js-errors');x.textContent+=e.message+'\n';x.style.display='block';});
function show(v){document.querySelectorAll('details.scenario').forEach(function(d){d.style.display=(v==='all'||d.dataset.verdict===v)?'':'none';});}
function openAll(o){document.querySelectorAll('details.scenario').forEach(function(d){d.open=o;});}
"#;

fn class(c: Conformance) -> &'static str {
    match c {
        Conformance::Conformant => "conformant",
        Conformance::NotConformant => "not-conformant",
        Conformance::Skipped => "skipped",
        Conformance::NotApplicable => "not-applicable",
    }
}

fn verdict_class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed { .. } => "failed",
        Verdict::Skipped { .. } => "skipped",
        Verdict::NotApplicable { .. } => "not-applicable",
    }
}

/// The whole report.
pub fn render(results: &RunResults) -> String {
    let mut out = String::new();
    let c = results.counts();
    let outcome = results.outcome();
    let t = &results.target;
    let title = format!("meshcert: {} ({})", t.name, t.profile);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style><script>{JS}</script></head><body>",
        escape(&title)
    );
    let _ = write!(
        out,
        "<header><h1>{}</h1><div class=\"meta\">{} · kind {} · version {} · profile {} · \
         capabilities: {} · {} · {:.1} s · meshcert {} · run {} (seed {})</div>\
         <div class=\"counts\"><b class=\"badge {}\">{}</b><b>{} passed</b><b>{} failed</b>\
         <b>{} skipped</b><b>{} not applicable</b></div>",
        escape(&t.name),
        escape(&format_timestamp(results.started_at)),
        escape(&t.kind),
        escape(&t.version),
        escape(&t.profile),
        escape(&t.capabilities.join(", ")),
        escape(
            &t.settings
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        results.duration_ms as f64 / 1e3,
        escape(&results.meshcert_version),
        escape(&results.run_id),
        results.seed,
        outcome_class(outcome),
        outcome_badge(outcome),
        c.passed,
        c.failed,
        c.skipped,
        c.not_applicable
    );
    banner(&mut out, results, outcome);
    out.push_str("</header><main><pre id=\"js-errors\" class=\"message\"></pre>");
    summary(&mut out, results);
    out.push_str(
        "<h2>Scenarios</h2><div class=\"toolbar\">Show: \
         <button onclick=\"show('all')\">all</button><button onclick=\"show('failed')\">failed</button>\
         <button onclick=\"show('passed')\">passed</button><button onclick=\"show('skipped')\">skipped</button>\
         <button onclick=\"show('not-applicable')\">not applicable</button> \
         <button onclick=\"openAll(true)\">open all</button><button onclick=\"openAll(false)\">close all</button></div>",
    );
    // Failed first, then in file order.
    let mut order: Vec<usize> = (0..results.scenarios.len()).collect();
    order.sort_by_key(|&i| {
        let s = &results.scenarios[i];
        (
            !matches!(s.verdict, Verdict::Failed { .. }),
            s.feature.clone(),
            s.line,
        )
    });
    for i in order {
        scenario(&mut out, i, &results.scenarios[i]);
    }
    out.push_str("</main></body></html>\n");
    out
}

fn outcome_class(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Success => "conformant",
        RunOutcome::Failed => "not-conformant",
        RunOutcome::Partial | RunOutcome::Interrupted => "skipped",
        RunOutcome::Invalid => "not-applicable",
    }
}

fn outcome_badge(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Success => "CONFORMANT",
        RunOutcome::Failed => "NOT CONFORMANT",
        RunOutcome::Partial => "PARTIAL",
        RunOutcome::Interrupted => "INTERRUPTED",
        RunOutcome::Invalid => "NO VERDICT",
    }
}

/// At the top, for any run that is not a plain success: what the run is, why, and each reason
/// for skips once with its count (a reason shared by the whole suite is one line).
fn banner(out: &mut String, results: &RunResults, outcome: RunOutcome) {
    if outcome == RunOutcome::Success {
        return;
    }
    let heading = match outcome {
        RunOutcome::Failed => "Not conformant",
        RunOutcome::Partial => "Partial run: not a certification",
        RunOutcome::Interrupted => "Interrupted run: no verdict",
        RunOutcome::Invalid => "No verdict: the feature set has errors",
        RunOutcome::Success => unreachable!("returned above"),
    };
    let _ = write!(
        out,
        "<div class=\"banner {}\" id=\"outcome\" role=\"alert\"><b>{heading}.</b> {}.",
        outcome.as_str(),
        escape(&results.outcome_text())
    );
    let reasons = results.skip_reasons();
    const SHOWN: usize = 5;
    if !reasons.is_empty() {
        out.push_str("<ul>");
        for r in reasons.iter().take(SHOWN) {
            let _ = write!(
                out,
                "<li><b>{} skipped</b> ({}): {}</li>",
                crate::outcome::scenarios(r.scenarios),
                escape(&crate::behaviour_list(&r.behaviours)),
                escape(&r.reason)
            );
        }
        if reasons.len() > SHOWN {
            let _ = write!(
                out,
                "<li>and {} more reasons (each skipped scenario below says its own)</li>",
                reasons.len() - SHOWN
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
}

fn summary(out: &mut String, results: &RunResults) {
    let mut areas: BTreeMap<String, BTreeMap<String, (Counts, Vec<usize>)>> = BTreeMap::new();
    for (i, s) in results.scenarios.iter().enumerate() {
        for id in s.behaviours() {
            let entry = areas
                .entry(s.area().to_string())
                .or_default()
                .entry(id.to_string())
                .or_default();
            entry.0.add(&s.verdict);
            entry.1.push(i);
        }
    }
    out.push_str("<section id=\"summary\" aria-label=\"verdict per behaviour\">");
    for (area, ids) in &areas {
        let mut total = Counts::default();
        ids.values().for_each(|(c, _)| total.merge(c));
        let _ = write!(
            out,
            "<div class=\"area\"><h3>{} <span class=\"badge {}\">{}</span></h3><table>",
            escape(area),
            class(total.conformance()),
            total.conformance()
        );
        for (id, (counts, scenarios)) in ids {
            // The assertions that decided it, on hover: the Then steps of its scenarios.
            let mut decided_by = Vec::new();
            for &i in scenarios {
                crate::conformance::merge_assertions(&mut decided_by, &results.scenarios[i]);
            }
            let decided_by: Vec<String> = decided_by
                .iter()
                .map(|a| format!("{}: {}", a.outcome, a.step))
                .collect();
            let _ = write!(
                out,
                "<tr><td><a href=\"#s-{}\" title=\"decided by:\n{}\">{}</a></td><td><span class=\"badge {}\">{}</span></td>\
                 <td class=\"n\" title=\"passed / failed / skipped / not applicable\">{}/{}/{}/{}</td></tr>",
                scenarios[0],
                escape(&decided_by.join("\n")),
                escape(id),
                class(counts.conformance()),
                counts.conformance(),
                counts.passed,
                counts.failed,
                counts.skipped,
                counts.not_applicable
            );
        }
        out.push_str("</table></div>");
    }
    out.push_str("</section>");
}

fn scenario(out: &mut String, index: usize, s: &ScenarioResult) {
    let failed = matches!(s.verdict, Verdict::Failed { .. });
    let _ = write!(
        out,
        "<details class=\"scenario\" id=\"s-{index}\" data-verdict=\"{}\"{}><summary>\
         <span class=\"badge {}\">{}</span> {}<span class=\"where\">{}:{} · {} · {:.1} s</span></summary>",
        verdict_class(&s.verdict),
        if failed { " open" } else { "" },
        verdict_class(&s.verdict),
        s.verdict.label(),
        escape(&s.name),
        escape(&s.feature),
        s.line,
        escape(&s.behaviours().collect::<Vec<_>>().join(" ")),
        s.duration_ms as f64 / 1e3
    );
    match &s.verdict {
        Verdict::Failed { step, message } => {
            let _ = write!(
                out,
                "<div class=\"message\"><b>{}</b>\n{}</div>",
                escape(step),
                escape(message)
            );
        }
        Verdict::Skipped { reason } | Verdict::NotApplicable { reason } => {
            let _ = write!(out, "<p class=\"reason\">{}</p>", escape(reason));
        }
        Verdict::Passed => {}
    }
    if !s.steps.is_empty() {
        out.push_str("<table class=\"steps\">");
        for step in &s.steps {
            let _ = write!(
                out,
                "<tr><td><span class=\"badge {}\">{}</span></td><td>{}</td><td>{} ms</td></tr>",
                escape(&step.outcome),
                escape(&step.outcome),
                escape(&step.step),
                step.duration_ms
            );
        }
        out.push_str("</table>");
    }
    let o = Observations::of(&s.observations);
    if !o.batches.is_empty() {
        out.push_str("<div class=\"charts\">");
        if o.has_timeline() {
            timeline(out, index, &o);
        }
        for (b, batch) in o.batches.iter().enumerate() {
            let expected = o.expectations.iter().find(|e| e.batch == b);
            bars(out, index, b, batch, expected);
        }
        out.push_str("</div>");
    }
    if !o.restarts.is_empty() {
        let total: f64 = o.restarts.iter().map(|r| r.took.ms()).sum();
        let _ = write!(
            out,
            "<p class=\"reason\">{} ztunnel restart(s) to take config changes, {total:.0} ms in all</p>",
            o.restarts.len()
        );
    }
    log_table(out, &o);
    out.push_str("</details>");
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
fn bars(out: &mut String, index: usize, b: usize, batch: &Batch, expected: Option<&Expectation>) {
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
    let total = batch.records.len();
    let mut values: Vec<(String, String, usize, bool)> = names
        .iter()
        .zip(&labels)
        .map(|(n, l)| {
            (
                n.clone(),
                l.clone(),
                counts.get(n).copied().unwrap_or(0),
                false,
            )
        })
        .collect();
    if failures > 0 {
        values.push(("failed".into(), "failed".into(), failures, true));
    }
    let expected_count = expected.map(|e| e.share * total as f64);
    let max = values
        .iter()
        .map(|v| v.2 as f64)
        .chain(expected_count)
        .fold(1.0, f64::max);
    let (left, top, plot_h, bar_w, gap) = (44.0, 14.0, 120.0, 34.0, 10.0);
    let width = left + values.len() as f64 * (bar_w + gap) + 20.0;
    let height = top + plot_h + 58.0;
    let y = |v: f64| top + plot_h - v / max * plot_h;
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"bars-{index}-{b}\"><svg width=\"{width:.0}\" height=\"{height:.0}\" \
         role=\"img\" aria-label=\"requests per replica\">"
    );
    // Axis with ticks at 0, half and the maximum, in requests.
    for tick in [0.0, (max / 2.0).round(), max.ceil()] {
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            width - 10.0,
            y(tick),
            y(tick),
            left - 4.0,
            y(tick) + 4.0
        );
    }
    let _ = write!(
        out,
        "<text x=\"10\" y=\"{:.0}\" transform=\"rotate(-90 10 {:.0})\" text-anchor=\"middle\">requests</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (i, (name, label, count, failed)) in values.iter().enumerate() {
        let x = left + gap / 2.0 + i as f64 * (bar_w + gap);
        let colour = if *failed { "#cf222e" } else { "#0969da" };
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{:.1}\" fill=\"{colour}\">\
             <title>{}: {count} of {total} requests</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{count}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" transform=\"rotate(-35 {:.1} {:.1})\">{}</text>",
            y(*count as f64),
            top + plot_h - y(*count as f64),
            escape(name),
            x + bar_w / 2.0,
            y(*count as f64) - 2.0,
            x + bar_w / 2.0,
            top + plot_h + 12.0,
            x + bar_w / 2.0,
            top + plot_h + 12.0,
            escape(label)
        );
        if let (Some(e), Some(want)) = (expected, expected_count)
            && e.replicas.contains(name)
        {
            let _ = write!(
                out,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1f2328\" \
                 stroke-width=\"2\" stroke-dasharray=\"4 2\"><title>expected {want:.1}</title></line>",
                x - 3.0,
                x + bar_w + 3.0,
                y(want),
                y(want)
            );
        }
    }
    out.push_str("</svg><figcaption>");
    let _ = write!(
        out,
        "Requests per replica, batch {} ({} requests to {})",
        b + 1,
        total,
        escape(&batch.plan.url)
    );
    if let (Some(e), Some(want)) = (expected, expected_count) {
        let _ = write!(
            out,
            "; dashed: expected share {:.0}% ({want:.1} requests) each for &quot;{}&quot;",
            e.share * 100.0,
            escape(&e.statement)
        );
    }
    out.push_str("</figcaption></figure>");
}

/// Every request of the scenario as a mark over time (mesh clock), one lane per replica and a
/// red lane for failures, with each fault's start and end.
fn timeline(out: &mut String, index: usize, o: &Observations) {
    let records: Vec<_> = o.batches.iter().flat_map(|b| b.records.iter()).collect();
    let mut lanes: Vec<String> = records
        .iter()
        .filter_map(|r| r.replica.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let any_failed = records.iter().any(|r| r.failed());
    let labels = short_names(&lanes);
    if any_failed {
        lanes.push("failed".into());
    }
    let mut t0 = records
        .iter()
        .map(|r| r.started_at.ms())
        .fold(f64::INFINITY, f64::min);
    let mut t1 = records
        .iter()
        .map(|r| r.started_at.ms() + r.latency.ms())
        .fold(0.0, f64::max);
    for f in &o.faults {
        t0 = t0.min(f.handle.injected_at.ms());
        t1 = t1.max(f.undone_at.map(|u| u.ms()).unwrap_or(0.0));
    }
    if !t0.is_finite() {
        return;
    }
    let span = (t1 - t0).max(100.0);
    let (t0, t1) = (t0 - span * 0.02, t1 + span * 0.02);
    // Two label rows above the plot: faults on the first, their removal on the second.
    let (left, top, lane_h, plot_w) = (110.0, 36.0, 18.0, 620.0);
    let plot_h = lanes.len() as f64 * lane_h;
    let width = left + plot_w + 20.0;
    let height = top + plot_h + 40.0;
    let x = |ms: f64| left + (ms - t0) / (t1 - t0) * plot_w;
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"timeline-{index}\"><svg width=\"{width:.0}\" height=\"{height:.0}\" \
         role=\"img\" aria-label=\"failover timeline\">"
    );
    for (i, lane) in lanes.iter().enumerate() {
        let yc = top + i as f64 * lane_h + lane_h / 2.0;
        let label = labels.get(i).map(String::as_str).unwrap_or(lane);
        let _ = write!(
            out,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{yc:.1}\" y2=\"{yc:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            yc + 4.0,
            escape(label)
        );
    }
    // Time axis in seconds, about six ticks.
    let step = nice_step((t1 - t0) / 6.0);
    let mut tick = (t0 / step).ceil() * step;
    while tick <= t1 {
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(tick),
            x(tick),
            top + plot_h,
            x(tick),
            top + plot_h + 14.0,
            trim_float(tick / 1e3)
        );
        tick += step;
    }
    let _ = write!(
        out,
        "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">time since the mesh was created (s)</text>",
        left + plot_w / 2.0,
        top + plot_h + 32.0
    );
    for r in &records {
        let lane = match &r.replica {
            Some(replica) if !r.failed() => lanes.iter().position(|l| l == replica),
            _ => lanes.iter().position(|l| l == "failed"),
        };
        let Some(lane) = lane else { continue };
        let y0 = top + lane as f64 * lane_h + 3.0;
        let w = (x(r.started_at.ms() + r.latency.ms()) - x(r.started_at.ms())).max(2.0);
        let (colour, what) = if r.failed() {
            ("#cf222e", r.failure_text())
        } else {
            (
                "#0969da",
                format!("answered by {}", r.replica.clone().unwrap_or_default()),
            )
        };
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{y0:.1}\" width=\"{w:.1}\" height=\"{:.0}\" fill=\"{colour}\" opacity=\"0.8\">\
             <title>#{} at {:.3} s: {} in {:.0} ms</title></rect>",
            x(r.started_at.ms()),
            lane_h - 6.0,
            r.index,
            r.started_at.ms() / 1e3,
            escape(&what),
            r.latency.ms()
        );
    }
    for f in &o.faults {
        let at = f.handle.injected_at.ms();
        let what = format!(
            "{} on {}",
            f.handle.fault.describe(),
            f.handle.fault.pod.name
        );
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.0}\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-width=\"2\" \
             stroke-dasharray=\"5 3\"/><text x=\"{:.1}\" y=\"{:.0}\" fill=\"#cf222e\">fault: {}</text>",
            x(at),
            x(at),
            top - 30.0,
            top + plot_h,
            x(at) + 3.0,
            top - 22.0,
            escape(&what)
        );
        if let Some(undone) = f.undone_at {
            let _ = write!(
                out,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.0}\" y2=\"{:.1}\" stroke=\"#1a7f37\" stroke-width=\"2\" \
                 stroke-dasharray=\"5 3\"/><text x=\"{:.1}\" y=\"{:.0}\" fill=\"#1a7f37\">fault removed</text>",
                x(undone.ms()),
                x(undone.ms()),
                top - 16.0,
                top + plot_h,
                x(undone.ms()) + 3.0,
                top - 6.0
            );
        }
    }
    let failed = records.iter().filter(|r| r.failed()).count();
    let _ = write!(
        out,
        "</svg><figcaption>Failover timeline: {} requests, {failed} failed (red); each mark spans \
         the request's latency; dashed red: the fault goes in, dashed green: it is removed.</figcaption></figure>",
        records.len()
    );
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

fn log_table(out: &mut String, o: &Observations) {
    let log = o.log();
    if log.is_empty() {
        return;
    }
    const SHOWN: usize = 200;
    let _ = write!(
        out,
        "<details><summary>ztunnel log ({} lines{})</summary><table class=\"log\">\
         <tr><th>s</th><th>level</th><th>target</th><th>message</th><th>fields</th></tr>",
        log.len(),
        if log.len() > SHOWN {
            format!(", first {SHOWN} shown")
        } else {
            String::new()
        }
    );
    for l in log.iter().take(SHOWN) {
        let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(
            out,
            "<tr><td>{:.3}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            l.observed_at.ms() / 1e3,
            escape(&l.level),
            escape(&l.level),
            escape(&l.target),
            escape(if l.level.is_empty() {
                &l.raw
            } else {
                &l.message
            }),
            escape(&fields.join(" "))
        );
    }
    out.push_str("</table></details>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

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
