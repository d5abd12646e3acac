//! Requests from a client pod of a real cluster, as the guide sends them: `curl` in the pod,
//! one new connection each, run by a single exec of a bounded shell loop. Each request prints
//! a block the driver parses: its body, curl's `-w` line (status, total time, local address)
//! and curl's exit code with its error text.

use std::time::Duration;

use meshcert_mesh::{RequestFailure, RequestOutcome, RequestRecord, replica_of};

const BEGIN: &str = "@@meshcert-begin";
const WRITE_OUT: &str = "@@meshcert-w";
const END: &str = "@@meshcert-rc";

/// The `sh -c` script sending `count` requests to `url`, `interval` apart, each bounded by
/// `timeout` (curl's `--max-time`, which bounds connect and transfer together).
pub fn script(url: &str, count: u32, interval: Duration, timeout: Duration) -> String {
    let url = shell_quote(url);
    let sleep = if interval.is_zero() {
        String::new()
    } else {
        format!(" sleep {:.3};", interval.as_secs_f64())
    };
    format!(
        "i=0; while [ $i -lt {count} ]; do echo {BEGIN} $i; \
         curl -sS --max-time {:.3} -w '\\n{WRITE_OUT} %{{http_code}} %{{time_total}} %{{local_ip}}:%{{local_port}}\\n' \
         {url} 2>/tmp/meshcert-curl.err; rc=$?; \
         echo {END} $rc $(head -c 300 /tmp/meshcert-curl.err | tr '\\n' ' ');{sleep} i=$((i+1)); done",
        timeout.as_secs_f64()
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a curl exit code means, as the local client reports it.
pub fn failure(code: i32, error: &str) -> RequestFailure {
    match code {
        28 => RequestFailure::Timeout,
        7 => RequestFailure::ConnectionRefused,
        // 56: recv failure (reset by peer); 35/55 send failures end the same way.
        56 | 55 => RequestFailure::ConnectionReset,
        52 => RequestFailure::EmptyReply,
        _ => RequestFailure::Other(format!("curl exit {code}: {}", error.trim())),
    }
}

/// Parses the exec's output into records. `started` is the mesh-clock time the exec began:
/// each request's start is estimated from it and the total times and pauses before it (the
/// pod's clock is not the harness's).
pub fn parse(
    output: &str,
    started: Duration,
    interval: Duration,
) -> Result<Vec<RequestRecord>, String> {
    let mut records = Vec::new();
    let mut at = started;
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(index) = line.strip_prefix(BEGIN) else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(format!("unexpected line outside a request block: {line:?}"));
        };
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| format!("bad request number in {line:?}"))?;
        let mut body = String::new();
        let mut write_out: Option<(u16, Duration, String)> = None;
        let end = loop {
            let Some(line) = lines.next() else {
                return Err(format!("request {index}: the output ends inside its block"));
            };
            if let Some(rest) = line.strip_prefix(END) {
                break rest.trim().to_string();
            }
            if let Some(rest) = line.strip_prefix(WRITE_OUT) {
                let mut f = rest.split_whitespace();
                let status = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let total: f64 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
                let local = f.next().unwrap_or("").to_string();
                write_out = Some((status, Duration::from_secs_f64(total.max(0.0)), local));
            } else {
                body.push_str(line);
                body.push('\n');
            }
        };
        let (code, error) = end.split_once(' ').unwrap_or((end.as_str(), ""));
        let code: i32 = code
            .parse()
            .map_err(|_| format!("request {index}: bad curl exit code {code:?}"))?;
        let (status, latency, local) = write_out.unwrap_or((0, Duration::ZERO, String::new()));
        let outcome = if code == 0 && status != 0 {
            RequestOutcome::Answered {
                replica: replica_of(body.trim_end()),
                status,
            }
        } else {
            RequestOutcome::Failed {
                failure: failure(code, error),
            }
        };
        records.push(RequestRecord {
            index,
            started_at: at,
            latency,
            source: (!local.is_empty() && !local.starts_with(':')).then_some(local),
            outcome,
        });
        at += latency + interval;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_bounded_quoted_and_paced() {
        let s = script(
            "http://in-ambient:8000/host'name",
            20,
            Duration::from_millis(100),
            Duration::from_secs(2),
        );
        assert!(s.starts_with("i=0; while [ $i -lt 20 ]; do"), "{s}");
        assert!(s.contains("--max-time 2.000"), "{s}");
        assert!(s.contains(r"'http://in-ambient:8000/host'\''name'"), "{s}");
        assert!(s.contains("sleep 0.100;"), "{s}");
        assert!(!script("http://a/", 1, Duration::ZERO, Duration::from_secs(1)).contains("sleep"));
    }

    #[test]
    fn blocks_parse_into_answered_and_failed_records() {
        let out = "@@meshcert-begin 0\n{\n  \"hostname\": \"in-ambient-7d8f9-abc12\"\n}\n\n@@meshcert-w 200 0.004512 10.244.1.5:41234\n@@meshcert-rc 0\n\
                   @@meshcert-begin 1\n\n@@meshcert-w 000 2.001 :0\n@@meshcert-rc 28 curl: (28) Connection timed out after 2001 milliseconds \n\
                   @@meshcert-begin 2\n\n@@meshcert-w 000 0.002 10.244.1.5:41240\n@@meshcert-rc 56 curl: (56) Recv failure: Connection reset by peer\n\
                   @@meshcert-begin 3\n\n@@meshcert-w 000 0.001 :0\n@@meshcert-rc 6 curl: (6) Could not resolve host: nope\n";
        let records = parse(out, Duration::from_secs(10), Duration::from_millis(100)).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].replica(), Some("in-ambient-7d8f9-abc12"));
        assert_eq!(records[0].source.as_deref(), Some("10.244.1.5:41234"));
        assert_eq!(records[0].started_at, Duration::from_secs(10));
        assert_eq!(
            records[1].outcome,
            RequestOutcome::Failed {
                failure: RequestFailure::Timeout
            }
        );
        assert_eq!(records[1].source, None);
        assert_eq!(
            records[1].started_at,
            Duration::from_secs(10)
                + Duration::from_secs_f64(0.004512)
                + Duration::from_millis(100)
        );
        assert_eq!(
            records[2].outcome,
            RequestOutcome::Failed {
                failure: RequestFailure::ConnectionReset
            }
        );
        assert!(matches!(
            &records[3].outcome,
            RequestOutcome::Failed { failure: RequestFailure::Other(e) } if e.contains("Could not resolve host")
        ));
    }

    #[test]
    fn broken_output_says_where() {
        assert!(
            parse("noise\n", Duration::ZERO, Duration::ZERO)
                .unwrap_err()
                .contains("outside a request block")
        );
        assert!(
            parse("@@meshcert-begin 0\nbody\n", Duration::ZERO, Duration::ZERO)
                .unwrap_err()
                .contains("ends inside its block")
        );
        assert!(
            parse(
                "@@meshcert-begin 0\n@@meshcert-rc x\n",
                Duration::ZERO,
                Duration::ZERO
            )
            .unwrap_err()
            .contains("bad curl exit code")
        );
    }
}
