//! The endpoint pick for one connect attempt: round robin per new connection among the available
//! endpoints of the best level that has any, skipping endpoints this connection already tried;
//! ejected endpoints are deprioritised, not removed. Pure: the counter and randomness come in.
//! Availability is asked afresh at every pick, so traffic leaves a level as soon as its last
//! endpoint is ejected and comes back as soon as one recovers (TD-FO-1).

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

/// The order in which levels are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelOrder {
    /// Best first, then one level at a time (TD-FO-1).
    BestFirst,
    /// The `fail-over-two-levels` defect: from the best level straight to the one after next;
    /// the next level comes last.
    SkipNextLevel,
}

impl LevelOrder {
    /// The index of the level tried `i`-th among `n` levels.
    fn level(self, i: usize, n: usize) -> usize {
        match self {
            LevelOrder::SkipNextLevel if n >= 3 && i > 0 => {
                if i == n - 1 {
                    1
                } else {
                    i + 1
                }
            }
            LevelOrder::BestFirst | LevelOrder::SkipNextLevel => i,
        }
    }
}

/// Picks an endpoint not yet tried. Available endpoints of any level come before unavailable
/// ones; within that, levels in `order`. Round robin starts at `counter % candidates` and
/// walks forward past tried endpoints, so a retry goes to the next endpoint in the rotation.
pub fn pick<T>(
    levels: &[Vec<T>],
    policy: PickPolicy,
    order: LevelOrder,
    is_available: impl Fn(&T) -> bool,
    is_tried: impl Fn(&T) -> bool,
) -> Option<&T> {
    let candidates = candidates(levels, order, is_available, &is_tried)?;
    let n = candidates.len();
    match policy {
        PickPolicy::RoundRobin { counter } => {
            let start = (counter % n as u64) as usize;
            (0..n)
                .map(|i| candidates[(start + i) % n])
                .find(|e| !is_tried(e))
        }
        PickPolicy::First => candidates.iter().copied().find(|e| !is_tried(e)),
        PickPolicy::Random { draw } => {
            let untried: Vec<&T> = candidates.into_iter().filter(|e| !is_tried(e)).collect();
            Some(untried[(draw % untried.len() as u64) as usize])
        }
    }
}

/// The `weighted-random` defect (upstream's pick): among the untried candidates of the level
/// [`pick`] would use, one at random with probability proportional to `weight` (capacity).
pub fn pick_weighted<T>(
    levels: &[Vec<T>],
    draw: u64,
    order: LevelOrder,
    is_available: impl Fn(&T) -> bool,
    is_tried: impl Fn(&T) -> bool,
    weight: impl Fn(&T) -> u64,
) -> Option<&T> {
    let untried: Vec<&T> = candidates(levels, order, is_available, &is_tried)?
        .into_iter()
        .filter(|e| !is_tried(e))
        .collect();
    let total: u64 = untried.iter().map(|e| weight(e).max(1)).sum();
    let mut point = draw % total.max(1);
    for e in &untried {
        let w = weight(e).max(1);
        if point < w {
            return Some(e);
        }
        point -= w;
    }
    untried.last().copied()
}

/// The endpoints of the first level, in `order`, that has one not yet tried: available
/// endpoints of every level first, unavailable ones only when no available one is left.
fn candidates<'a, T>(
    levels: &'a [Vec<T>],
    order: LevelOrder,
    is_available: impl Fn(&T) -> bool,
    is_tried: &impl Fn(&T) -> bool,
) -> Option<Vec<&'a T>> {
    for want_available in [true, false] {
        for i in 0..levels.len() {
            let level = &levels[order.level(i, levels.len())];
            let candidates: Vec<&T> = level
                .iter()
                .filter(|e| is_available(e) == want_available)
                .collect();
            if !candidates.iter().all(|e| is_tried(e)) {
                return Some(candidates);
            }
        }
    }
    None
}

