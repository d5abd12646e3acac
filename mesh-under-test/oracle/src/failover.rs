//! Verdicts over time: when a set of replicas took over a stream of paced requests.

use std::time::Duration;

/// One request of a paced stream: when it started (relative to the stream's start) and who
/// answered it (`None`: it failed).
pub type Timed<'a> = (Duration, Option<&'a str>);

/// Whether `members` took every request from some point on, no later than `deadline`: the
/// answers from that point to the end all come from members, that run holds at least one
/// round (`members.len()` answers), and it starts by the deadline. A failed request is no
/// answer from elsewhere: which level answers is this verdict's claim, how many requests may
/// fail is another behaviour's. What happened before the run (a flap back while the mesh was
/// still recovering) is the mesh's business within the deadline. Returns when the run started.
pub fn took_over_within(
    stream: &[Timed<'_>],
    members: &[&str],
    deadline: Duration,
) -> Result<Duration, String> {
    let round = members.len().max(1);
    let elsewhere = |t: &Timed<'_>| t.1.is_some_and(|r| !members.contains(&r));
    let start = stream
        .iter()
        .rposition(elsewhere)
        .map_or(0, |last_other| last_other + 1);
    // The run starts at its first answer: failures before it are not the members' yet.
    let run: Vec<&Timed<'_>> = stream[start..]
        .iter()
        .skip_while(|t| t.1.is_none())
        .collect();
    let answered = run.iter().filter(|t| t.1.is_some()).count();
    if answered < round {
        let last = stream.iter().rev().find(|t| elsewhere(t)).map_or(
            "no other replica answered".to_string(),
            |(when, who)| {
                format!(
                    "the last answer from elsewhere came at {when:?} from {}",
                    who.unwrap_or_default()
                )
            },
        );
        return Err(format!(
            "{members:?} answered only {answered} of the requests after the last answer from \
             elsewhere, fewer than one round ({round}): {last}"
        ));
    }
    let at = run[0].0;
    if at > deadline {
        return Err(format!(
            "{members:?} took every request only from {at:?}, after the {deadline:?} deadline"
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(answers: &[Option<&'static str>]) -> Vec<Timed<'static>> {
        answers
            .iter()
            .enumerate()
            .map(|(i, a)| (Duration::from_millis(50 * i as u64), *a))
            .collect()
    }

    const AB: &[&str] = &["a", "b"];

    #[test]
    fn a_level_that_takes_over_in_time_passes() {
        let s = stream(&[Some("x"), None, Some("a"), Some("b"), Some("a"), Some("a")]);
        assert_eq!(
            took_over_within(&s, AB, Duration::from_millis(200)),
            Ok(Duration::from_millis(100))
        );
        // A flap back while recovering, before the deadline, is allowed.
        let flap = stream(&[
            Some("x"),
            Some("a"),
            Some("x"),
            Some("a"),
            Some("b"),
            Some("a"),
        ]);
        assert_eq!(
            took_over_within(&flap, AB, Duration::from_millis(200)),
            Ok(Duration::from_millis(150))
        );
    }

    #[test]
    fn too_late_or_never_or_not_for_good_fails() {
        let late = stream(&[Some("x"), Some("x"), Some("x"), Some("a"), Some("b")]);
        let e = took_over_within(&late, AB, Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("after the"), "{e}");
        let never = stream(&[Some("x"), Some("a"), Some("x"), Some("b")]);
        let e = took_over_within(&never, AB, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("fewer than one round (2)"), "{e}");
        let relapse = stream(&[Some("a"), Some("b"), Some("a"), Some("x")]);
        let e = took_over_within(&relapse, AB, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("from x"), "{e}");
        let silent = stream(&[Some("x"), None, None, None]);
        let e = took_over_within(&silent, AB, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("answered only 0"), "{e}");
    }

    #[test]
    fn a_failure_is_no_answer_from_elsewhere() {
        // A request failing after the level took over does not undo it.
        let s = stream(&[Some("x"), None, Some("a"), Some("b"), None, Some("a")]);
        assert_eq!(
            took_over_within(&s, AB, Duration::from_millis(200)),
            Ok(Duration::from_millis(100))
        );
        // Failures before the first member answer do not start the run early.
        let late = stream(&[Some("x"), None, None, None, Some("a"), Some("b")]);
        let e = took_over_within(&late, AB, Duration::from_millis(150)).unwrap_err();
        assert!(e.contains("from 200ms"), "{e}");
    }
}
