//! Verdicts on which replicas answered a batch and how the answers spread.
//!
//! Three claims, kept apart so each counts against the behaviour that makes it:
//! - *only these replicas answered* (a priority level, the healthy replicas): exact, false-alarm
//!   rate 0 for any conformant mesh;
//! - *every one of them answered* (a level is exactly these replicas, new replicas joined):
//!   statistical; a conformant mesh that picks uniformly at random leaves some replica with no
//!   answer with probability at most `k (1 - 1/k)^n` (union bound), which must not exceed the
//!   step's false-alarm rate, else the plan sends too few requests;
//! - *evenly* (L4-RR-1): an exact multinomial test (chi-square for large plans) at the step's
//!   false-alarm rate.

use crate::stats::{UniformityTest, UniformityVerdict};

/// One request's answer: the replica that answered it, or `None` when it failed.
pub type Answer<'a> = Option<&'a str>;

/// Why a verdict failed. [`Finding::TooFew`] is a fault of the plan (the feature sends too few
/// requests for its false-alarm rate), not of the mesh.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Finding {
    #[error("{} of {n} request(s) failed (#{indices:?})", indices.len())]
    Failed { indices: Vec<usize>, n: usize },
    #[error("{} of {n} request(s) were answered by replicas outside {members:?}: {}", strays.len(), describe_strays(strays))]
    Strays {
        strays: Vec<(usize, String)>,
        members: Vec<String>,
        n: usize,
    },
    #[error(
        "{n} answers are too few to show that each of {k} replicas answers with a false-alarm rate of {alpha}: the plan must send at least {needed}"
    )]
    TooFew {
        n: usize,
        k: usize,
        alpha: f64,
        needed: usize,
    },
    #[error(
        "{missing:?} answered none of {n} requests (counts {counts:?}); a mesh picking evenly among these {k} replicas leaves one out with probability at most {false_alarm:.1e}"
    )]
    Missing {
        missing: Vec<String>,
        counts: Vec<(String, u32)>,
        n: usize,
        k: usize,
        false_alarm: f64,
    },
    #[error(
        "not spread evenly: {verdict}; this plan detects a replica taking 1/{k} + {min_skew:.3} with probability 0.9"
    )]
    Uneven {
        verdict: UniformityVerdict,
        k: usize,
        min_skew: f64,
    },
    #[error(
        "{replica} answered none of the {n} requests; were it still one of {k} replicas picked evenly, that happens with probability {false_alarm:.1e}"
    )]
    NeverPicked {
        replica: String,
        n: usize,
        k: usize,
        false_alarm: f64,
    },
}

impl Finding {
    /// The feature's plan is at fault (too few requests), not the mesh.
    pub fn is_plan_error(&self) -> bool {
        matches!(self, Finding::TooFew { .. })
    }
}

fn describe_strays(strays: &[(usize, String)]) -> String {
    strays
        .iter()
        .map(|(i, r)| format!("#{i} {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many answers each member of a set gave, in the members' order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelCounts {
    pub counts: Vec<(String, u32)>,
}

impl LevelCounts {
    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, c)| *c as usize).sum()
    }

    pub fn of(&self, replica: &str) -> u32 {
        self.counts
            .iter()
            .find(|(r, _)| r == replica)
            .map_or(0, |(_, c)| *c)
    }
}

/// Upper bound on the probability that `n` answers picked uniformly among `k` replicas leave
/// at least one replica with none (union bound `k (1 - 1/k)^n`, capped at 1).
pub fn miss_probability(k: usize, n: usize) -> f64 {
    if k <= 1 {
        return if n == 0 && k == 1 { 1.0 } else { 0.0 };
    }
    let k = k as f64;
    (k * (1.0 - 1.0 / k).powi(n.min(i32::MAX as usize) as i32)).min(1.0)
}

/// The fewest answers for which [`miss_probability`] is at most `alpha`.
pub fn sample_for_every_member(k: usize, alpha: f64) -> usize {
    (1..=100_000)
        .find(|&n| miss_probability(k, n) <= alpha)
        .unwrap_or(usize::MAX)
}