/// xorshift64: a small generator for the random-pick defects.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// The seed of tests, so they are reproducible.
    pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

    /// A seed from the clock and the process: every defective run draws a new sample, as a
    /// random picker in the field would.
    pub fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

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

    const BEST: LevelOrder = LevelOrder::BestFirst;
    const SKIP: LevelOrder = LevelOrder::SkipNextLevel;

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
            .map(|c| *pick(&levels, rr(c), BEST, |_| true, |_| false).unwrap())
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
            .map(|c| *pick(&levels, rr(c), BEST, |e| *e != "c", |_| false).unwrap())
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
        let got = pick(&levels, rr(counter), BEST, |_| true, |e| tried.contains(e));
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
            BEST,
            |e| !ejected.contains(e),
            |e| tried.contains(e),
        );
        assert_eq!(got.copied(), expected);
    }

    fn three_levels() -> Vec<Vec<&'static str>> {
        vec![vec!["p0-a", "p0-b"], vec!["p1-a", "p1-b"], vec!["p2"]]
    }

    /// Where four new connections go while `ejected` endpoints are unavailable.
    fn four_picks(
        levels: &[Vec<&'static str>],
        order: LevelOrder,
        ejected: &[&str],
    ) -> Vec<&'static str> {
        (0..4)
            .map(|c| *pick(levels, rr(c), order, |e| !ejected.contains(e), |_| false).unwrap())
            .collect()
    }

    #[rstest]
    #[case::all_up(BEST, &[], &["p0-a", "p0-b", "p0-a", "p0-b"])]
    #[case::p0_half_down_stays(BEST, &["p0-a"], &["p0-b"; 4])]
    #[case::p0_down_one_level_only(BEST, &["p0-a", "p0-b"], &["p1-a", "p1-b", "p1-a", "p1-b"])]
    #[case::p0_p1_down(BEST, &["p0-a", "p0-b", "p1-a", "p1-b"], &["p2"; 4])]
    #[case::all_down_best_level_first(BEST, &["p0-a", "p0-b", "p1-a", "p1-b", "p2"], &["p0-a", "p0-b", "p0-a", "p0-b"])]
    #[case::defect_p0_up(SKIP, &[], &["p0-a", "p0-b", "p0-a", "p0-b"])]
    #[case::defect_skips_p1(SKIP, &["p0-a", "p0-b"], &["p2"; 4])]
    #[case::defect_p1_last(SKIP, &["p0-a", "p0-b", "p2"], &["p1-a", "p1-b", "p1-a", "p1-b"])]
    fn failover_level_by_level(
        #[case] order: LevelOrder,
        #[case] ejected: &[&str],
        #[case] expected: &[&str],
    ) {
        assert_eq!(four_picks(&three_levels(), order, ejected), expected);
    }

    #[test]
    fn defect_with_two_levels_has_nothing_to_skip() {
        let levels = vec![vec!["p0"], vec!["p1"]];
        assert_eq!(four_picks(&levels, SKIP, &["p0"]), ["p1"; 4]);
    }

    #[test]
    fn traffic_moves_down_then_back_as_endpoints_recover() {
        let levels = three_levels();
        let phases: [(&[&str], [&str; 4]); 4] = [
            (&[], ["p0-a", "p0-b", "p0-a", "p0-b"]),
            (&["p0-a", "p0-b"], ["p1-a", "p1-b", "p1-a", "p1-b"]),
            // One endpoint above recovers: every connection returns to it at once.
            (&["p0-b"], ["p0-a"; 4]),
            (&[], ["p0-a", "p0-b", "p0-a", "p0-b"]),
        ];
        for (ejected, expected) in phases {
            assert_eq!(
                four_picks(&levels, BEST, ejected),
                expected,
                "ejected {ejected:?}"
            );
        }
    }

    #[test]
    fn no_levels_no_pick() {
        let levels: Vec<Vec<&str>> = vec![];
        assert_eq!(pick(&levels, rr(0), BEST, |_| true, |_| false), None);
    }

    #[test]
    fn first_policy_always_takes_the_first_available() {
        let levels = one_level();
        for c in 0..5 {
            assert_eq!(
                pick(&levels, PickPolicy::First, BEST, |e| *e != "a", |_| false),
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
                    BEST,
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

    #[test]
    fn weighted_pick_follows_capacity_within_the_best_level() {
        let levels = vec![vec![("a", 1u64), ("b", 3)], vec![("c", 100)]];
        let mut rng = XorShift64::new(XorShift64::SEED);
        let mut b = 0;
        for _ in 0..4000 {
            let e =
                pick_weighted(&levels, rng.next_u64(), BEST, |_| true, |_| false, |e| e.1).unwrap();
            assert_ne!(
                e.0, "c",
                "the next level is used only when the best one has none left"
            );
            b += usize::from(e.0 == "b");
        }
        assert!(
            (2800..3200).contains(&b),
            "b (capacity 3 of 4) was picked {b} of 4000 times"
        );
        let tried = pick_weighted(&levels, 7, BEST, |_| true, |e| e.0 != "c", |e| e.1).unwrap();
        assert_eq!(tried.0, "c");
    }
}
