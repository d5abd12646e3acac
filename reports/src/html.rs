//! The HTML report: one file made from the results alone, with inline CSS, JavaScript and SVG
//! and nothing fetched. It opens on the verdict per behaviour ID grouped by area, then every
//! scenario, failed ones first and open, with a bar chart of requests per replica (expected
//! share marked) and, where a fault or a failure happened, a timeline of every request.

mod charts;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::{
    Conformance, Counts, Observations, RunOutcome, RunResults, ScenarioResult, Verdict,
    format_timestamp, millis,
};
use charts::{bars, timeline};

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
    if let Some(o) = &s.observations {
        observed(out, index, o);
    }
    out.push_str("</details>");
}

/// The charts of a scenario's batches, its ztunnel restarts and its log.
fn observed(out: &mut String, index: usize, o: &Observations) {
    if !o.batches.is_empty() {
        out.push_str("<div class=\"charts\">");
        if o.has_timeline() {
            timeline(out, index, o);
        }
        for (b, batch) in o.batches.iter().enumerate() {
            let expected = o.expectations.iter().find(|e| e.batch == b);
            bars(out, index, b, batch, expected);
        }
        out.push_str("</div>");
    }
    if !o.restarts.is_empty() {
        let total: f64 = o.restarts.iter().map(|r| millis(r.took)).sum();
        let _ = write!(
            out,
            "<p class=\"reason\">{} ztunnel restart(s) to take config changes, {total:.0} ms in all</p>",
            o.restarts.len()
        );
    }
    log_table(out, o);
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
            millis(l.observed_at) / 1e3,
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
}
