//! Statistics of distribution assertions (STYLE rule 8): "answers spread evenly over the
//! healthy replicas" is a test of uniformity with a stated false-alarm rate, never a retry
//! until green.
//!
//! The test is the exact multinomial test: the p-value of observed counts is the probability,
//! under the null distribution, of every outcome no more likely than the observed one. Being
//! exact, its false-alarm rate is at most `alpha` for every sample size (a chi-square test
//! only promises that asymptotically). Outcomes are enumerated while that is cheap (at most
//! [`EXACT_LIMIT`] of them; for a uniform null, outcomes that are permutations of each other
//! are enumerated once, which covers 200 answers over 6 replicas); beyond that the Pearson
//! chi-square test stands in. Power is exact up to [`EXACT_POWER_LIMIT`] outcome classes and
//! comes from the noncentral chi-square distribution beyond.

use std::fmt;

/// Most outcomes (compositions, or partitions for a uniform null) enumerated for one exact
/// p-value: 200 answers over 6 replicas is within it.
pub const EXACT_LIMIT: u64 = 5_000_000;

/// Most partitions kept in memory to compute power exactly (each power evaluation walks the
/// rejection region; a skew search does about a hundred): 140 answers over 5 replicas, 500
/// over 3. Larger plans get the noncentral chi-square approximation of the power.
pub const EXACT_POWER_LIMIT: u64 = 200_000;

/// Relative tolerance under which two outcome probabilities count as equally likely, so
/// that rounding cannot split a tie between outcomes that are equally likely in exact arithmetic.
const TIE: f64 = 1e-9;

/// How a p-value or a power was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Enumeration of every outcome: exact.
    ExactMultinomial,
    /// Pearson's chi-square approximation (too many outcomes to enumerate).
    ChiSquare,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::ExactMultinomial => "exact multinomial test",
            Method::ChiSquare => "Pearson chi-square test",
        })
    }
}

/// P-value of `counts` under category probabilities `probs` (exact multinomial test when
/// the outcomes are few enough to enumerate, else Pearson chi-square).
///
/// Panics if `counts` and `probs` differ in length, or `probs` are not probabilities summing
/// to 1: those are programming errors of the caller, not observations.
pub fn multinomial_p_value(counts: &[u32], probs: &[f64]) -> f64 {
    p_value_with_method(counts, probs).0
}

/// [`multinomial_p_value`] and the method that produced it.
pub fn p_value_with_method(counts: &[u32], probs: &[f64]) -> (f64, Method) {
    check_probs(counts.len(), probs);
    let n: u32 = counts.iter().sum();
    let k = counts.len();
    if n == 0 || k <= 1 {
        return (1.0, Method::ExactMultinomial);
    }
    if counts.iter().zip(probs).any(|(&c, &p)| c > 0 && p == 0.0) {
        // An outcome impossible under the null: nothing is less likely.
        return (0.0, Method::ExactMultinomial);
    }
    let uniform = probs.iter().all(|p| (p - 1.0 / k as f64).abs() < 1e-12);
    if uniform && partition_count(n, k as u32) <= EXACT_LIMIT {
        (exact_uniform(counts), Method::ExactMultinomial)
    } else if composition_count(n, k as u32) <= EXACT_LIMIT {
        (
            exact_by_compositions(counts, probs),
            Method::ExactMultinomial,
        )
    } else {
        (chi_square_p_value(counts, probs), Method::ChiSquare)
    }
}

fn check_probs(k: usize, probs: &[f64]) {
    assert_eq!(
        k,
        probs.len(),
        "one probability per category: {k} counts, {} probabilities",
        probs.len()
    );
    assert!(
        probs.iter().all(|p| p.is_finite() && *p >= 0.0),
        "probabilities must be finite and non-negative: {probs:?}"
    );
    let total: f64 = probs.iter().sum();
    assert!(
        (total - 1.0).abs() < 1e-9,
        "probabilities must sum to 1, not {total}: {probs:?}"
    );
}

