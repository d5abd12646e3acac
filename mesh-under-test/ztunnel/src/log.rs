//! ztunnel's log lines: structured records, rendered in upstream's text format
//! (`<time> <level> <target> <message> k=v ...`) or as one JSON object per line, and written to
//! stdout by a writer thread so the data path never waits on the terminal.
//!
//! The harness parses these lines and asserts their fields, so targets, messages, field order and
//! value quoting are part of the contract (see the golden tests below).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => {
                return Err(format!(
                    "unknown log level {s:?}; use error, warn, info, debug or trace"
                ));
            }
        })
    }
}

/// A field value; how it renders depends on its kind, as upstream's formatter does.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Quoted with escapes: `dst.workload="in-ambient-abc12"`.
    Str(String),
    /// Written as is: addresses (`dst.addr=10.10.0.15:8080`).
    Bare(String),
    UInt(u64),
    /// Scores, rounded to two decimals and printed like `1.0`, `0.65`.
    Score(f64),
}

impl Value {
    fn write_text(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = match self {
            Value::Str(s) => write!(out, "{s:?}"),
            Value::Bare(s) => write!(out, "{s}"),
            Value::UInt(n) => write!(out, "{n}"),
            Value::Score(x) => write!(out, "{:?}", round2(*x)),
        };
    }

    fn write_json(&self, out: &mut String) {
        let _ = match self {
            Value::Str(s) | Value::Bare(s) => write!(out, "{}", json_string(s)),
            Value::UInt(n) => write!(out, "{n}"),
            Value::Score(x) => write!(out, "{:?}", round2(*x)),
        };
    }
}

/// Rounds a score to two decimals, the precision the guide's log lines show.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// One log event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub level: Level,
    pub target: &'static str,
    pub message: Cow<'static, str>,
    pub fields: Vec<(&'static str, Value)>,
}