/// Exact: every request was answered, and only by `members`.
pub fn answered_only_by(answers: &[Answer<'_>], members: &[&str]) -> Result<LevelCounts, Finding> {
    answers_only_from(answers, members, 0)
}

/// Exact over the answers: every request that was answered was answered by `members`; and
/// the members took the traffic: at most `failure_budget` requests failed. A rare failed
/// request is no answer from elsewhere (the declared budget, as while a fault is detected);
/// many mean the members did not take the traffic.
pub fn answers_only_from(
    answers: &[Answer<'_>],
    members: &[&str],
    failure_budget: usize,
) -> Result<LevelCounts, Finding> {
    let n = answers.len();
    let failed: Vec<usize> = (0..n).filter(|&i| answers[i].is_none()).collect();
    // Not one answer is no answer from the members either, whatever the budget.
    if failed.len() > failure_budget || (n > 0 && failed.len() == n) {
        return Err(Finding::Failed { indices: failed, n });
    }
    let strays: Vec<(usize, String)> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            a.filter(|r| !members.contains(r))
                .map(|r| (i, r.to_string()))
        })
        .collect();
    if !strays.is_empty() {
        return Err(Finding::Strays {
            strays,
            members: members.iter().map(|m| m.to_string()).collect(),
            n,
        });
    }
    Ok(count(answers, members))
}

/// Answers per member, failures and strays ignored.
pub fn count(answers: &[Answer<'_>], members: &[&str]) -> LevelCounts {
    LevelCounts {
        counts: members
            .iter()
            .map(|m| {
                let c = answers.iter().filter(|a| **a == Some(*m)).count();
                (m.to_string(), c as u32)
            })
            .collect(),
    }
}

/// Statistical: every member answered at least once, with false-alarm rate at most `alpha`
/// for a mesh that picks evenly among them.
pub fn every_member_answered(counts: &LevelCounts, alpha: f64) -> Result<(), Finding> {
    let (n, k) = (counts.total(), counts.counts.len());
    let needed = sample_for_every_member(k, alpha);
    if n < needed {
        return Err(Finding::TooFew {
            n,
            k,
            alpha,
            needed,
        });
    }
    let missing: Vec<String> = counts
        .counts
        .iter()
        .filter(|(_, c)| *c == 0)
        .map(|(r, _)| r.clone())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Finding::Missing {
            missing,
            counts: counts.counts.clone(),
            n,
            k,
            false_alarm: miss_probability(k, n),
        })
    }
}

/// Statistical: the answers are consistent with an even spread over the members (exact
/// multinomial test, or chi-square for large plans), at false-alarm rate `alpha`.
pub fn spread_evenly(counts: &LevelCounts, alpha: f64) -> Result<UniformityVerdict, Finding> {
    let observed: Vec<u32> = counts.counts.iter().map(|(_, c)| *c).collect();
    let test = UniformityTest {
        n: observed.iter().sum(),
        k: observed.len() as u32,
        alpha,
    };
    let verdict = test.check(&observed);
    if verdict.reject {
        Err(Finding::Uneven {
            k: observed.len(),
            min_skew: test.min_detectable_skew(0.9),
            verdict,
        })
    } else {
        Ok(verdict)
    }
}

/// Statistical: `replica`, one of `k` replicas that should share `n` answers evenly, answered
/// `answered` of them; none at all fails it (false-alarm rate `(1 - 1/k)^n` at most `alpha`).
pub fn still_picked(
    replica: &str,
    answered: u32,
    n: usize,
    k: usize,
    alpha: f64,
) -> Result<(), Finding> {
    let false_alarm = if k == 0 {
        1.0
    } else {
        (1.0 - 1.0 / k as f64).powi(n.min(i32::MAX as usize) as i32)
    };
    if false_alarm > alpha {
        let needed = (1..=100_000)
            .find(|&m| (1.0 - 1.0 / k.max(1) as f64).powi(m) <= alpha)
            .unwrap_or(i32::MAX) as usize;
        return Err(Finding::TooFew {
            n,
            k,
            alpha,
            needed,
        });
    }
    if answered == 0 {
        return Err(Finding::NeverPicked {
            replica: replica.to_string(),
            n,
            k,
            false_alarm,
        });
    }
    Ok(())
}

