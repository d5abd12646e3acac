//! Outlier detection as the Solo guide describes it: per endpoint, an EWMA health score and a
//! circuit breaker, fed by active health checks and by data-path connects. Pure state machines:
//! time comes in as an argument, events come out for the caller to log.

use std::time::{Duration, Instant};

use crate::log::{Level, Record, round2};

/// How one health check or connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierSettings {
    /// EWMA weight of the newest observation.
    pub alpha: f64,
    /// Consecutive failures that open a closed breaker.
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// False only with the `never-eject` defect.
    pub eject: bool,
    /// False only with the `never-restore` defect.
    pub restore: bool,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            alpha: 0.35,
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(250),
            max_ejection: Duration::from_secs(1),
            eject: true,
            restore: true,
        }
    }
}

/// Exponentially weighted moving average of successes (1) and failures (0), starting at 1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    score: f64,
}

impl Default for Ewma {
    fn default() -> Self {
        Self { score: 1.0 }
    }
}

impl Ewma {
    pub fn score(&self) -> f64 {
        self.score
    }

    /// `new = alpha * x + (1 - alpha) * old`; returns the new score.
    pub fn observe(&mut self, outcome: Outcome, alpha: f64) -> f64 {
        let x = match outcome {
            Outcome::Success => 1.0,
            Outcome::Failure => 0.0,
        };
        self.score = alpha * x + (1.0 - alpha) * self.score;
        self.score
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Ejected until `until`.
    Open {
        until: Instant,
    },
    /// The ejection is over; the next observation decides.
    HalfOpen,
}

impl BreakerState {
    pub fn name(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A change of breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerTransition {
    Opened {
        consecutive_failures: u32,
        ejection: Duration,
    },
    HalfOpened,
    Closed,
}

/// Consecutive-failure circuit breaker with exponential ejection backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    state: BreakerState,
    consecutive_failures: u32,
    /// Ejections since the breaker was last closed; sets the backoff.
    ejections: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            ejections: 0,
        }
    }
}

/// `base * 2^(k-1)`, capped at `max`, for the k-th consecutive ejection (k >= 1).
pub fn ejection_time(base: Duration, max: Duration, k: u32) -> Duration {
    let factor = 1u32.checked_shl(k.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

impl CircuitBreaker {
    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Only a closed breaker takes data-path traffic first; open and half-open endpoints are
    /// deprioritised (used only when nothing else is left), and the health check probes them.
    pub fn is_available(&self) -> bool {
        self.state == BreakerState::Closed
    }

    /// Lets time pass: an expired ejection becomes half-open.
    pub fn poll(&mut self, now: Instant, s: &OutlierSettings) -> Option<BreakerTransition> {
        match self.state {
            BreakerState::Open { until } if s.restore && now >= until => {
                self.state = BreakerState::HalfOpen;
                Some(BreakerTransition::HalfOpened)
            }
            _ => None,
        }
    }

    pub fn observe(
        &mut self,
        outcome: Outcome,
        now: Instant,
        s: &OutlierSettings,
    ) -> Vec<BreakerTransition> {
        let mut transitions: Vec<BreakerTransition> = self.poll(now, s).into_iter().collect();
        match outcome {
            Outcome::Success => {
                self.consecutive_failures = 0;
                if self.state == BreakerState::HalfOpen {
                    self.state = BreakerState::Closed;
                    self.ejections = 0;
                    transitions.push(BreakerTransition::Closed);
                }
            }
            Outcome::Failure => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let open = match self.state {
                    BreakerState::Closed => {
                        s.eject && self.consecutive_failures >= s.consecutive_failures
                    }
                    BreakerState::HalfOpen => true,
                    // Failures during an ejection do not extend it: the probe decides after.
                    BreakerState::Open { .. } => false,
                };
                if open {
                    self.ejections += 1;
                    let ejection = ejection_time(s.base_ejection, s.max_ejection, self.ejections);
                    self.state = BreakerState::Open {
                        until: now + ejection,
                    };
                    transitions.push(BreakerTransition::Opened {
                        consecutive_failures: self.consecutive_failures,
                        ejection,
                    });
                }
            }
        }
        transitions
    }
}

/// What the caller should log after an observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HealthEvent {
    /// The score changed at the two decimals the log shows.
    Score {
        previous: f64,
        new: f64,
    },
    Breaker(BreakerTransition),
}

