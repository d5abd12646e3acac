//! The proxy's mutable load-balancing state: one round-robin counter per service, the random
//! generator of the random-pick defects, and the outlier state of every endpoint. No I/O:
//! callers pass the time in and log the events that come out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::defects::{Defect, Defects};
use crate::model::{Endpoint, EndpointKey, Route};
use crate::outlier::{EndpointHealth, HealthEvent, Outcome, OutlierSettings};
use crate::picker::{LevelOrder, PickPolicy, XorShift64, pick, pick_weighted};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    RoundRobin,
    First,
    Random,
    WeightedRandom,
}

#[derive(Debug)]
pub struct Balancer {
    settings: OutlierSettings,
    /// Off: every endpoint is always available and nothing is observed.
    outlier_detection: bool,
    policy: Policy,
    level_order: LevelOrder,
    counters: HashMap<String, u64>,
    rng: XorShift64,
    health: HashMap<EndpointKey, EndpointHealth>,
    /// The `eject-on-http-5xx` defect: answers in a row that were HTTP 5xx, per endpoint, and
    /// the endpoints ejected for it (for good, as a DestinationRule's long ejection would).
    http_5xx_streak: HashMap<EndpointKey, u32>,
    http_ejected: HashSet<EndpointKey>,
}

impl Balancer {
    pub fn new(settings: OutlierSettings, outlier_detection: bool, defects: &Defects) -> Self {
        let policy = if defects.is_on(Defect::FirstEndpoint) {
            Policy::First
        } else if defects.is_on(Defect::RandomPick) {
            Policy::Random
        } else if defects.is_on(Defect::WeightedRandom) {
            Policy::WeightedRandom
        } else {
            Policy::RoundRobin
        };
        let level_order = if defects.is_on(Defect::FailOverTwoLevels) {
            LevelOrder::SkipNextLevel
        } else {
            LevelOrder::BestFirst
        };
        Self {
            settings,
            outlier_detection,
            policy,
            level_order,
            counters: HashMap::new(),
            rng: XorShift64::from_clock(),
            health: HashMap::new(),
            http_5xx_streak: HashMap::new(),
            http_ejected: HashSet::new(),
        }
    }

    pub fn settings(&self) -> &OutlierSettings {
        &self.settings
    }

    /// Counts a new client connection to a service; returns the count before it, which every
    /// attempt of that connection picks with.
    pub fn start_connection(&mut self, service_key: &str) -> u64 {
        let counter = self.counters.entry(service_key.to_string()).or_insert(0);
        let before = *counter;
        *counter = counter.wrapping_add(1);
        before
    }

    /// Picks an endpoint of `route` for one connect attempt, skipping `tried`.
    pub fn pick(
        &mut self,
        route: &Route,
        counter: u64,
        tried: &[EndpointKey],
    ) -> Option<Arc<Endpoint>> {
        let draw = self.rng.next_u64();
        let available = |e: &Arc<Endpoint>| self.is_available(&e.key);
        let is_tried = |e: &Arc<Endpoint>| tried.contains(&e.key);
        let policy = match self.policy {
            Policy::RoundRobin => PickPolicy::RoundRobin { counter },
            Policy::First => PickPolicy::First,
            Policy::Random => PickPolicy::Random { draw },
            Policy::WeightedRandom => {
                return pick_weighted(
                    &route.levels,
                    draw,
                    self.level_order,
                    available,
                    is_tried,
                    |e| u64::from(e.workload.capacity),
                )
                .cloned();
            }
        };
        pick(&route.levels, policy, self.level_order, available, is_tried).cloned()
    }

    pub fn is_available(&self, key: &EndpointKey) -> bool {
        let tcp = !self.outlier_detection
            || self
                .health
                .get(key)
                .is_none_or(EndpointHealth::is_available);
        tcp && !self.http_ejected.contains(key)
    }

    /// The `eject-on-http-5xx` defect: an answer of an endpoint, 5xx or not. After as many 5xx
    /// in a row as the breaker's consecutive failures, the endpoint leaves the rotation; TCP
    /// detection and recovery are untouched.
    pub fn observe_answer(&mut self, key: &EndpointKey, answered_5xx: bool) {
        let streak = self.http_5xx_streak.entry(key.clone()).or_insert(0);
        *streak = if answered_5xx { *streak + 1 } else { 0 };
        if *streak >= self.settings.consecutive_failures {
            self.http_ejected.insert(key.clone());
        }
    }

