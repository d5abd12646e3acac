//! Parser of ztunnel log lines (upstream's text format and `LOG_FORMAT=json`).
//!
//! Steps assert on log *fields* (`dst.workload`, `consecutive_failures`), never on substrings,
//! so both formats are parsed into the same [`LogLine`]. The text format is upstream's
//! `IstioFormat`: `<timestamp>\t<level>\t<target>[:span{..}]\t<message>\t<k=v ...>`, where values
//! are bare (`Display`) or double-quoted Rust `Debug` strings. Documents copy such lines with
//! spaces instead of tabs and sometimes without the timestamp; both are accepted.

use std::collections::BTreeMap;
use std::time::Duration;

pub use meshcert_model::LogLine;

/// Why a line is not a ztunnel log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogParseError {
    #[error("the line is empty")]
    Empty,
    #[error("no log level where one was expected (found {found:?}): is this ztunnel output?")]
    NoLevel { found: String },
    #[error("no target after the level {level:?}")]
    NoTarget { level: String },
    #[error("field {key:?}: the quoted value is never closed (was the line cut?)")]
    UnterminatedQuote { key: String },
    #[error("field {key:?}: unknown escape {escape:?} in the quoted value")]
    BadEscape { key: String, escape: String },
    #[error("{word:?} after the key=value fields: message words must come before them")]
    WordAfterFields { word: String },
    #[error("JSON log line: {0}")]
    Json(String),
}

const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Parses one line of either format; `observed_at` is zero, the caller sets it.
pub fn parse_line(raw: &str) -> Result<LogLine, LogParseError> {
    let line = raw.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(LogParseError::Empty);
    }
    if line.trim_start().starts_with('{') {
        return parse_json(line, raw);
    }
    parse_text(line, raw)
}

fn parse_json(line: &str, raw: &str) -> Result<LogLine, LogParseError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| LogParseError::Json(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(LogParseError::Json("not an object".into()));
    };
    let text = |key: &str| match map.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    };
    let level = text("level")
        .map(|l| l.to_ascii_lowercase())
        .filter(|l| LEVELS.contains(&l.as_str()))
        .ok_or_else(|| {
            LogParseError::Json(format!(
                "\"level\" is {:?}, not a log level",
                map.get("level")
            ))
        })?;
    let target = text("scope")
        .or_else(|| text("target"))
        .ok_or_else(|| LogParseError::Json("neither \"scope\" nor \"target\" is present".into()))?;
    let fields = map
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "level" | "time" | "scope" | "target" | "message"
            )
        })
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    Ok(LogLine {
        observed_at: Duration::ZERO,
        timestamp: text("time"),
        level,
        target,
        message: text("message").unwrap_or_default(),
        fields,
        raw: raw.to_string(),
    })
}

/// A cursor over the text line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// The next whitespace-free word, keeping `{...}` span groups (which may hold quoted
    /// spaces) in one piece.
    fn word(&mut self) -> Option<&'a str> {
        self.skip_space();
        if self.rest.is_empty() {
            return None;
        }
        let mut depth = 0usize;
        let mut quoted = false;
        let mut escaped = false;
        let mut end = self.rest.len();
        for (i, c) in self.rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' if depth > 0 => quoted = !quoted,
                '{' if !quoted => depth += 1,
                '}' if !quoted => depth = depth.saturating_sub(1),
                c if c.is_whitespace() && depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word)
    }

    /// If the cursor is at `key=`, consumes it and returns the key.
    fn key(&mut self) -> Option<&'a str> {
        self.skip_space();
        let end = self.rest.find('=')?;
        let key = &self.rest[..end];
        let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return None;
        }
        self.rest = &self.rest[end + 1..];
        Some(key)
    }

    /// A bare value (up to whitespace) or a quoted one (Rust `Debug` escapes).
    fn value(&mut self, key: &str) -> Result<String, LogParseError> {
        let Some(quoted) = self.rest.strip_prefix('"') else {
            let end = self
                .rest
                .find(char::is_whitespace)
                .unwrap_or(self.rest.len());
            let (value, rest) = self.rest.split_at(end);
            self.rest = rest;
            return Ok(value.to_string());
        };
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &quoted[i + 1..];
                    return Ok(value);
                }
                '\\' => {
                    let bad = |escape: &str| LogParseError::BadEscape {
                        key: key.to_string(),
                        escape: escape.to_string(),
                    };
                    let (_, e) = chars
                        .next()
                        .ok_or_else(|| LogParseError::UnterminatedQuote {
                            key: key.to_string(),
                        })?;
                    match e {
                        '"' | '\\' | '\'' => value.push(e),
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        '0' => value.push('\0'),
                        'u' => {
                            // `\u{1f600}`, as Rust's Debug writes non-printable characters.
                            let tail = &quoted[i + 2..];
                            let close = tail.find('}').ok_or_else(|| bad("\\u"))?;
                            let hex = tail
                                .strip_prefix('{')
                                .map(|t| &t[..close - 1])
                                .ok_or_else(|| bad("\\u"))?;
                            let c = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| bad(&format!("\\u{{{hex}}}")))?;
                            value.push(c);
                            for _ in 0..=close {
                                chars.next();
                            }
                        }
                        other => return Err(bad(&format!("\\{other}"))),
                    }
                }
                c => value.push(c),
            }
        }
        Err(LogParseError::UnterminatedQuote {
            key: key.to_string(),
        })
    }
}