/// `ln(i!)` for `i` in `0..=max`.
fn log_factorials(max: u32) -> Vec<f64> {
    let mut table = Vec::with_capacity(max as usize + 1);
    let mut acc = 0.0;
    table.push(0.0);
    for i in 1..=max {
        acc += f64::from(i).ln();
        table.push(acc);
    }
    table
}

/// `C(n + k - 1, k - 1)`, saturating.
fn composition_count(n: u32, k: u32) -> u64 {
    let (top, choose) = (u64::from(n) + u64::from(k) - 1, u64::from(k) - 1);
    let mut result: u64 = 1;
    for i in 0..choose {
        // result * (top - i) / (i + 1) stays an integer at every step.
        result = match result.checked_mul(top - i) {
            Some(v) => v / (i + 1),
            None => return u64::MAX,
        };
    }
    result
}

/// Number of partitions of `n` into at most `k` parts, saturating.
fn partition_count(n: u32, k: u32) -> u64 {
    // table[m] = partitions of m into parts of size <= j, for j = 1..=k (conjugate of "at most k parts").
    let mut table = vec![0u64; n as usize + 1];
    table[0] = 1;
    for part in 1..=k as usize {
        for m in part..=n as usize {
            table[m] = table[m].saturating_add(table[m - part]);
        }
    }
    table[n as usize]
}

/// Exact test by enumerating every composition of n into k categories.
fn exact_by_compositions(counts: &[u32], probs: &[f64]) -> f64 {
    let n: u32 = counts.iter().sum();
    let lf = log_factorials(n);
    let ln_p: Vec<f64> = probs.iter().map(|p| p.ln()).collect();
    let log_prob = |x: &[u32]| -> f64 {
        let mut l = lf[n as usize];
        for (i, &c) in x.iter().enumerate() {
            if c > 0 {
                l += f64::from(c) * ln_p[i] - lf[c as usize];
            }
        }
        l
    };
    let threshold = log_prob(counts) + TIE;
    let mut x = vec![0u32; counts.len()];
    let mut total = 0.0;
    for_each_composition(n, &mut x, 0, &mut |x| {
        let l = log_prob(x);
        if l <= threshold {
            total += l.exp();
        }
    });
    total.min(1.0)
}

fn for_each_composition(remaining: u32, x: &mut [u32], at: usize, visit: &mut dyn FnMut(&[u32])) {
    if at == x.len() - 1 {
        x[at] = remaining;
        visit(x);
        return;
    }
    for c in 0..=remaining {
        x[at] = c;
        for_each_composition(remaining - c, x, at + 1, visit);
    }
}

/// One outcome class of a uniform null: a partition of n into at most k parts.
struct Partition {
    /// `ln` of the probability of one arrangement under the uniform null.
    log_p0: f64,
    /// `ln` of the number of arrangements (k! / product of multiplicities!).
    log_arrangements: f64,
    /// `ln(n! / product c_i!)`.
    log_coef: f64,
    /// Distinct part values and how many parts have each.
    values: Vec<(u32, u32)>,
}

fn for_each_partition(
    remaining: u32,
    max_part: u32,
    slot: usize,
    parts: &mut [u32],
    visit: &mut dyn FnMut(&[u32]),
) {
    if slot == parts.len() - 1 {
        if remaining <= max_part {
            parts[slot] = remaining;
            visit(parts);
        }
        return;
    }
    let slots_left = (parts.len() - slot) as u32;
    // The largest remaining part is at least ceil(remaining / slots_left).
    let lowest = remaining.div_ceil(slots_left);
    for c in (lowest..=max_part.min(remaining)).rev() {
        parts[slot] = c;
        for_each_partition(remaining - c, c, slot + 1, parts, visit);
    }
}

/// The logarithms that weigh one partition under a uniform null.
#[derive(Debug, Clone, Copy)]
struct Weights {
    /// `ln` of the probability of one arrangement.
    log_p0: f64,
    /// `ln` of the number of arrangements.
    log_arrangements: f64,
    /// `ln(n! / product c_i!)`.
    log_coef: f64,
}