    pub fn observe(
        &mut self,
        key: &EndpointKey,
        outcome: Outcome,
        now: Instant,
    ) -> Vec<HealthEvent> {
        if !self.outlier_detection {
            return Vec::new();
        }
        let settings = self.settings;
        self.health
            .entry(key.clone())
            .or_default()
            .observe(outcome, now, &settings)
    }

    /// Lets time pass for every breaker: expired ejections become half-open.
    pub fn poll(&mut self, now: Instant) -> Vec<(EndpointKey, HealthEvent)> {
        let settings = self.settings;
        let mut events: Vec<(EndpointKey, HealthEvent)> = self
            .health
            .iter_mut()
            .filter_map(|(k, h)| h.poll(now, &settings).map(|e| (k.clone(), e)))
            .collect();
        events.sort_by(|a, b| a.0.cmp(&b.0));
        events
    }

    pub fn health(&self, key: &EndpointKey) -> EndpointHealth {
        self.health.get(key).copied().unwrap_or_default()
    }

    /// Forgets endpoints that left the config; the others keep their state across a reload.
    pub fn retain(&mut self, keep: impl Fn(&EndpointKey) -> bool) {
        self.health.retain(|k, _| keep(k));
        self.http_5xx_streak.retain(|k, _| keep(k));
        self.http_ejected.retain(|k| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranking::tests::workload;
    use std::time::Duration;

    /// A route whose levels hold the named endpoints, at 10.0.0.1.. in order.
    fn levels_route(levels: &[&[&str]]) -> Route {
        let mut ip = 0;
        let levels = levels
            .iter()
            .map(|names| {
                names
                    .iter()
                    .map(|name| {
                        ip += 1;
                        let w = workload(name);
                        Arc::new(Endpoint {
                            key: EndpointKey {
                                uid: w.uid.clone(),
                                port: 8080,
                            },
                            addr: format!("10.0.0.{ip}:8080").parse().unwrap(),
                            workload: Arc::new(w),
                            service: "svc".into(),
                        })
                    })
                    .collect()
            })
            .collect();
        Route {
            service_key: "ns/svc".into(),
            hostname: "svc".into(),
            port: 8000,
            levels,
            strict: None,
        }
    }

    fn route(names: &[&str]) -> Route {
        levels_route(&[names])
    }

    fn key(r: &Route, name: &str) -> EndpointKey {
        r.endpoints()
            .find(|e| e.workload.name == name)
            .unwrap()
            .key
            .clone()
    }

    /// Where the next `n` new connections go.
    fn next_picks(b: &mut Balancer, r: &Route, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let c = b.start_connection(&r.service_key);
                name(&b.pick(r, c, &[]).unwrap()).to_string()
            })
            .collect()
    }

    fn name(e: &Arc<Endpoint>) -> &str {
        &e.workload.name
    }

    #[test]
    fn one_counter_per_service_and_connection() {
        let mut b = Balancer::new(OutlierSettings::default(), true, &Defects::none());
        let r = route(&["a", "b", "c"]);
        let mut picks = Vec::new();
        for _ in 0..12 {
            let c = b.start_connection(&r.service_key);
            picks.push(name(&b.pick(&r, c, &[]).unwrap()).to_string());
        }
        assert_eq!(picks.join(" "), "a b c a b c a b c a b c");
        assert_eq!(b.start_connection("ns/other"), 0);
        assert_eq!(b.start_connection(&r.service_key), 12);
    }

    #[test]
    fn retries_do_not_advance_the_rotation() {
        let mut b = Balancer::new(OutlierSettings::default(), true, &Defects::none());
        let r = route(&["a", "b", "c"]);
        let c = b.start_connection(&r.service_key);
        let first = b.pick(&r, c, &[]).unwrap();
        let second = b.pick(&r, c, std::slice::from_ref(&first.key)).unwrap();
        assert_eq!((name(&first), name(&second)), ("a", "b"));
        let next = b.start_connection(&r.service_key);
        assert_eq!(name(&b.pick(&r, next, &[]).unwrap()), "b");
    }

