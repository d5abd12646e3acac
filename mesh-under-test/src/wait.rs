//! The one waiting helper (STYLE rule 7): poll a probe until it is ready, fails, or a deadline
//! passes, and on timeout say what was last observed. Every wait in meshcert goes through
//! [`eventually`], so one multiplier (`MESHCERT_TIME_SCALE`) stretches them all on slow machines.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use crate::MeshError;

/// Environment variable multiplying every deadline (>= 1; e.g. 3 on a loaded CI runner).
pub const TIME_SCALE_ENV: &str = "MESHCERT_TIME_SCALE";

/// Polls never come closer together than this, so a zero interval cannot spin a core.
const MIN_POLL: Duration = Duration::from_millis(1);

/// What one look at the system found.
#[derive(Debug)]
pub enum Probe<T> {
    /// Done: the wait returns this.
    Ready(T),
    /// Not yet; the text says what was observed, and is reported if the wait times out.
    NotYet(String),
    /// It will never be ready: the wait stops at once with this error.
    Failed(MeshError),
}

/// Polls `probe` every `poll_every` until it is ready or failed, for at most
/// `scaled(deadline)`. A probe that is still running at the deadline is abandoned, so the
/// deadline holds even when the probe itself hangs. The probe runs at least once, and once
/// more at the deadline.
pub async fn eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    poll_every: Duration,
    mut probe: F,
) -> Result<T, MeshError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T>>,
{
    let start = Instant::now();
    let limit = start + scaled(deadline);
    let poll_every = poll_every.max(MIN_POLL);
    let mut last = String::from("nothing yet (the probe never answered)");
    loop {
        let remaining = limit.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, probe()).await {
            Ok(Probe::Ready(value)) => return Ok(value),
            Ok(Probe::Failed(error)) => return Err(error),
            Ok(Probe::NotYet(observed)) => {
                tracing::trace!(what, %observed, "not yet");
                last = observed;
            }
            Err(_) => {
                last = format!("{last} (then a probe was still running at the deadline)");
            }
        }
        let now = Instant::now();
        if now >= limit {
            return Err(MeshError::Timeout {
                what: what.to_string(),
                waited: now - start,
                last,
            });
        }
        tokio::time::sleep_until((now + poll_every).min(limit)).await;
    }
}

/// The multiplier of every deadline, read once from `MESHCERT_TIME_SCALE` (default 1). A value
/// that is not a number >= 1 is warned about once and ignored, rather than failing a run.
pub fn time_scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        let raw = std::env::var(TIME_SCALE_ENV).ok();
        parse_time_scale(raw.as_deref()).unwrap_or_else(|why| {
            tracing::warn!("{TIME_SCALE_ENV}: {why}; using 1");
            1.0
        })
    })
}

/// `d` stretched by [`time_scale`].
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(time_scale())
}

/// The time scale a value of `MESHCERT_TIME_SCALE` asks for; unset or empty is 1.
pub fn parse_time_scale(raw: Option<&str>) -> Result<f64, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(1.0);
    };
    match raw.parse::<f64>() {
        Ok(scale) if (1.0..=1000.0).contains(&scale) => Ok(scale),
        Ok(_) => Err(format!(
            "{raw:?} is out of range: use a number from 1 to 1000"
        )),
        Err(_) => Err(format!(
            "{raw:?} is not a number: use e.g. 2 to double every deadline"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::cell::Cell;

    // tokio's `test-util` (paused time) is not enabled in this workspace, so these tests use
    // real, short durations and assert bounds rather than exact instants.

    #[tokio::test]
    async fn ready_at_once_probes_once() {
        let calls = Cell::new(0);
        let got = eventually(
            "x",
            Duration::from_secs(1),
            Duration::from_millis(5),
            || {
                calls.set(calls.get() + 1);
                async { Probe::Ready(7) }
            },
        )
        .await
        .unwrap();
        assert_eq!((got, calls.get()), (7, 1));
    }

    #[tokio::test]
    async fn ready_on_the_third_poll() {
        let calls = Cell::new(0);
        let got = eventually(
            "x",
            Duration::from_secs(5),
            Duration::from_millis(5),
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n == 3 {
                        Probe::Ready(n)
                    } else {
                        Probe::NotYet(format!("n={n}"))
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn failure_stops_at_once() {
        let calls = Cell::new(0);
        let err = eventually::<(), _, _>(
            "x",
            Duration::from_secs(5),
            Duration::from_millis(5),
            || {
                calls.set(calls.get() + 1);
                async { Probe::Failed(MeshError::Ztunnel("exited".into())) }
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, MeshError::Ztunnel(_)));
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn timeout_reports_the_last_observation() {
        let calls = Cell::new(0);
        let deadline = Duration::from_millis(60);
        let err = eventually::<(), _, _>("pods ready", deadline, Duration::from_millis(20), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { Probe::NotYet(format!("{n} of 3 ready")) }
        })
        .await
        .unwrap_err();
        let MeshError::Timeout { what, waited, last } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(what, "pods ready");
        assert!(*waited >= scaled(deadline), "{waited:?}");
        assert!(
            *waited < scaled(deadline) + Duration::from_secs(1),
            "{waited:?}"
        );
        assert_eq!(*last, format!("{} of 3 ready", calls.get()));
        // Polled at start, every 20ms and at the deadline: about 4 times, never a spin.
        assert!((2..=10).contains(&calls.get()), "{} probes", calls.get());
        assert!(err.to_string().contains("waiting for pods ready"), "{err}");
    }

    #[tokio::test]
    async fn a_hanging_probe_cannot_outlive_the_deadline() {
        let started = Instant::now();
        let calls = Cell::new(0);
        let err = eventually::<(), _, _>(
            "slow",
            Duration::from_millis(50),
            Duration::from_millis(10),
            || {
                calls.set(calls.get() + 1);
                let first = calls.get() == 1;
                async move {
                    if first {
                        Probe::NotYet("warming up".into())
                    } else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Probe::Ready(())
                    }
                }
            },
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let MeshError::Timeout { last, .. } = err else {
            panic!("{err:?}")
        };
        assert!(
            last.starts_with("warming up (then a probe was still running"),
            "{last}"
        );
    }

    #[rstest]
    #[case::unset(None, Ok(1.0))]
    #[case::empty(Some(" "), Ok(1.0))]
    #[case::two(Some("2"), Ok(2.0))]
    #[case::fraction(Some("1.5"), Ok(1.5))]
    #[case::below_one(Some("0.5"), Err("out of range"))]
    #[case::nan(Some("NaN"), Err("out of range"))]
    #[case::word(Some("slow"), Err("not a number"))]
    fn time_scale_values(#[case] raw: Option<&str>, #[case] expected: Result<f64, &str>) {
        match (parse_time_scale(raw), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{got}"),
            (got, want) => panic!("{got:?} but expected {want:?}"),
        }
    }

    #[test]
    fn scaled_is_at_least_the_duration() {
        assert!(time_scale() >= 1.0);
        assert!(scaled(Duration::from_secs(2)) >= Duration::from_secs(2));
    }
}
