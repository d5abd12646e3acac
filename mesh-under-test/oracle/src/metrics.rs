//! Parser of Prometheus text exposition (ztunnel's `/metrics` on 15020).
//!
//! Accepts the Prometheus 0.0.4 text format and the OpenMetrics text that upstream ztunnel
//! writes (`# EOF`, exemplars): comments, `HELP` and `TYPE` lines are skipped, label values
//! are unescaped, timestamps and exemplars are read and dropped, `NaN` and `±Inf` are values.
//! Steps then ask for sums over label subsets (`istio_tcp_connections_opened_total` to one
//! destination workload) with [`sum`].

use std::collections::BTreeMap;

pub use meshcert_model::MetricSample;

/// Why a `/metrics` text is not a Prometheus exposition: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics line {line}: {why}: {text:?} (is the URL ztunnel's /metrics on port 15020?)")]
pub struct MetricsParseError {
    pub line: usize,
    pub why: String,
    pub text: String,
}

/// Parses a whole exposition; an error names the line and what is wrong with it.
pub fn parse_prometheus(text: &str) -> Result<Vec<MetricSample>, MetricsParseError> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let sample = parse_sample(trimmed).map_err(|why| MetricsParseError {
            line: index + 1,
            why: why.to_string(),
            text: trimmed.to_string(),
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// The samples named `name` whose labels include every `(key, value)` of `labels`.
pub fn matching<'a>(
    samples: &'a [MetricSample],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a MetricSample> + 'a {
    samples.iter().filter(move |s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// Sum of the values of the samples named `name` whose labels include every pair of `labels`;
/// 0 when none match (a counter never incremented is not exported).
pub fn sum(samples: &[MetricSample], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(samples, name, labels).map(|s| s.value).sum()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_sample(line: &str) -> Result<MetricSample, String> {
    if !line.starts_with(is_name_start) {
        return Err("a sample must start with a metric name".into());
    }
    let name_end = line.find(|c| !is_name_char(c)).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    if !rest.starts_with(char::is_whitespace) {
        return Err(format!("expected a space and a value after {name:?}"));
    }
    let mut words = rest.split_whitespace();
    let value_text = words.next().ok_or("the value is missing")?;
    let value = parse_value(value_text)?;
    match words.next() {
        None => {}
        // An OpenMetrics exemplar: `# {trace_id="..."} 1 [ts]`.
        Some("#") => {}
        Some(ts) => {
            ts.parse::<f64>()
                .map_err(|_| format!("timestamp {ts:?} is not a number"))?;
            match words.next() {
                None | Some("#") => {}
                Some(extra) => return Err(format!("unexpected {extra:?} after the timestamp")),
            }
        }
    }
    Ok(MetricSample {
        name,
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                format!("value {other:?} is not a number (NaN, +Inf and -Inf are spelt so)")
            }),
    }
}

/// Parses `k="v",k2="v2"}` (after the opening brace) and returns what follows the brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(format!("expected a label name or '}}' at {:?}", cut(rest)));
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let key = &rest[..end];
        rest = rest[end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("label {key:?} has no '='"))?
            .trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label {key:?} is not double-quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let after = loop {
            match chars.next() {
                None => return Err(format!("the value of label {key:?} is never closed")),
                Some((i, '"')) => break &rest[i + 1..],
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => {
                        return Err(format!("label {key:?}: unknown escape \\{other}"));
                    }
                    None => return Err(format!("the value of label {key:?} is never closed")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key:?} appears twice"));
        }
        rest = after.trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {key:?}"));
        }
    }
}

fn cut(s: &str) -> &str {
    s.char_indices().nth(20).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const ZTUNNEL: &str = r#"# HELP istio_tcp_connections_opened The total number of TCP connections opened.
# TYPE istio_tcp_connections_opened counter
istio_tcp_connections_opened_total{reporter="source",source_workload="client-in-ambient",destination_workload="in-ambient",destination_pod="in-ambient-1",response_flags="-"} 4
istio_tcp_connections_opened_total{reporter="source",source_workload="client-in-ambient",destination_workload="in-ambient",destination_pod="in-ambient-2",response_flags="-"} 5
istio_tcp_connections_failed_total{reporter="source",destination_workload="in-ambient",response_flags="UF"} 2 1741286400000
istio_tcp_sent_bytes_total{reporter="source",destination_workload="other"} 1.5e3

istio_build{component="ztunnel",tag="1.24.0"} 1 # {trace_id="abc"} 1.0
weird{msg="a \"quoted\" \\ back\nslash",} NaN
gauge_inf +Inf
gauge_neg -Inf
# EOF
"#;

    #[test]
    fn parses_ztunnel_exposition() {
        let samples = parse_prometheus(ZTUNNEL).unwrap();
        assert_eq!(samples.len(), 8);
        assert_eq!(samples[0].name, "istio_tcp_connections_opened_total");
        assert_eq!(samples[0].labels["destination_pod"], "in-ambient-1");
        assert_eq!(samples[0].value, 4.0);
        assert_eq!(samples[2].value, 2.0);
        assert_eq!(samples[3].value, 1500.0);
        assert_eq!(samples[4].labels["tag"], "1.24.0");
        assert_eq!(samples[5].labels["msg"], "a \"quoted\" \\ back\nslash");
        assert!(samples[5].value.is_nan());
        assert_eq!(samples[6].value, f64::INFINITY);
        assert_eq!(samples[7].value, f64::NEG_INFINITY);
    }

    #[rstest]
    #[case::all("istio_tcp_connections_opened_total", &[], 9.0)]
    #[case::one_label("istio_tcp_connections_opened_total", &[("destination_pod", "in-ambient-2")], 5.0)]
    #[case::two_labels("istio_tcp_connections_opened_total", &[("destination_workload", "in-ambient"), ("reporter", "source")], 9.0)]
    #[case::no_match("istio_tcp_connections_opened_total", &[("destination_workload", "nope")], 0.0)]
    #[case::absent_metric("istio_tcp_connections_closed_total", &[], 0.0)]
    #[case::absent_label("istio_tcp_connections_failed_total", &[("destination_pod", "x")], 0.0)]
    fn sums(#[case] name: &str, #[case] labels: &[(&str, &str)], #[case] expected: f64) {
        let samples = parse_prometheus(ZTUNNEL).unwrap();
        assert_eq!(sum(&samples, name, labels), expected);
    }

    #[rstest]
    #[case::no_value("up", "expected a space and a value")]
    #[case::bad_value("up abc", "value \"abc\" is not a number")]
    #[case::bad_name("9up 1", "must start with a metric name")]
    #[case::unquoted("up{a=b} 1", "not double-quoted")]
    #[case::unclosed("up{a=\"b} 1", "never closed")]
    #[case::no_eq("up{a} 1", "has no '='")]
    #[case::dup("up{a=\"1\",a=\"2\"} 1", "appears twice")]
    #[case::bad_escape("up{a=\"\\t\"} 1", "unknown escape")]
    #[case::bad_ts("up 1 soon", "timestamp \"soon\"")]
    #[case::trailing("up 1 2 3", "unexpected \"3\"")]
    fn bad_lines_are_named(#[case] line: &str, #[case] fragment: &str) {
        let text = format!("# HELP up x\n{line}\n");
        let err = parse_prometheus(&text).unwrap_err().to_string();
        assert!(err.contains("metrics line 2"), "{err}");
        assert!(err.contains(fragment), "{err}");
    }

    #[test]
    fn empty_exposition_is_no_samples() {
        assert!(parse_prometheus("# EOF\n\n").unwrap().is_empty());
    }
}