/// Visits every partition of `n` into at most `k` parts with its weights.
fn visit_partitions(n: u32, k: u32, visit: &mut dyn FnMut(&[u32], Weights)) {
    let lf = log_factorials(n.max(k));
    let n_log_k = f64::from(n) * f64::from(k).ln();
    let mut parts = vec![0u32; k as usize];
    for_each_partition(n, n, 0, &mut parts, &mut |parts| {
        let log_coef = lf[n as usize] - parts.iter().map(|&c| lf[c as usize]).sum::<f64>();
        // Parts are sorted, so equal values are adjacent.
        let mut log_arrangements = lf[k as usize];
        let mut run = 1;
        for i in 1..=parts.len() {
            if i < parts.len() && parts[i] == parts[i - 1] {
                run += 1;
            } else {
                log_arrangements -= lf[run];
                run = 1;
            }
        }
        let weights = Weights {
            log_p0: log_coef - n_log_k,
            log_arrangements,
            log_coef,
        };
        visit(parts, weights);
    });
}

fn distinct_values(parts: &[u32]) -> Vec<(u32, u32)> {
    let mut values: Vec<(u32, u32)> = Vec::new();
    for &c in parts {
        match values.last_mut() {
            Some((v, m)) if *v == c => *m += 1,
            _ => values.push((c, 1)),
        }
    }
    values
}

/// Exact test under a uniform null, enumerating partitions instead of compositions.
fn exact_uniform(counts: &[u32]) -> f64 {
    let n: u32 = counts.iter().sum();
    let k = counts.len() as u32;
    let lf = log_factorials(n);
    let observed = lf[n as usize]
        - counts.iter().map(|&c| lf[c as usize]).sum::<f64>()
        - f64::from(n) * f64::from(k).ln();
    let threshold = observed + TIE;
    let mut total = 0.0;
    visit_partitions(n, k, &mut |_, w| {
        if w.log_p0 <= threshold {
            total += (w.log_p0 + w.log_arrangements).exp();
        }
    });
    total.min(1.0)
}

/// Pearson chi-square p-value, over the categories of non-zero probability.
fn chi_square_p_value(counts: &[u32], probs: &[f64]) -> f64 {
    let n = f64::from(counts.iter().sum::<u32>());
    let mut statistic = 0.0;
    let mut categories = 0;
    for (&c, &p) in counts.iter().zip(probs) {
        if p > 0.0 {
            let expected = n * p;
            statistic += (f64::from(c) - expected).powi(2) / expected;
            categories += 1;
        }
    }
    if categories <= 1 {
        return 1.0;
    }
    chi_square_sf(statistic, f64::from(categories - 1))
}

/// `P(X >= x)` for X chi-square with `df` degrees of freedom.
pub fn chi_square_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    upper_regularized_gamma(df / 2.0, x / 2.0)
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7, 9 terms; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 - x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `Q(a, x) = Γ(a, x) / Γ(a)`: series below `a + 1`, continued fraction above.
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Modified Lentz for the continued fraction of Γ(a, x).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// `P(X >= x)` for X noncentral chi-square (`df`, noncentrality `lambda`): a Poisson mixture
/// of central chi-squares.
fn noncentral_chi_square_sf(x: f64, df: f64, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return chi_square_sf(x, df);
    }
    let half = lambda / 2.0;
    let last = (half + 12.0 * (half + 1.0).sqrt() + 30.0).ceil() as u32;
    let mut total = 0.0;
    for j in 0..=last {
        let j = f64::from(j);
        let log_weight = -half + j * half.ln() - ln_gamma(j + 1.0);
        total += log_weight.exp() * chi_square_sf(x, df + 2.0 * j);
    }
    total.clamp(0.0, 1.0)
}

/// The `x` with `chi_square_sf(x, df) = alpha`, by bisection.
fn chi_square_critical(alpha: f64, df: f64) -> f64 {
    let mut hi = df.max(1.0);
    while chi_square_sf(hi, df) > alpha {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if chi_square_sf(mid, df) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// A planned test that answers spread evenly over `k` replicas, from `n` answers, with
/// false-alarm rate at most `alpha` (the probability of failing a mesh that does spread evenly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniformityTest {
    pub n: u32,
    pub k: u32,
    pub alpha: f64,
}

/// The outcome of [`UniformityTest::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct UniformityVerdict {
    pub counts: Vec<u32>,
    pub p_value: f64,
    /// `p_value <= alpha`: the counts are not plausibly uniform.
    pub reject: bool,
    pub alpha: f64,
    pub method: Method,
}

