//! The endpoint pick for one connect attempt: round robin per new connection among the available
//! endpoints of the best level that has any, skipping endpoints this connection already tried;
//! ejected endpoints are deprioritised, not removed. Pure: the counter and randomness come in.

/// How to choose among the candidates of a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickPolicy {
    /// `counter` is the service's connection count before this connection.
    RoundRobin { counter: u64 },
    /// The `first-endpoint` defect.
    First,
    /// The `random-pick` defect; `draw` is a fresh random number.
    Random { draw: u64 },
}

/// Picks an endpoint not yet tried. Available endpoints of any level come before unavailable
/// ones; within that, the best level first. Round robin starts at `counter % candidates` and
/// walks forward past tried endpoints, so a retry goes to the next endpoint in the rotation.
pub fn pick<T>(
    levels: &[Vec<T>],
    policy: PickPolicy,
    is_available: impl Fn(&T) -> bool,
    is_tried: impl Fn(&T) -> bool,
) -> Option<&T> {
    for want_available in [true, false] {
        for level in levels {
            let candidates: Vec<&T> = level
                .iter()
                .filter(|e| is_available(e) == want_available)
                .collect();
            if candidates.iter().all(|e| is_tried(e)) {
                continue;
            }
            let n = candidates.len();
            let chosen = match policy {
                PickPolicy::RoundRobin { counter } => {
                    let start = (counter % n as u64) as usize;
                    (0..n)
                        .map(|i| candidates[(start + i) % n])
                        .find(|e| !is_tried(e))
                }
                PickPolicy::First => candidates.iter().copied().find(|e| !is_tried(e)),
                PickPolicy::Random { draw } => {
                    let untried: Vec<&T> =
                        candidates.into_iter().filter(|e| !is_tried(e)).collect();
                    Some(untried[(draw % untried.len() as u64) as usize])
                }
            };
            if chosen.is_some() {
                return chosen;
            }
        }
    }
    None
}

/// xorshift64: a small deterministic generator for the `random-pick` defect.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// The fixed seed, so a defective run is reproducible.
    pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { Self::SEED } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn rr(counter: u64) -> PickPolicy {
        PickPolicy::RoundRobin { counter }
    }

    fn one_level() -> Vec<Vec<&'static str>> {
        vec![vec!["a", "b", "c"]]
    }

    #[test]
    fn twelve_picks_over_three_repeat_in_order() {
        let levels = one_level();
        let picks: Vec<&str> = (0..12)
            .map(|c| *pick(&levels, rr(c), |_| true, |_| false).unwrap())
            .collect();
        assert_eq!(
            picks,
            ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a", "b", "c"]
        );
    }

    #[test]
    fn an_ejected_endpoint_leaves_the_rotation() {
        let levels = one_level();
        let picks: Vec<&str> = (0..6)
            .map(|c| *pick(&levels, rr(c), |e| *e != "c", |_| false).unwrap())
            .collect();
        assert_eq!(picks, ["a", "b", "a", "b", "a", "b"]);
    }

    #[rstest]
    // A retry walks forward in the rotation past what was tried.
    #[case(2, &["c"], Some("a"))]
    #[case(0, &["a"], Some("b"))]
    #[case(1, &["b", "c"], Some("a"))]
    #[case(1, &["a", "b", "c"], None)]
    fn retry_excludes_tried_endpoints(
        #[case] counter: u64,
        #[case] tried: &[&str],
        #[case] expected: Option<&str>,
    ) {
        let levels = one_level();
        let got = pick(&levels, rr(counter), |_| true, |e| tried.contains(e));
        assert_eq!(got.copied(), expected);
    }

    #[rstest]
    // The best level with an available endpoint wins.
    #[case(&[], &[], Some("local-1"))]
    #[case(&["local-1", "local-2"], &[], Some("remote-1"))]
    // Tried counts like unavailable for moving on to the next level.
    #[case(&["local-1"], &["local-2"], Some("remote-1"))]
    // Nothing available anywhere: fall back to ejected endpoints, best level first.
    #[case(&["local-1", "local-2", "remote-1"], &[], Some("local-1"))]
    #[case(&["local-1", "local-2", "remote-1"], &["local-1", "local-2"], Some("remote-1"))]
    fn levels_and_fallback(
        #[case] ejected: &[&str],
        #[case] tried: &[&str],
        #[case] expected: Option<&str>,
    ) {
        let levels = vec![vec!["local-1", "local-2"], vec!["remote-1"]];
        let got = pick(
            &levels,
            rr(0),
            |e| !ejected.contains(e),
            |e| tried.contains(e),
        );
        assert_eq!(got.copied(), expected);
    }

    #[test]
    fn no_levels_no_pick() {
        let levels: Vec<Vec<&str>> = vec![];
        assert_eq!(pick(&levels, rr(0), |_| true, |_| false), None);
    }

    #[test]
    fn first_policy_always_takes_the_first_available() {
        let levels = one_level();
        for c in 0..5 {
            assert_eq!(
                pick(&levels, PickPolicy::First, |e| *e != "a", |_| false),
                Some(&"b"),
                "{c}"
            );
        }
    }

    #[test]
    fn random_policy_spreads_but_not_in_rotation_order() {
        let levels = one_level();
        let mut rng = XorShift64::new(XorShift64::SEED);
        let picks: Vec<&str> = (0..300)
            .map(|_| {
                *pick(
                    &levels,
                    PickPolicy::Random {
                        draw: rng.next_u64(),
                    },
                    |_| true,
                    |_| false,
                )
                .unwrap()
            })
            .collect();
        for name in ["a", "b", "c"] {
            let n = picks.iter().filter(|p| **p == name).count();
            assert!((70..=130).contains(&n), "{name}: {n}");
        }
        let rotation: Vec<&str> = (0..300).map(|i| ["a", "b", "c"][i % 3]).collect();
        assert_ne!(picks, rotation);
    }

    #[test]
    fn xorshift_is_deterministic_and_never_stuck() {
        let mut a = XorShift64::new(0);
        let mut b = XorShift64::new(XorShift64::SEED);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x != 0));
    }
}