/// Whether two batches over the same replicas were picked the same way (L4-RR-3: no
/// configuration changes the pick). A batch `before` in a repeating order must be followed by
/// one in a repeating order (exact: round robin stays round robin); otherwise the two batches'
/// counts must be homogeneous by Pearson's chi-square test at `alpha` (a changed weighting
/// shows as a difference between the batches).
pub fn same_pick(before: &[String], after: &[String], alpha: f64) -> Result<String, String> {
    if let Ok(period) = crate::order::repeating_period(before) {
        return crate::order::repeating_period(after)
            .map(|p| format!("both batches repeat with period {period} and {p}"))
            .map_err(|e| {
                format!(
                    "the batch before repeated with period {period}, the batch after does not: {e}"
                )
            });
    }
    let mut replicas: Vec<&String> = before.iter().chain(after).collect();
    replicas.sort();
    replicas.dedup();
    let count = |batch: &[String], r: &String| batch.iter().filter(|a| *a == r).count() as f64;
    let (na, nb) = (before.len() as f64, after.len() as f64);
    let total = na + nb;
    let mut statistic = 0.0;
    for r in &replicas {
        let (a, b) = (count(before, r), count(after, r));
        let column = a + b;
        for (observed, rows) in [(a, na), (b, nb)] {
            let expected = rows * column / total;
            if expected > 0.0 {
                statistic += (observed - expected).powi(2) / expected;
            }
        }
    }
    let df = replicas.len().saturating_sub(1) as f64;
    let p = if df == 0.0 {
        1.0
    } else {
        crate::stats::chi_square_sf(statistic, df)
    };
    let counts: Vec<String> = replicas
        .iter()
        .map(|r| format!("{r}: {} -> {}", count(before, r), count(after, r)))
        .collect();
    if p <= alpha {
        Err(format!(
            "the pick changed: counts per replica {counts:?}, chi-square {statistic:.1} on {df} degrees of freedom, p = {p:.1e} <= false-alarm rate {alpha}"
        ))
    } else {
        Ok(format!("counts per replica {counts:?}, p = {p:.2}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn answers(s: &str) -> Vec<Answer<'static>> {
        s.split(' ')
            .map(|a| match a {
                "-" => None,
                "a" => Some("a"),
                "b" => Some("b"),
                "c" => Some("c"),
                "x" => Some("x"),
                other => panic!("no replica {other}"),
            })
            .collect()
    }

    #[rstest]
    #[case(2, 1e-5, 18)]
    #[case(3, 1e-5, 32)]
    #[case(7, 1e-5, 88)]
    #[case(1, 1e-5, 1)]
    fn sample_sizes(#[case] k: usize, #[case] alpha: f64, #[case] n: usize) {
        assert_eq!(sample_for_every_member(k, alpha), n);
        assert!(miss_probability(k, n) <= alpha);
        assert!(k == 1 || miss_probability(k, n - 1) > alpha);
    }

    #[test]
    fn only_members_counts_and_names_strays_and_failures() {
        let ok = answered_only_by(&answers("a b a b"), &["a", "b"]).unwrap();
        assert_eq!(ok.of("a"), 2);
        assert_eq!(ok.total(), 4);
        let stray = answered_only_by(&answers("a x b"), &["a", "b"]).unwrap_err();
        assert!(
            matches!(&stray, Finding::Strays { strays, .. } if strays == &[(1, "x".to_string())])
        );
        let failed = answered_only_by(&answers("a - b"), &["a", "b"]).unwrap_err();
        assert!(matches!(failed, Finding::Failed { indices, .. } if indices == [1]));
    }

    #[test]
    fn every_member_needs_a_big_enough_plan_then_each_member() {
        let few = count(&answers("a b a b"), &["a", "b"]);
        let e = every_member_answered(&few, 1e-5).unwrap_err();
        assert!(e.is_plan_error(), "{e}");
        let all_a: Vec<Answer> = vec![Some("a"); 18];
        let e = every_member_answered(&count(&all_a, &["a", "b"]), 1e-5).unwrap_err();
        assert!(
            matches!(&e, Finding::Missing { missing, .. } if missing == &["b"]),
            "{e}"
        );
        assert!(!e.is_plan_error());
        let mut mixed = all_a.clone();
        mixed[3] = Some("b");
        every_member_answered(&count(&mixed, &["a", "b"]), 1e-5).unwrap();
    }

    #[test]
    fn even_spread_accepts_round_robin_and_rejects_one_replica_taking_all() {
        let rr = count(&answers("a b c a b c a b c a b c"), &["a", "b", "c"]);
        assert!(spread_evenly(&rr, 1e-5).is_ok());
        let one: Vec<Answer> = vec![Some("a"); 30];
        let e = spread_evenly(&count(&one, &["a", "b", "c"]), 1e-5).unwrap_err();
        assert!(e.to_string().contains("not spread evenly"), "{e}");
    }

    /// A uniformly random picker passes the membership and spread verdicts about as often as
    /// the stated false-alarm rate allows (here far more often than 1 - 1e-3 over 2000 trials).
    #[test]
    fn random_picker_passes_at_the_stated_rate() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let members = ["a", "b", "c"];
        let mut failures = 0;
        for _ in 0..2000 {
            let picks: Vec<Answer> = (0..32)
                .map(|_| Some(members[(next() % 3) as usize]))
                .collect();
            let counts = count(&picks, &members);
            if every_member_answered(&counts, 1e-5).is_err()
                || spread_evenly(&counts, 1e-5).is_err()
            {
                failures += 1;
            }
        }
        assert!(failures <= 2, "{failures} of 2000 random batches failed");
    }

    #[rstest]
    #[case(0, 32, 3, Some("none of the 32"))]
    #[case(1, 32, 3, None)]
    #[case(5, 12, 3, Some("at least 29"))]
    fn still_picked_cases(
        #[case] answered: u32,
        #[case] n: usize,
        #[case] k: usize,
        #[case] expect: Option<&str>,
    ) {
        match (still_picked("a", answered, n, k, 1e-5), expect) {
            (Ok(()), None) => {}
            (Err(e), Some(text)) => assert!(e.to_string().contains(text), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    fn names(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    #[rstest]
    #[case("abcabcabcabc", "bcabcabcabca", true)]
    #[case("abcabcabcabc", "aabcbcabcacb", false)]
    #[case("aaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaa", true)]
    #[case(
        "abcbacacbbcaabcbacabcacbabcbacbacbabcabc",
        "acbbcaabcacbbacabcabcbacbacbaccbacbabcab",
        true
    )]
    #[case(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
        "abcbacacbbcaabcbacabcacbabcbacbacbabcabc",
        false
    )]
    fn same_pick_cases(#[case] before: &str, #[case] after: &str, #[case] same: bool) {
        let verdict = same_pick(&names(before), &names(after), 1e-5);
        assert_eq!(verdict.is_ok(), same, "{verdict:?}");
    }

    #[test]
    fn answers_only_from_ignores_failures_but_not_strays() {
        let m = ["a", "b"];
        let ok = [Some("a"), None, Some("b"), Some("a")];
        assert_eq!(answers_only_from(&ok, &m, 1).unwrap().total(), 3);
        assert!(matches!(
            answers_only_from(&ok, &m, 0),
            Err(Finding::Failed { n: 4, .. })
        ));
        let stray = [Some("a"), None, Some("x")];
        assert!(matches!(
            answers_only_from(&stray, &m, 2),
            Err(Finding::Strays { ref strays, .. }) if strays == &[(2, "x".to_string())]
        ));
        let silent = [None, None];
        assert!(matches!(
            answers_only_from(&silent, &m, 5),
            Err(Finding::Failed { n: 2, .. })
        ));
    }
}
