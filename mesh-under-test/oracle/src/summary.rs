//! Short forms of long evidence, for failure messages a person reads (the raw answers stay in
//! the results file).

/// The answers of a batch in order, runs of the same answer folded: `a, b×3, <failed>, a×40`.
pub fn runs<'a>(answers: impl IntoIterator<Item = &'a str>) -> String {
    let mut folded: Vec<(&str, usize)> = Vec::new();
    for answer in answers {
        match folded.last_mut() {
            Some((last, n)) if *last == answer => *n += 1,
            _ => folded.push((answer, 1)),
        }
    }
    folded
        .iter()
        .map(|(answer, n)| match n {
            1 => answer.to_string(),
            n => format!("{answer}×{n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_runs_in_order() {
        assert_eq!(
            runs(["a", "b", "b", "b", "<failed>", "a", "a"]),
            "a, b×3, <failed>, a×2"
        );
        assert_eq!(runs([]), "");
    }
}