impl HealthEvent {
    /// The log line of this event, exactly as the guide shows it.
    pub fn record(&self, workload: &str) -> Record {
        match *self {
            HealthEvent::Score { previous, new } => {
                Record::new(Level::Info, "ewma", "updating endpoint health score")
                    .str("dst.workload", workload)
                    .score("previous_score", previous)
                    .score("new_score", new)
            }
            HealthEvent::Breaker(BreakerTransition::Opened {
                consecutive_failures,
                ..
            }) => Record::new(Level::Warn, "circuit_breaker", "endpoint marked unhealthy")
                .str("dst.workload", workload)
                .uint("consecutive_failures", u64::from(consecutive_failures))
                .str("status", "open"),
            HealthEvent::Breaker(BreakerTransition::HalfOpened) => {
                Record::new(Level::Debug, "circuit_breaker", "endpoint half open")
                    .str("dst.workload", workload)
                    .str("status", "half_open")
            }
            HealthEvent::Breaker(BreakerTransition::Closed) => {
                Record::new(Level::Info, "circuit_breaker", "endpoint marked healthy")
                    .str("dst.workload", workload)
                    .str("status", "closed")
            }
        }
    }
}

/// The health of one endpoint (workload + target port).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EndpointHealth {
    pub ewma: Ewma,
    pub breaker: CircuitBreaker,
}

impl EndpointHealth {
    pub fn observe(
        &mut self,
        outcome: Outcome,
        now: Instant,
        s: &OutlierSettings,
    ) -> Vec<HealthEvent> {
        let previous = self.ewma.score();
        let new = self.ewma.observe(outcome, s.alpha);
        let mut events = Vec::new();
        if round2(previous) != round2(new) {
            events.push(HealthEvent::Score { previous, new });
        }
        events.extend(
            self.breaker
                .observe(outcome, now, s)
                .into_iter()
                .map(HealthEvent::Breaker),
        );
        events
    }

    pub fn poll(&mut self, now: Instant, s: &OutlierSettings) -> Option<HealthEvent> {
        self.breaker.poll(now, s).map(HealthEvent::Breaker)
    }

    pub fn is_available(&self) -> bool {
        self.breaker.is_available()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogFormat, strip_timestamp};
    use rstest::rstest;
    use std::time::SystemTime;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn ewma_exact_values() {
        let mut ewma = Ewma::default();
        assert_eq!(ewma.score(), 1.0);
        let expected = [0.65, 0.4225, 0.274625, 0.17850625];
        for want in expected {
            let got = ewma.observe(Outcome::Failure, 0.35);
            assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
        }
        let got = ewma.observe(Outcome::Success, 0.35);
        assert!((got - (0.35 + 0.65 * 0.17850625)).abs() < 1e-12);
    }

    #[rstest]
    #[case(1, MS(250))]
    #[case(2, MS(500))]
    #[case(3, MS(1000))]
    #[case(4, MS(1000))]
    #[case(40, MS(1000))]
    fn backoff_doubles_up_to_the_cap(#[case] k: u32, #[case] expected: Duration) {
        assert_eq!(ejection_time(MS(250), MS(1000), k), expected);
    }