fn looks_like_timestamp(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit()) && word.contains([':', '-'])
}

fn parse_text(line: &str, raw: &str) -> Result<LogLine, LogParseError> {
    let mut cursor = Cursor { rest: line };
    let mut first = cursor.word().ok_or(LogParseError::Empty)?;
    let timestamp = if looks_like_timestamp(first) {
        let ts = first.to_string();
        first = cursor.word().ok_or(LogParseError::NoLevel {
            found: String::new(),
        })?;
        Some(ts)
    } else {
        None
    };
    let level = first.to_ascii_lowercase();
    if !LEVELS.contains(&level.as_str()) {
        return Err(LogParseError::NoLevel {
            found: first.to_string(),
        });
    }
    // The target token may carry span scopes (`proxy::inbound:inbound{peer=..}`); the target
    // is the module path before the first single colon.
    let scoped = cursor.word().ok_or_else(|| LogParseError::NoTarget {
        level: level.clone(),
    })?;
    if scoped.contains('=') && !scoped.contains('{') {
        return Err(LogParseError::NoTarget { level });
    }
    let target = module_path(scoped).to_string();

    let mut message = Vec::new();
    let mut fields = BTreeMap::new();
    loop {
        cursor.skip_space();
        if cursor.rest.is_empty() {
            break;
        }
        if let Some(key) = cursor.key() {
            let value = cursor.value(key)?;
            fields.insert(key.to_string(), value);
            continue;
        }
        let word = cursor.word().unwrap_or_default();
        if !fields.is_empty() {
            return Err(LogParseError::WordAfterFields {
                word: word.to_string(),
            });
        }
        message.push(word);
    }
    Ok(LogLine {
        observed_at: Duration::ZERO,
        timestamp,
        level,
        target,
        message: message.join(" "),
        fields,
        raw: raw.to_string(),
    })
}

/// `proxy::inbound:inbound{..}:conn{..}` -> `proxy::inbound`.
fn module_path(scoped: &str) -> &str {
    let bytes = scoped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' | b'{' => return &scoped[..i],
            _ => i += 1,
        }
    }
    scoped
}

/// What a log field must hold: a stated value, or any non-empty one where the documentation
/// shows a value that depends on the cause (an OS error text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Exactly(String),
    NonEmpty,
}