impl fmt::Display for UniformityVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: u32 = self.counts.iter().sum();
        write!(
            f,
            "counts {:?} ({n} answers over {} replicas): p = {:.4} by the {}; {} at false-alarm rate {}",
            self.counts,
            self.counts.len(),
            self.p_value,
            self.method,
            if self.reject {
                "not uniform"
            } else {
                "consistent with uniform"
            },
            self.alpha
        )
    }
}

impl UniformityTest {
    /// Whether `counts` (one per replica) are consistent with a uniform spread. The test is
    /// valid for any total; `n` only matters to [`Self::min_detectable_skew`].
    ///
    /// Panics if there are not `k` counts (the null hypothesis would be a different one).
    pub fn check(&self, counts: &[u32]) -> UniformityVerdict {
        assert_eq!(
            counts.len(),
            self.k as usize,
            "one count per replica: expected {} counts, got {counts:?}",
            self.k
        );
        let probs = vec![1.0 / f64::from(self.k); self.k as usize];
        let (p_value, method) = p_value_with_method(counts, &probs);
        UniformityVerdict {
            counts: counts.to_vec(),
            p_value,
            reject: p_value <= self.alpha,
            alpha: self.alpha,
            method,
        }
    }

    /// How [`Self::check`] computes p-values for `n` answers.
    pub fn method(&self) -> Method {
        if self.k <= 1 || partition_count(self.n, self.k) <= EXACT_LIMIT {
            Method::ExactMultinomial
        } else {
            Method::ChiSquare
        }
    }

    /// How [`Self::power`] and [`Self::min_detectable_skew`] compute: exact enumeration, or
    /// the noncentral chi-square approximation for plans with too many outcomes.
    pub fn power_method(&self) -> Method {
        if self.k <= 1 || partition_count(self.n, self.k) <= EXACT_POWER_LIMIT {
            Method::ExactMultinomial
        } else {
            Method::ChiSquare
        }
    }

    /// Probability that the test rejects when one replica's share is `1/k + delta` and the
    /// others share the rest equally; see [`Self::power_method`] for how.
    pub fn power(&self, delta: f64) -> f64 {
        self.power_fn()(delta)
    }