    #[test]
    fn breaker_opens_half_opens_reopens_with_backoff_then_closes() {
        let s = OutlierSettings::default();
        let t0 = Instant::now();
        let mut b = CircuitBreaker::default();
        assert!(b.observe(Outcome::Failure, t0, &s).is_empty());
        assert!(b.observe(Outcome::Failure, t0 + MS(200), &s).is_empty());
        assert_eq!(
            b.observe(Outcome::Failure, t0 + MS(400), &s),
            [BreakerTransition::Opened {
                consecutive_failures: 3,
                ejection: MS(250)
            }]
        );
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + MS(650)
            }
        );
        assert!(!b.is_available());
        // Failures inside the ejection neither extend it nor log a new ejection.
        assert!(b.observe(Outcome::Failure, t0 + MS(600), &s).is_empty());
        assert_eq!(b.poll(t0 + MS(649), &s), None);
        assert_eq!(
            b.poll(t0 + MS(650), &s),
            Some(BreakerTransition::HalfOpened)
        );
        assert!(!b.is_available());
        // The probe fails: open again, twice as long.
        assert_eq!(
            b.observe(Outcome::Failure, t0 + MS(800), &s),
            [BreakerTransition::Opened {
                consecutive_failures: 5,
                ejection: MS(500)
            }]
        );
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + MS(1300)
            }
        );
        // Half-open and probe succeed in one observation.
        assert_eq!(
            b.observe(Outcome::Success, t0 + MS(1400), &s),
            [BreakerTransition::HalfOpened, BreakerTransition::Closed]
        );
        assert!(b.is_available());
        assert_eq!(b.consecutive_failures(), 0);
        // Backoff was reset: the next ejection is the base again.
        for i in 0..2 {
            assert!(
                b.observe(Outcome::Failure, t0 + MS(1500 + i), &s)
                    .is_empty()
            );
        }
        assert_eq!(
            b.observe(Outcome::Failure, t0 + MS(1600), &s),
            [BreakerTransition::Opened {
                consecutive_failures: 3,
                ejection: MS(250)
            }]
        );
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let s = OutlierSettings::default();
        let t0 = Instant::now();
        let mut b = CircuitBreaker::default();
        let outcomes = [
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Success,
            Outcome::Failure,
            Outcome::Failure,
        ];
        for outcome in outcomes {
            assert!(b.observe(outcome, t0, &s).is_empty());
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 2);
    }

    #[test]
    fn never_eject_counts_but_stays_closed() {
        let s = OutlierSettings {
            eject: false,
            ..OutlierSettings::default()
        };
        let t0 = Instant::now();
        let mut h = EndpointHealth::default();
        for _ in 0..10 {
            let events = h.observe(Outcome::Failure, t0, &s);
            assert!(
                events
                    .iter()
                    .all(|e| matches!(e, HealthEvent::Score { .. }))
            );
        }
        assert!(h.is_available());
        assert_eq!(h.breaker.consecutive_failures(), 10);
    }

    #[test]
    fn never_restore_stays_open() {
        let s = OutlierSettings {
            restore: false,
            ..OutlierSettings::default()
        };
        let t0 = Instant::now();
        let mut b = CircuitBreaker::default();
        for _ in 0..3 {
            b.observe(Outcome::Failure, t0, &s);
        }
        assert_eq!(b.poll(t0 + Duration::from_secs(3600), &s), None);
        assert!(
            b.observe(Outcome::Success, t0 + Duration::from_secs(3600), &s)
                .is_empty()
        );
        assert!(!b.is_available());
    }

    #[test]
    fn events_and_log_lines_of_three_failed_checks() {
        let s = OutlierSettings::default();
        let t0 = Instant::now();
        let mut h = EndpointHealth::default();
        let mut lines = Vec::new();
        for i in 0..3 {
            for event in h.observe(Outcome::Failure, t0 + MS(200 * i), &s) {
                let line =
                    LogFormat::Text.render(&event.record("in-ambient-ghi56"), SystemTime::now());
                lines.push(strip_timestamp(&line).to_string());
            }
        }
        assert_eq!(
            lines,
            [
                "info ewma updating endpoint health score dst.workload=\"in-ambient-ghi56\" previous_score=1.0 new_score=0.65",
                "info ewma updating endpoint health score dst.workload=\"in-ambient-ghi56\" previous_score=0.65 new_score=0.42",
                "info ewma updating endpoint health score dst.workload=\"in-ambient-ghi56\" previous_score=0.42 new_score=0.27",
                "warn circuit_breaker endpoint marked unhealthy dst.workload=\"in-ambient-ghi56\" consecutive_failures=3 status=\"open\"",
            ]
        );
        let restored: Vec<String> = h
            .observe(Outcome::Success, t0 + MS(1000), &s)
            .iter()
            .map(|e| {
                strip_timestamp(&LogFormat::Text.render(&e.record("p"), SystemTime::now()))
                    .to_string()
            })
            .collect();
        assert_eq!(
            restored,
            [
                "info ewma updating endpoint health score dst.workload=\"p\" previous_score=0.27 new_score=0.53",
                "debug circuit_breaker endpoint half open dst.workload=\"p\" status=\"half_open\"",
                "info circuit_breaker endpoint marked healthy dst.workload=\"p\" status=\"closed\"",
            ]
        );
    }

    #[test]
    fn score_staying_at_one_logs_nothing() {
        let s = OutlierSettings::default();
        let mut h = EndpointHealth::default();
        assert!(h.observe(Outcome::Success, Instant::now(), &s).is_empty());
    }
}