impl Record {
    pub fn new(level: Level, target: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            level,
            target,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn str(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((key, Value::Str(value.into())));
        self
    }

    pub fn bare(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.fields.push((key, Value::Bare(value.to_string())));
        self
    }

    pub fn uint(mut self, key: &'static str, value: u64) -> Self {
        self.fields.push((key, Value::UInt(value)));
        self
    }

    pub fn score(mut self, key: &'static str, value: f64) -> Self {
        self.fields.push((key, Value::Score(value)));
        self
    }

    /// Adds a quoted field only when there is a value, as upstream omits unknown fields.
    pub fn opt_str(self, key: &'static str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

impl LogFormat {
    pub fn render(self, record: &Record, time: SystemTime) -> String {
        match self {
            LogFormat::Text => format_text(record, time),
            LogFormat::Json => format_json(record, time),
        }
    }
}

/// `2025-03-06T16:52:48.095517Z info access connection complete src.addr=...`
pub fn format_text(record: &Record, time: SystemTime) -> String {
    let mut out = format!(
        "{} {} {} {}",
        rfc3339_micros(time),
        record.level.as_str(),
        record.target,
        record.message
    );
    for (key, value) in &record.fields {
        let _ = write!(out, " {key}=");
        value.write_text(&mut out);
    }
    out
}

/// `{"level":"info","time":"...","scope":"access","message":"connection complete","src.addr":...}`
pub fn format_json(record: &Record, time: SystemTime) -> String {
    let mut out = format!(
        "{{\"level\":\"{}\",\"time\":\"{}\",\"scope\":{},\"message\":{}",
        record.level.as_str(),
        rfc3339_micros(time),
        json_string(record.target),
        json_string(&record.message)
    );
    for (key, value) in &record.fields {
        let _ = write!(out, ",{}:", json_string(key));
        value.write_json(&mut out);
    }
    out.push('}');
    out
}

/// RFC 3339 UTC with microseconds: `2025-03-06T16:52:48.095517Z`.
pub fn rfc3339_micros(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Which records are written: a default level and per-target overrides (`RUST_LOG` syntax
/// subset: `debug`, `info,circuit_breaker=debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    default: Level,
    targets: Vec<(String, Level)>,
}

impl Default for LogFilter {
    fn default() -> Self {
        Self {
            default: Level::Info,
            targets: Vec::new(),
        }
    }
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut filter = LogFilter::default();
        for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.split_once('=') {
                Some((target, level)) => filter.targets.push((target.to_string(), level.parse()?)),
                None => filter.default = directive.parse()?,
            }
        }
        Ok(filter)
    }
}

impl LogFilter {
    pub fn enabled(&self, level: Level, target: &str) -> bool {
        let max = self
            .targets
            .iter()
            .rev()
            .find(|(t, _)| t == target)
            .map_or(self.default, |(_, l)| *l);
        level <= max
    }
}

/// How long the writer lets a burst of lines gather before one write(2).
const GATHER: Duration = Duration::from_millis(2);

/// Lines waiting for the writer thread. Producers append and wake the writer only when it
/// sleeps with nothing to do, so a burst of connections costs one wake-up and one write, not
/// one of each per line; nothing on the data path ever waits for stdout.
struct Batch {
    state: Mutex<BatchState>,
    /// The writer sleeps here when there is nothing to write.
    work: Condvar,
    /// `flush` waits here for the writer to catch up.
    written: Condvar,
}

#[derive(Default)]
struct BatchState {
    bytes: Vec<u8>,
    /// Lines appended, and lines written, since start.
    queued: u64,
    done: u64,
    writer_asleep: bool,
}

impl Batch {
    fn push(&self, line: &str) {
        let mut state = lock(&self.state);
        state.bytes.extend_from_slice(line.as_bytes());
        state.bytes.push(b'\n');
        state.queued += 1;
        if state.writer_asleep {
            state.writer_asleep = false;
            self.work.notify_one();
        }
    }

    /// The writer thread's loop; returns only if `out` fails.
    fn write_to(&self, out: &mut impl std::io::Write) {
        let mut spare = Vec::new();
        loop {
            let mut state = lock(&self.state);
            while state.bytes.is_empty() {
                state.writer_asleep = true;
                state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            drop(state);
            std::thread::sleep(GATHER);
            let mut state = lock(&self.state);
            std::mem::swap(&mut state.bytes, &mut spare);
            let upto = state.queued;
            drop(state);
            let result = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            lock(&self.state).done = upto;
            self.written.notify_all();
            if result.is_err() {
                return;
            }
        }
    }

    /// Waits (at most `limit`) until every line pushed so far is written.
    fn flush(&self, limit: Duration) {
        let mut state = lock(&self.state);
        let target = state.queued;
        let deadline = std::time::Instant::now() + limit;
        while state.done < target {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

enum Sink {
    /// A writer thread owns stdout.
    Stdout(Arc<Batch>),
    /// Lines kept in memory, for tests.
    Capture(Mutex<Vec<String>>),
}

/// A cheap, cloneable handle to the log output.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<LoggerInner>,
}

struct LoggerInner {
    format: LogFormat,
    filter: LogFilter,
    sink: Sink,
}

impl Logger {
    /// Writes to stdout from a dedicated thread, a few milliseconds after a line arrives, so
    /// the harness, which reads stdout live, sees every line promptly.
    pub fn stdout(format: LogFormat, filter: LogFilter) -> Self {
        let batch = Arc::new(Batch {
            state: Mutex::new(BatchState::default()),
            work: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = Arc::clone(&batch);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.write_to(&mut std::io::stdout()))
            .expect("spawning the log writer thread");
        Self::with_sink(format, filter, Sink::Stdout(batch))
    }

    /// Keeps lines in memory; read them with `captured`.
    pub fn capture(format: LogFormat, filter: LogFilter) -> Self {
        Self::with_sink(format, filter, Sink::Capture(Mutex::new(Vec::new())))
    }

    fn with_sink(format: LogFormat, filter: LogFilter, sink: Sink) -> Self {
        Self {
            inner: Arc::new(LoggerInner {
                format,
                filter,
                sink,
            }),
        }
    }

    pub fn enabled(&self, level: Level, target: &str) -> bool {
        self.inner.filter.enabled(level, target)
    }

    pub fn log(&self, record: Record) {
        if !self.enabled(record.level, record.target) {
            return;
        }
        let line = self.inner.format.render(&record, SystemTime::now());
        match &self.inner.sink {
            Sink::Stdout(batch) => batch.push(&line),
            Sink::Capture(lines) => lock(lines).push(line),
        }
    }

    /// Waits until every line logged so far is written (used at exit).
    pub fn flush(&self) {
        if let Sink::Stdout(batch) = &self.inner.sink {
            batch.flush(Duration::from_secs(2));
        }
    }

    /// Lines kept by a `capture` logger (empty for stdout).
    pub fn captured(&self) -> Vec<String> {
        match &self.inner.sink {
            Sink::Capture(lines) => lock(lines).clone(),
            Sink::Stdout(_) => Vec::new(),
        }
    }

    /// Captured lines, timestamps stripped, that start with `prefix`.
    pub fn captured_starting_with(&self, prefix: &str) -> Vec<String> {
        self.captured()
            .iter()
            .map(|l| strip_timestamp(l).to_string())
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

/// Locks a mutex, ignoring poisoning: a panic elsewhere must not silence the logs.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the leading timestamp of a text line, for golden comparisons.
pub fn strip_timestamp(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::time::Duration;

    /// Collects what the writer thread writes, counting its writes.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<(Vec<u8>, usize)>>);

    impl std::io::Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut c = lock(&self.0);
            c.0.extend_from_slice(buf);
            c.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_burst_of_lines_is_written_whole_in_order_and_in_few_writes() {
        let batch = Arc::new(Batch {
            state: Mutex::new(BatchState::default()),
            work: Condvar::new(),
            written: Condvar::new(),
        });
        let out = Collected::default();
        let (writer, mut sink) = (Arc::clone(&batch), out.clone());
        std::thread::spawn(move || writer.write_to(&mut sink));
        let producers: Vec<_> = (0..4)
            .map(|t| {
                let batch = Arc::clone(&batch);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        batch.push(&format!("t{t} line {i}"));
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        batch.flush(Duration::from_secs(5));
        let (bytes, writes) = lock(&out.0).clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let expected: Vec<String> = (0..500).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, expected, "producer {t}");
        }
        assert_eq!(text.lines().count(), 2000);
        assert!(writes < 200, "{writes} writes for 2000 lines");
    }

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[rstest]
    #[case(at(0, 0), "1970-01-01T00:00:00.000000Z")]
    #[case(at(1_741_279_968, 95_517), "2025-03-06T16:52:48.095517Z")]
    #[case(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z")]
    #[case(at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z")]
    fn timestamps_are_rfc3339_micros(#[case] time: SystemTime, #[case] expected: &str) {
        assert_eq!(rfc3339_micros(time), expected);
    }

    fn ewma_record() -> Record {
        Record::new(Level::Info, "ewma", "updating endpoint health score")
            .str("dst.workload", "in-ambient-7d8f9b6c54-ghi56")
            .score("previous_score", 1.0)
            .score("new_score", 0.65)
    }

    #[test]
    fn text_golden() {
        let line = format_text(&ewma_record(), at(1_741_279_968, 95_517));
        assert_eq!(
            line,
            "2025-03-06T16:52:48.095517Z info ewma updating endpoint health score \
             dst.workload=\"in-ambient-7d8f9b6c54-ghi56\" previous_score=1.0 new_score=0.65"
        );
    }

    #[test]
    fn json_golden() {
        let record = Record::new(Level::Warn, "health_check", "connection failed to endpoint")
            .bare("dst.addr", "10.10.0.15:8080")
            .str("error", "connection \"timeout\"")
            .uint("n", 3)
            .score("s", 0.4225);
        let line = format_json(&record, at(0, 0));
        assert_eq!(
            line,
            r#"{"level":"warn","time":"1970-01-01T00:00:00.000000Z","scope":"health_check","message":"connection failed to endpoint","dst.addr":"10.10.0.15:8080","error":"connection \"timeout\"","n":3,"s":0.42}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["s"], serde_json::json!(0.42));
    }

    #[rstest]
    #[case(1.0, "1.0")]
    #[case(0.65, "0.65")]
    #[case(0.4225, "0.42")]
    #[case(0.274625, "0.27")]
    #[case(0.0001, "0.0")]
    fn scores_print_like_the_guide(#[case] score: f64, #[case] expected: &str) {
        let mut out = String::new();
        Value::Score(score).write_text(&mut out);
        assert_eq!(out, expected);
    }

    #[rstest]
    #[case("", Level::Info, "access", true)]
    #[case("", Level::Debug, "circuit_breaker", false)]
    #[case("debug", Level::Debug, "circuit_breaker", true)]
    #[case("info,circuit_breaker=debug", Level::Debug, "circuit_breaker", true)]
    #[case("info,circuit_breaker=debug", Level::Debug, "ewma", false)]
    #[case("warn", Level::Info, "access", false)]
    fn filter_directives(
        #[case] spec: &str,
        #[case] level: Level,
        #[case] target: &str,
        #[case] on: bool,
    ) {
        let filter: LogFilter = spec.parse().unwrap();
        assert_eq!(filter.enabled(level, target), on);
    }

    #[test]
    fn capture_logger_respects_the_filter() {
        let logger = Logger::capture(LogFormat::Text, LogFilter::default());
        logger.log(Record::new(
            Level::Debug,
            "circuit_breaker",
            "endpoint half open",
        ));
        logger.log(ewma_record());
        let lines = logger.captured();
        assert_eq!(lines.len(), 1);
        assert!(strip_timestamp(&lines[0]).starts_with("info ewma updating endpoint health score"));
    }
}