    /// The smallest skew `delta` such that, when one replica's share is `1/k + delta` (the
    /// others sharing the rest equally), the test rejects with probability at least `power`.
    ///
    /// A step states it next to the false-alarm rate: "n = 90 answers over 3 replicas detect a
    /// replica taking 1/3 + 0.17 of them 80% of the time". Found on a grid of 64 skews, then by
    /// bisection inside the first grid cell that reaches `power` (exact power is not quite
    /// monotonic in `delta`, so a bare bisection could miss a smaller skew). Resolution 1e-6.
    /// Returns `f64::INFINITY` when even a replica taking every answer is not detected with
    /// that power (too few answers for this `alpha`).
    pub fn min_detectable_skew(&self, power: f64) -> f64 {
        assert!(
            (0.0..=1.0).contains(&power),
            "power is a probability, not {power}"
        );
        if self.k <= 1 {
            return f64::INFINITY;
        }
        let max_delta = 1.0 - 1.0 / f64::from(self.k);
        let power_at = self.power_fn();
        const GRID: u32 = 64;
        let mut lo = 0.0;
        let mut hi = None;
        for i in 1..=GRID {
            let delta = max_delta * f64::from(i) / f64::from(GRID);
            if power_at(delta) >= power {
                hi = Some(delta);
                break;
            }
            lo = delta;
        }
        let Some(mut hi) = hi else {
            return f64::INFINITY;
        };
        while hi - lo > 1e-6 {
            let mid = (lo + hi) / 2.0;
            if power_at(mid) >= power {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// A one-line statement of the plan for a step or a report.
    pub fn describe(&self, power: f64) -> String {
        let skew = self.min_detectable_skew(power);
        let detects = if skew.is_finite() {
            format!(
                "detects a replica taking 1/{} + {skew:.3} of the answers with probability {power}",
                self.k
            )
        } else {
            format!("cannot detect any skew with probability {power}: send more requests")
        };
        let power_note = match self.power_method() {
            Method::ExactMultinomial => "",
            Method::ChiSquare => " (power by the noncentral chi-square approximation)",
        };
        format!(
            "{} answers over {} replicas, {}, false-alarm rate {}; {detects}{power_note}",
            self.n,
            self.k,
            self.method(),
            self.alpha
        )
    }

    /// The power as a function of the skew, with the null-side work (the rejection region)
    /// done once.
    fn power_fn(&self) -> Box<dyn Fn(f64) -> f64> {
        let (n, k) = (self.n, self.k);
        if k <= 1 || n == 0 {
            return Box::new(|_| 0.0);
        }
        let kf = f64::from(k);
        let alternative = move |delta: f64| {
            let q0 = (1.0 / kf + delta).clamp(0.0, 1.0);
            let q1 = ((1.0 - q0) / (kf - 1.0)).max(0.0);
            (q0, q1)
        };
        if self.power_method() == Method::ChiSquare {
            let df = kf - 1.0;
            let critical = chi_square_critical(self.alpha, df);
            let nf = f64::from(n);
            return Box::new(move |delta| {
                let (q0, q1) = alternative(delta);
                let p = 1.0 / kf;
                let lambda = nf * ((q0 - p).powi(2) + (kf - 1.0) * (q1 - p).powi(2)) / p;
                noncentral_chi_square_sf(critical, df, lambda)
            });
        }
        let rejected = rejection_region(n, k, self.alpha);
        Box::new(move |delta| {
            let (q0, q1) = alternative(delta);
            let (ln_q0, ln_q1) = (q0.ln(), q1.ln());
            let mut total = 0.0;
            for p in &rejected {
                for &(v, m) in &p.values {
                    // Arrangements with value v in the skewed replica: total * m / k.
                    let rest = n - v;
                    let mut l = p.log_coef + p.log_arrangements + (f64::from(m) / kf).ln();
                    if v > 0 {
                        l += f64::from(v) * ln_q0;
                    }
                    if rest > 0 {
                        l += f64::from(rest) * ln_q1;
                    }
                    total += l.exp();
                }
            }
            total.clamp(0.0, 1.0)
        })
    }
}

/// The partitions the exact uniform test rejects at `alpha`: those whose p-value (the null
/// mass of partitions no more likely) is at most `alpha`.
fn rejection_region(n: u32, k: u32, alpha: f64) -> Vec<Partition> {
    let mut all = Vec::new();
    visit_partitions(n, k, &mut |parts, w| {
        all.push(Partition {
            log_p0: w.log_p0,
            log_arrangements: w.log_arrangements,
            log_coef: w.log_coef,
            values: distinct_values(parts),
        });
    });
    all.sort_by(|a, b| a.log_p0.total_cmp(&b.log_p0));
    let mass: Vec<f64> = all
        .iter()
        .map(|p| (p.log_p0 + p.log_arrangements).exp())
        .collect();
    // p-value of i = mass of every j with log_p0[j] <= log_p0[i] + TIE; a prefix of the sort.
    let mut cumulative = 0.0;
    let mut end = 0;
    let mut rejected_up_to = 0;
    for i in 0..all.len() {
        while end < all.len() && all[end].log_p0 <= all[i].log_p0 + TIE {
            cumulative += mass[end];
            end += 1;
        }
        if cumulative <= alpha {
            rejected_up_to = i + 1;
        } else {
            break;
        }
    }
    all.truncate(rejected_up_to);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn uniform(k: usize) -> Vec<f64> {
        vec![1.0 / k as f64; k]
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[rstest]
    #[case::even(&[5, 5], 1.0)]
    #[case::all_one_side(&[10, 0], 2.0 * 0.5f64.powi(10))]
    #[case::three_all_in_one(&[3, 0, 0], 3.0 / 27.0)]
    #[case::three_two_one(&[2, 1, 0], 21.0 / 27.0)]
    #[case::three_even(&[1, 1, 1], 1.0)]
    #[case::no_answers(&[0, 0, 0], 1.0)]
    #[case::single_replica(&[7], 1.0)]
    // Binomial(20, 1/2): P(X <= 5) + P(X >= 15) = 2 * 21700 / 2^20.
    #[case::binomial_tail(&[5, 15], 2.0 * 21700.0 / 1048576.0)]
    fn exact_known_values(#[case] counts: &[u32], #[case] expected: f64) {
        let (p, method) = p_value_with_method(counts, &uniform(counts.len()));
        assert_eq!(method, Method::ExactMultinomial);
        assert!(close(p, expected, 1e-12), "p = {p}, expected {expected}");
    }

    #[test]
    fn uniform_shortcut_agrees_with_full_enumeration() {
        for counts in [[3u32, 5, 9, 1], [0, 0, 0, 12], [4, 4, 4, 4], [10, 2, 2, 1]] {
            let a = exact_uniform(&counts);
            let b = exact_by_compositions(&counts, &uniform(4));
            assert!(close(a, b, 1e-12), "{counts:?}: {a} vs {b}");
        }
    }

    #[test]
    fn non_uniform_null_matches_brute_force() {
        let probs = [0.2, 0.3, 0.5];
        let counts = [5u32, 1, 4];
        let n = 10u32;
        let prob = |x: [u32; 3]| {
            let lf = log_factorials(n);
            (lf[n as usize]
                + x.iter()
                    .zip(probs)
                    .map(|(&c, p)| f64::from(c) * f64::ln(p) - lf[c as usize])
                    .sum::<f64>())
            .exp()
        };
        let observed = prob(counts);
        let mut expected = 0.0;
        for a in 0..=n {
            for b in 0..=n - a {
                let p = prob([a, b, n - a - b]);
                if p <= observed * (1.0 + 1e-9) {
                    expected += p;
                }
            }
        }
        let got = multinomial_p_value(&counts, &probs);
        assert!(close(got, expected, 1e-12), "{got} vs {expected}");
        assert!(got > 0.0 && got < 1.0);
    }

    #[test]
    fn impossible_outcome_has_p_zero() {
        assert_eq!(multinomial_p_value(&[1, 3], &[0.0, 1.0]), 0.0);
    }

    /// Table values: the 5% critical points of chi-square.
    #[rstest]
    #[case(3.841_459, 1.0, 0.05)]
    #[case(5.991_465, 2.0, 0.05)]
    #[case(9.487_729, 4.0, 0.05)]
    #[case(11.070_498, 5.0, 0.05)]
    #[case(6.634_897, 1.0, 0.01)]
    #[case(15.086_272, 5.0, 0.01)]
    #[case(0.0, 3.0, 1.0)]
    fn chi_square_table(#[case] x: f64, #[case] df: f64, #[case] p: f64) {
        assert!(
            close(chi_square_sf(x, df), p, 1e-6),
            "sf({x}, {df}) = {}",
            chi_square_sf(x, df)
        );
        if p < 1.0 {
            assert!(close(chi_square_critical(p, df), x, 1e-4));
        }
    }

    #[test]
    fn two_hundred_answers_over_six_replicas_are_exact() {
        let (p, method) = p_value_with_method(&[40, 30, 35, 30, 35, 30], &uniform(6));
        assert_eq!(method, Method::ExactMultinomial);
        // Close to, but not equal to, the chi-square approximation (X^2 = 2.5, df 5: 0.7765).
        assert!(close(chi_square_sf(2.5, 5.0), 0.7765, 1e-4));
        assert!(
            close(p, 0.7765, 0.02) && p != chi_square_sf(2.5, 5.0),
            "{p}"
        );
    }

    #[test]
    fn large_samples_fall_back_to_chi_square() {
        // 1000 answers over 6 replicas: too many partitions to enumerate.
        let counts = [170u32, 160, 170, 170, 160, 170];
        let (p, method) = p_value_with_method(&counts, &uniform(6));
        assert_eq!(method, Method::ChiSquare);
        // X^2 = (4 * 100 + 2 * 400 / ... ) computed by hand: expected 166.67 each.
        let e = 1000.0 / 6.0;
        let x2: f64 = counts.iter().map(|&c| (f64::from(c) - e).powi(2) / e).sum();
        assert!(close(p, chi_square_sf(x2, 5.0), 1e-15));
        assert!(p > 0.9);
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-13));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        assert!(close(ln_gamma(11.0), 3_628_800f64.ln(), 1e-12));
    }

    #[rstest]
    #[case::even(UniformityTest { n: 12, k: 3, alpha: 0.05 }, &[4, 4, 4], false)]
    #[case::one_dead(UniformityTest { n: 12, k: 3, alpha: 0.05 }, &[6, 6, 0], true)]
    #[case::mild(UniformityTest { n: 9, k: 3, alpha: 0.05 }, &[3, 4, 2], false)]
    fn check_verdicts(#[case] test: UniformityTest, #[case] counts: &[u32], #[case] reject: bool) {
        let verdict = test.check(counts);
        assert_eq!(verdict.reject, reject, "{verdict}");
        assert_eq!(verdict.method, Method::ExactMultinomial);
    }

    /// The exact test's size (null mass of its rejection region) never exceeds alpha.
    #[rstest]
    #[case(10, 2, 0.05)]
    #[case(30, 3, 0.05)]
    #[case(60, 4, 0.01)]
    #[case(24, 6, 0.1)]
    fn size_is_at_most_alpha(#[case] n: u32, #[case] k: u32, #[case] alpha: f64) {
        let test = UniformityTest { n, k, alpha };
        let size = test.power(0.0);
        assert!(size <= alpha + 1e-12, "size {size} > {alpha}");
        assert!(size > 0.0);
    }

    /// splitmix64: a seeded generator, so the simulation is the same on every run.
    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, k: u32) -> usize {
            (self.next() % u64::from(k)) as usize
        }
    }