    #[test]
    fn ejected_endpoints_are_deprioritised_then_restored_state_kept_on_retain() {
        let mut b = Balancer::new(OutlierSettings::default(), true, &Defects::none());
        let r = route(&["a", "b", "c"]);
        let c_key = r.levels[0][2].key.clone();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.observe(&c_key, Outcome::Failure, t0);
        }
        assert!(!b.is_available(&c_key));
        let picks: Vec<String> = (0..4)
            .map(|_| {
                let c = b.start_connection(&r.service_key);
                name(&b.pick(&r, c, &[]).unwrap()).to_string()
            })
            .collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
        // With everything else tried, the ejected endpoint is still a last resort.
        let tried = [r.levels[0][0].key.clone(), r.levels[0][1].key.clone()];
        assert_eq!(name(&b.pick(&r, 0, &tried).unwrap()), "c");
        b.retain(|k| k == &c_key);
        assert!(!b.is_available(&c_key));
        assert_eq!(
            b.poll(t0 + Duration::from_millis(250)),
            [(
                c_key.clone(),
                HealthEvent::Breaker(crate::outlier::BreakerTransition::HalfOpened)
            )]
        );
        b.retain(|_| false);
        assert!(b.is_available(&c_key));
    }

    #[test]
    fn outlier_detection_off_observes_nothing() {
        let mut b = Balancer::new(OutlierSettings::default(), false, &Defects::none());
        let key = EndpointKey {
            uid: "u".into(),
            port: 1,
        };
        for _ in 0..5 {
            assert!(b.observe(&key, Outcome::Failure, Instant::now()).is_empty());
        }
        assert!(b.is_available(&key));
    }

    #[test]
    fn first_endpoint_defect_ignores_the_counter() {
        let defects: Defects = [Defect::FirstEndpoint].into_iter().collect();
        let mut b = Balancer::new(OutlierSettings::default(), true, &defects);
        let r = route(&["a", "b", "c"]);
        for _ in 0..5 {
            let c = b.start_connection(&r.service_key);
            assert_eq!(name(&b.pick(&r, c, &[]).unwrap()), "a");
        }
    }

    #[test]
    fn an_ejected_best_level_fails_over_one_level_and_returns_after_a_good_probe() {
        let mut b = Balancer::new(OutlierSettings::default(), true, &Defects::none());
        let r = levels_route(&[&["p0"], &["p1-a", "p1-b"], &["p2"]]);
        let p0 = key(&r, "p0");
        assert_eq!(next_picks(&mut b, &r, 2), ["p0", "p0"]);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.observe(&p0, Outcome::Failure, t0);
        }
        assert_eq!(next_picks(&mut b, &r, 4), ["p1-a", "p1-b", "p1-a", "p1-b"]);
        // Half-open is still not available: only a good probe brings p0 back.
        let expiry = t0 + b.settings().base_ejection;
        assert_eq!(b.poll(expiry).len(), 1);
        assert_eq!(next_picks(&mut b, &r, 2), ["p1-a", "p1-b"]);
        b.observe(&p0, Outcome::Success, expiry);
        assert_eq!(next_picks(&mut b, &r, 3), ["p0", "p0", "p0"]);
    }

    #[test]
    fn fail_over_two_levels_defect_skips_the_next_level() {
        let defects: Defects = [Defect::FailOverTwoLevels].into_iter().collect();
        let mut b = Balancer::new(OutlierSettings::default(), true, &defects);
        let r = levels_route(&[&["p0"], &["p1"], &["p2"]]);
        assert_eq!(next_picks(&mut b, &r, 2), ["p0", "p0"]);
        for _ in 0..3 {
            b.observe(&key(&r, "p0"), Outcome::Failure, Instant::now());
        }
        assert_eq!(next_picks(&mut b, &r, 2), ["p2", "p2"]);
    }

    #[test]
    fn a_retry_under_strict_stays_among_the_matching_endpoints() {
        // A Strict route holds only the matching endpoints: once both are tried, nothing is left.
        let mut b = Balancer::new(OutlierSettings::default(), true, &Defects::none());
        let r = levels_route(&[&["local-a", "local-b"]]);
        let c = b.start_connection(&r.service_key);
        let first = b.pick(&r, c, &[]).unwrap();
        let second = b.pick(&r, c, std::slice::from_ref(&first.key)).unwrap();
        assert_eq!((name(&first), name(&second)), ("local-a", "local-b"));
        assert_eq!(
            b.pick(&r, c, &[first.key.clone(), second.key.clone()]),
            None
        );
    }

    #[test]
    fn consecutive_5xx_answers_eject_for_good() {
        let r = route(&["a", "b"]);
        let mut b = Balancer::new(OutlierSettings::default(), true, &Defects::none());
        let a = key(&r, "a");
        b.observe_answer(&a, true);
        b.observe_answer(&a, true);
        b.observe_answer(&a, false);
        b.observe_answer(&a, true);
        b.observe_answer(&a, true);
        assert!(
            b.is_available(&a),
            "a streak broken by a good answer starts again"
        );
        b.observe_answer(&a, true);
        assert!(!b.is_available(&a));
        b.observe(&a, Outcome::Success, Instant::now());
        assert!(!b.is_available(&a), "TCP successes do not bring it back");
    }
}
