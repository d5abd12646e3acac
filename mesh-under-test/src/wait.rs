//! The one waiting helper (STYLE rule 7): poll a probe until it is ready, fails, or a deadline
//! passes, and on timeout say what was last observed. The waits of drivers and steps go through
//! [`eventually`], so one multiplier (`MESHCERT_TIME_SCALE`) stretches them all on slow machines.
//!
//! Where the scale is applied: [`TimeScale::apply`] is the one multiplication, done once per
//! deadline where it is resolved. [`eventually`] applies it to the deadlines the drivers and the
//! harness declare in code; the steps apply it to their windows and request timeouts
//! (`Window::resolve`, `MeshWorld::send_from`), with the scale the runner reads here at its
//! start and hands them in their thresholds, and wait on a resolved window with
//! [`eventually_scaled`] so that it is not stretched twice. Windows and request timeouts grow
//! together: a drop deadline cannot outgrow the request timeout it must beat.

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

/// Polls `probe` every `poll_every` until it is ready or failed, for at most `deadline`
/// stretched by the process's [`time_scale`]. A probe that is still running at the deadline is
/// abandoned, so the deadline holds even when the probe itself hangs. The probe runs at least
/// once, and once more at the deadline.
pub async fn eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    poll_every: Duration,
    probe: F,
) -> Result<T, MeshError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T>>,
{
    eventually_scaled(what, time_scale().apply(deadline), poll_every, probe).await
}

/// [`eventually`] for a deadline that is already stretched: a step's window, resolved through
/// the thresholds that carry the scale. Stretching it again would count the scale twice.
pub async fn eventually_scaled<T, F, Fut>(
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
    let limit = start + deadline;
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

/// The multiplier of every deadline a verdict depends on (>= 1; e.g. 3 on a loaded CI runner).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    /// No stretching: deadlines as declared.
    pub const ONE: TimeScale = TimeScale(1.0);

    /// The scale a value of `MESHCERT_TIME_SCALE` asks for; unset or empty is 1.
    pub fn parse(raw: Option<&str>) -> Result<TimeScale, String> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(TimeScale::ONE);
        };
        match raw.parse::<f64>() {
            Ok(scale) if (1.0..=1000.0).contains(&scale) => Ok(TimeScale(scale)),
            Ok(_) => Err(format!(
                "{raw:?} is out of range: use a number from 1 to 1000"
            )),
            Err(_) => Err(format!(
                "{raw:?} is not a number: use e.g. 2 to double every deadline"
            )),
        }
    }

    pub fn factor(self) -> f64 {
        self.0
    }

    /// `deadline` stretched by the scale: the one multiplication of a deadline in meshcert.
    /// At scale 1 it is `deadline` itself, to the nanosecond.
    pub fn apply(self, deadline: Duration) -> Duration {
        if self == TimeScale::ONE {
            deadline
        } else {
            deadline.mul_f64(self.0)
        }
    }
}

impl Default for TimeScale {
    fn default() -> Self {
        TimeScale::ONE
    }
}

/// The process's time scale: `MESHCERT_TIME_SCALE`, read once (the runner asks first, at its
/// start). A value that is not a number from 1 to 1000 is warned about once and ignored,
/// rather than failing a run.
pub fn time_scale() -> TimeScale {
    static SCALE: OnceLock<TimeScale> = OnceLock::new();
    *SCALE.get_or_init(|| {
        let raw = std::env::var(TIME_SCALE_ENV).ok();
        TimeScale::parse(raw.as_deref()).unwrap_or_else(|why| {
            tracing::warn!("{TIME_SCALE_ENV}: {why}; using 1");
            TimeScale::ONE
        })
    })
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
        let deadline = time_scale().apply(deadline);
        assert!(*waited >= deadline, "{waited:?}");
        assert!(*waited < deadline + Duration::from_secs(1), "{waited:?}");
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
        match (TimeScale::parse(raw), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got.factor(), want),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{got}"),
            (got, want) => panic!("{got:?} but expected {want:?}"),
        }
    }

    #[rstest]
    #[case::one("1", Duration::from_millis(1500), Duration::from_millis(1500))]
    #[case::odd_nanos("1", Duration::new(7, 123_456_789), Duration::new(7, 123_456_789))]
    #[case::two("2", Duration::from_millis(1500), Duration::from_secs(3))]
    #[case::fraction("1.5", Duration::from_secs(2), Duration::from_secs(3))]
    fn a_scale_stretches_a_deadline(
        #[case] raw: &str,
        #[case] deadline: Duration,
        #[case] stretched: Duration,
    ) {
        let scale = TimeScale::parse(Some(raw)).unwrap();
        assert_eq!(scale.apply(deadline), stretched);
    }

    #[test]
    fn the_process_scale_is_at_least_one() {
        assert!(time_scale().factor() >= 1.0);
    }
}