    #[test]
    fn false_alarm_rate_of_uniform_draws_is_at_most_alpha() {
        let test = UniformityTest {
            n: 30,
            k: 3,
            alpha: 0.05,
        };
        let mut rng = SplitMix(0x5eed);
        let trials = 2000;
        let mut alarms = 0;
        for _ in 0..trials {
            let mut counts = [0u32; 3];
            for _ in 0..test.n {
                counts[rng.below(test.k)] += 1;
            }
            alarms += u32::from(test.check(&counts).reject);
        }
        let rate = f64::from(alarms) / f64::from(trials);
        // Three standard errors of a 5% rate over 2000 trials.
        let slack = 3.0 * (0.05f64 * 0.95 / f64::from(trials)).sqrt();
        assert!(rate <= test.alpha + slack, "false-alarm rate {rate}");
        // And the simulation agrees with the exact size.
        assert!(
            close(rate, test.power(0.0), slack),
            "{rate} vs {}",
            test.power(0.0)
        );
    }

    /// For two replicas the test is the two-sided binomial test; its power is a binomial tail.
    #[rstest]
    #[case(0.1)]
    #[case(0.25)]
    #[case(0.4)]
    fn power_for_two_replicas_is_a_binomial_tail(#[case] delta: f64) {
        let test = UniformityTest {
            n: 20,
            k: 2,
            alpha: 0.05,
        };
        // Rejection region of the exact two-sided test at n = 20: X <= 5 or X >= 15.
        let q: f64 = 0.5 + delta;
        let lf = log_factorials(20);
        let pmf = |x: u32| {
            (lf[20] - lf[x as usize] - lf[20 - x as usize]
                + f64::from(x) * q.ln()
                + f64::from(20 - x) * (1.0 - q).ln())
            .exp()
        };
        let expected: f64 = (0..=5).chain(15..=20).map(pmf).sum();
        assert!(
            close(test.power(delta), expected, 1e-12),
            "{} vs {expected}",
            test.power(delta)
        );
    }