/// Whether `line` holds every `(field, expected)`; the first mismatch, with the line, if not.
pub fn check_fields(line: &LogLine, expected: &[(String, Expected)]) -> Result<(), String> {
    for (key, want) in expected {
        let value = line
            .field(key)
            .ok_or_else(|| format!("field {key} is missing: {}", line.raw))?;
        match want {
            Expected::Exactly(want) if value != want => {
                return Err(format!("{key}={value:?}, expected {want:?}: {}", line.raw));
            }
            Expected::NonEmpty if value.is_empty() => {
                return Err(format!("{key} is empty: {}", line.raw));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    // The guide's lines (seed 000). The last three are wrapped over several lines there;
    // here each is one line, as ztunnel writes it.
    const ACCESS: &str = r#"2025-03-06T16:52:48.095517Z info access connection complete src.addr=10.10.0.14:40292 src.workload="client-in-ambient-6b5c96c4f8-x2j9k" src.namespace="httpbin" src.identity="spiffe://cluster.local/ns/httpbin/sa/client-in-ambient" dst.addr=10.10.0.15:8080 dst.service="in-ambient.httpbin.svc.cluster.local" dst.workload="in-ambient-7d8f9b6c54-abc12" dst.namespace="httpbin" direction="outbound" bytes_sent=78 bytes_recv=45 duration="12ms""#;
    const HEALTH_CHECK: &str = r#"2025-03-11T18:32:15.421Z warn health_check connection failed to endpoint dst.addr=10.10.0.15:8080 dst.workload="in-ambient-7d8f9b6c54-ghi56" dst.service="in-ambient.httpbin.svc.cluster.local" error="connection timeout""#;
    const EWMA: &str = r#"2025-03-11T18:32:15.422Z info ewma updating endpoint health score dst.workload="in-ambient-7d8f9b6c54-ghi56" previous_score=1.0 new_score=0.65"#;
    const CIRCUIT_BREAKER: &str = r#"2025-03-11T18:32:16.103Z warn circuit_breaker endpoint marked unhealthy dst.workload="in-ambient-7d8f9b6c54-ghi56" consecutive_failures=3 status="open""#;

    #[rstest]
    #[case::access(ACCESS, "2025-03-06T16:52:48.095517Z", "info", "access", "connection complete", &[("src.addr", "10.10.0.14:40292"), ("src.identity", "spiffe://cluster.local/ns/httpbin/sa/client-in-ambient"), ("dst.workload", "in-ambient-7d8f9b6c54-abc12"), ("direction", "outbound"), ("bytes_sent", "78"), ("duration", "12ms")], 12)]
    #[case::health_check(HEALTH_CHECK, "2025-03-11T18:32:15.421Z", "warn", "health_check", "connection failed to endpoint", &[("dst.addr", "10.10.0.15:8080"), ("dst.service", "in-ambient.httpbin.svc.cluster.local"), ("error", "connection timeout")], 4)]
    #[case::ewma(EWMA, "2025-03-11T18:32:15.422Z", "info", "ewma", "updating endpoint health score", &[("previous_score", "1.0"), ("new_score", "0.65")], 3)]
    #[case::circuit_breaker(CIRCUIT_BREAKER, "2025-03-11T18:32:16.103Z", "warn", "circuit_breaker", "endpoint marked unhealthy", &[("consecutive_failures", "3"), ("status", "open")], 3)]
    fn guide_lines(
        #[case] raw: &str,
        #[case] timestamp: &str,
        #[case] level: &str,
        #[case] target: &str,
        #[case] message: &str,
        #[case] some_fields: &[(&str, &str)],
        #[case] field_count: usize,
    ) {
        let line = parse_line(raw).unwrap();
        assert_eq!(line.timestamp.as_deref(), Some(timestamp));
        assert_eq!(line.level, level);
        assert!(line.is(target, message), "{line:?}");
        for (k, v) in some_fields {
            assert_eq!(line.field(k), Some(*v), "field {k}");
        }
        assert_eq!(line.fields.len(), field_count);
        assert_eq!(line.raw, raw);
        assert_eq!(line.observed_at, Duration::ZERO);
    }

    #[test]
    fn upstream_tabs_no_timestamp_and_spans() {
        let tabs = "2025-03-06T16:52:48.095517Z\tinfo\taccess\tconnection complete\tsrc.addr=10.0.0.1:1 bytes_sent=78";
        let spaced = "info   access    connection complete   src.addr=10.0.0.1:1  bytes_sent=78";
        let (a, b) = (parse_line(tabs).unwrap(), parse_line(spaced).unwrap());
        assert_eq!(
            (a.message.as_str(), &a.fields),
            (b.message.as_str(), &b.fields)
        );
        assert_eq!(b.timestamp, None);

        let spans = r#"2025-01-01T00:00:00Z	warn	proxy::inbound:inbound{peer="10.0.0.1 x" id=3}	failed	error="boom""#;
        let line = parse_line(spans).unwrap();
        assert_eq!(line.target, "proxy::inbound");
        assert!(line.is("proxy::inbound", "failed"));
        assert_eq!(line.field("error"), Some("boom"));
    }

    #[test]
    fn quoted_values_are_unescaped() {
        let raw =
            r#"info access done a="say \"hi\"" b="back\\slash" c="tab\there" d="\u{1f600}" e="""#;
        let line = parse_line(raw).unwrap();
        assert_eq!(line.field("a"), Some(r#"say "hi""#));
        assert_eq!(line.field("b"), Some(r"back\slash"));
        assert_eq!(line.field("c"), Some("tab\there"));
        assert_eq!(line.field("d"), Some("\u{1f600}"));
        assert_eq!(line.field("e"), Some(""));
        assert_eq!(line.field_f64("a"), None);
    }

    #[test]
    fn numeric_fields() {
        let line = parse_line(EWMA).unwrap();
        assert_eq!(line.field_f64("new_score"), Some(0.65));
        assert_eq!(line.field_f64("missing"), None);
    }

    #[rstest]
    #[case::access(r#"{"level":"info","time":"2025-03-06T16:52:48.095517Z","scope":"access","message":"connection complete","src.addr":"10.10.0.14:40292","dst.workload":"in-ambient-7d8f9b6c54-abc12","bytes_sent":78,"direction":"outbound"}"#, ACCESS)]
    #[case::health_check(r#"{"level":"warn","time":"2025-03-11T18:32:15.421Z","target":"health_check","message":"connection failed to endpoint","dst.addr":"10.10.0.15:8080","error":"connection timeout"}"#, HEALTH_CHECK)]
    #[case::ewma(r#"{"level":"info","time":"2025-03-11T18:32:15.422Z","scope":"ewma","message":"updating endpoint health score","previous_score":1.0,"new_score":0.65}"#, EWMA)]
    #[case::circuit_breaker(r#"{"level":"WARN","time":"2025-03-11T18:32:16.103Z","scope":"circuit_breaker","message":"endpoint marked unhealthy","consecutive_failures":3,"status":"open"}"#, CIRCUIT_BREAKER)]
    fn json_equivalents(#[case] json: &str, #[case] text: &str) {
        let (j, t) = (parse_line(json).unwrap(), parse_line(text).unwrap());
        assert_eq!(
            (&j.timestamp, &j.level, &j.target, &j.message),
            (&t.timestamp, &t.level, &t.target, &t.message)
        );
        for (k, v) in &j.fields {
            assert_eq!(t.field(k), Some(v.as_str()), "field {k}");
        }
    }

    #[test]
    fn json_non_string_values_are_their_json_text() {
        let line = parse_line(
            r#"{"level":"info","scope":"x","message":"m","ok":true,"n":null,"span":{"id":1}}"#,
        )
        .unwrap();
        assert_eq!(line.field("ok"), Some("true"));
        assert_eq!(line.field("n"), Some("null"));
        assert_eq!(line.field("span"), Some(r#"{"id":1}"#));
        assert_eq!(line.timestamp, None);
    }

    #[rstest]
    #[case::empty("   ", LogParseError::Empty)]
    #[case::prose("hello world this is not a log", LogParseError::NoLevel { found: "hello".into() })]
    #[case::only_timestamp("2025-03-06T16:52:48Z", LogParseError::NoLevel { found: String::new() })]
    #[case::no_target("2025-03-06T16:52:48Z info", LogParseError::NoTarget { level: "info".into() })]
    #[case::field_as_target("info a=b", LogParseError::NoTarget { level: "info".into() })]
    #[case::cut("info access done dst.workload=\"in-amb", LogParseError::UnterminatedQuote { key: "dst.workload".into() })]
    #[case::bad_escape(r#"info access done a="\q""#, LogParseError::BadEscape { key: "a".into(), escape: "\\q".into() })]
    #[case::word_after_fields("info access done a=1 stray", LogParseError::WordAfterFields { word: "stray".into() })]
    #[case::json_no_level(r#"{"scope":"x","message":"m"}"#, LogParseError::Json("\"level\" is None, not a log level".into()))]
    #[case::json_no_scope(r#"{"level":"info","message":"m"}"#, LogParseError::Json("neither \"scope\" nor \"target\" is present".into()))]
    fn garbage_is_refused(#[case] raw: &str, #[case] expected: LogParseError) {
        assert_eq!(parse_line(raw).unwrap_err(), expected);
    }

    #[test]
    fn broken_json_says_why() {
        let err = parse_line(r#"{"level":"info","#).unwrap_err();
        assert!(matches!(err, LogParseError::Json(_)), "{err:?}");
    }

    #[test]
    fn fields_are_checked_by_value_not_presence() {
        let line = parse_line(r#"warn health_check connection failed to endpoint dst.addr=10.0.0.1:8080 error="timed out""#).unwrap();
        let want = |k: &str, v: Expected| (k.to_string(), v);
        let exact = |v: &str| Expected::Exactly(v.to_string());
        assert_eq!(
            check_fields(
                &line,
                &[
                    want("dst.addr", exact("10.0.0.1:8080")),
                    want("error", Expected::NonEmpty)
                ]
            ),
            Ok(())
        );
        let wrong = check_fields(&line, &[want("dst.addr", exact("10.0.0.2:8080"))]).unwrap_err();
        assert!(wrong.contains("expected \"10.0.0.2:8080\""), "{wrong}");
        let missing = check_fields(&line, &[want("status", Expected::NonEmpty)]).unwrap_err();
        assert!(missing.contains("field status is missing"), "{missing}");
    }
}
