//! The one exact-order verdict: round robin (L4-RR-2), the only behaviour whose documentation
//! promises an order.

/// The period of a round-robin sequence: its first `p` answers are distinct and every later
/// answer repeats the one `p` before it, where `p` is the number of distinct answers.
pub fn repeating_period(answers: &[String]) -> Result<usize, String> {
    let mut distinct: Vec<&String> = answers.iter().collect();
    distinct.sort();
    distinct.dedup();
    let period = distinct.len();
    if period == 0 || answers.len() < 2 * period {
        return Err(format!(
            "{} answers over {period} replicas are too few to show a repeating order",
            answers.len()
        ));
    }
    let head = &answers[..period];
    let mut sorted_head: Vec<&String> = head.iter().collect();
    sorted_head.sort();
    sorted_head.dedup();
    if sorted_head.len() != period {
        return Err(format!(
            "the first {period} answers {head:?} are not {period} different replicas"
        ));
    }
    if let Some(i) = (period..answers.len()).find(|&i| answers[i] != answers[i - period]) {
        return Err(format!(
            "answer #{i} ({}) breaks the repeating order {head:?} (answers: {answers:?})",
            answers[i]
        ));
    }
    Ok(period)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn seq(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    #[rstest]
    #[case("abcabcabcabc", Ok(3))]
    #[case("bcabcabca", Ok(3))]
    #[case("abab", Ok(2))]
    #[case("abcacbabc", Err("breaks"))]
    #[case("aabbcc", Err("are not 3 different"))]
    #[case("abc", Err("too few"))]
    #[case("aaaa", Ok(1))]
    fn periods(#[case] answers: &str, #[case] expected: Result<usize, &str>) {
        match (repeating_period(&seq(answers)), expected) {
            (Ok(p), Ok(e)) => assert_eq!(p, e),
            (Err(m), Err(e)) => assert!(m.contains(e), "{m}"),
            (got, want) => panic!("{answers}: got {got:?}, want {want:?}"),
        }
    }
}