    #[test]
    fn min_detectable_skew_is_the_smallest_with_that_power() {
        let test = UniformityTest {
            n: 20,
            k: 2,
            alpha: 0.05,
        };
        let delta = test.min_detectable_skew(0.8);
        assert!(test.power(delta) >= 0.8);
        assert!(test.power(delta - 1e-5) < 0.8);
        // P(X >= 15 | q = 0.8) = 0.804: just under a 0.3 skew.
        assert!((0.25..0.3).contains(&delta), "{delta}");
    }

    #[test]
    fn more_answers_detect_smaller_skews() {
        let small = UniformityTest {
            n: 30,
            k: 3,
            alpha: 0.05,
        }
        .min_detectable_skew(0.8);
        let large = UniformityTest {
            n: 120,
            k: 3,
            alpha: 0.05,
        }
        .min_detectable_skew(0.8);
        assert!(large < small, "{large} !< {small}");
        assert!(large > 0.0);
    }

    #[test]
    fn too_few_answers_detect_nothing() {
        let test = UniformityTest {
            n: 3,
            k: 3,
            alpha: 0.01,
        };
        assert_eq!(test.min_detectable_skew(0.8), f64::INFINITY);
        assert!(test.describe(0.8).contains("send more requests"));
    }

    #[test]
    fn chi_square_power_is_close_to_exact_power() {
        // Near the enumeration limit both apply; the approximation should be in the same place.
        let exact = UniformityTest {
            n: 120,
            k: 3,
            alpha: 0.05,
        };
        let delta = exact.min_detectable_skew(0.8);
        let p = 1.0 / 3.0;
        let (q0, q1) = (p + delta, (1.0 - p - delta) / 2.0);
        let lambda = 120.0 * ((q0 - p).powi(2) + 2.0 * (q1 - p).powi(2)) / p;
        let approx = noncentral_chi_square_sf(chi_square_critical(0.05, 2.0), 2.0, lambda);
        assert!(
            close(approx, 0.8, 0.05),
            "approximate power {approx} at exact 0.8 skew {delta}"
        );
    }

    #[test]
    fn noncentral_reduces_to_central() {
        assert!(close(
            noncentral_chi_square_sf(3.841_459, 1.0, 0.0),
            0.05,
            1e-6
        ));
        // Known value: P(X >= 3.841459) for df = 1, lambda = 7.849 is about 0.80 (power table).
        assert!(close(
            noncentral_chi_square_sf(3.841_459, 1.0, 7.849),
            0.80,
            0.002
        ));
    }

    #[test]
    fn large_plans_use_the_approximation() {
        let mid = UniformityTest {
            n: 200,
            k: 6,
            alpha: 0.05,
        };
        assert_eq!(
            (mid.method(), mid.power_method()),
            (Method::ExactMultinomial, Method::ChiSquare)
        );
        let test = UniformityTest {
            n: 1000,
            k: 6,
            alpha: 0.05,
        };
        assert_eq!(test.method(), Method::ChiSquare);
        let delta = test.min_detectable_skew(0.8);
        assert!(delta > 0.0 && delta < 0.1, "{delta}");
        assert!(test.describe(0.8).contains("Pearson chi-square"));
    }

    #[test]
    fn counts_and_partitions() {
        assert_eq!(composition_count(10, 3), 66);
        assert_eq!(partition_count(10, 3), 14);
        assert_eq!(partition_count(5, 5), 7);
        let mut visited = 0;
        let mut mass = 0.0;
        visit_partitions(10, 3, &mut |parts, w| {
            assert_eq!(parts.iter().sum::<u32>(), 10);
            visited += 1;
            mass += (w.log_p0 + w.log_arrangements).exp();
        });
        assert_eq!(visited, 14);
        assert!(close(mass, 1.0, 1e-12), "{mass}");
        assert!(partition_count(200, 6) <= EXACT_LIMIT);
        assert!(composition_count(200, 1000) == u64::MAX);
    }

    #[test]
    fn verdict_reads_well() {
        let v = UniformityTest {
            n: 12,
            k: 3,
            alpha: 0.05,
        }
        .check(&[6, 6, 0]);
        let text = v.to_string();
        assert!(
            text.contains("counts [6, 6, 0]") && text.contains("not uniform"),
            "{text}"
        );
    }
}
