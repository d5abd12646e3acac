//! Verdicts over time: when a set of replicas took over a stream of paced requests.

use std::time::Duration;

/// One request of a paced stream: when it started (relative to the stream's start) and who
/// answered it (`None`: it failed).
pub type Timed<'a> = (Duration, Option<&'a str>);

/// Whether `members` took every request from some point on, no later than `deadline`: the
/// answers from that point to the end all come from members, that run holds at least one
/// round (`members.len()` answers), and it starts by the deadline. What happened before it
/// (a failure, a flap back while the mesh was still recovering) is the mesh's business within
/// the deadline. Returns when that run started.
pub fn took_over_within(
    stream: &[Timed<'_>],
    members: &[&str],
    deadline: Duration,
) -> Result<Duration, String> {
    let round = members.len().max(1);
    let by_member = |t: &Timed<'_>| t.1.is_some_and(|r| members.contains(&r));
    let start = stream
        .iter()
        .rposition(|t| !by_member(t))
        .map_or(0, |last_other| last_other + 1);
    let run = &stream[start..];
    if run.len() < round {
        let last = stream
            .last()
            .map_or("nothing was sent".to_string(), |(when, who)| {
                format!(
                    "the last request, at {when:?}, was {}",
                    who.map_or("a failure".to_string(), |r| format!("answered by {r}"))
                )
            });
        return Err(format!(
            "{members:?} never answered the last {round} requests in a row: {last}"
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
        assert!(e.contains("never answered the last 2"), "{e}");
        let relapse = stream(&[Some("a"), Some("b"), Some("a"), Some("x")]);
        let e = took_over_within(&relapse, AB, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("answered by x"), "{e}");
        let failing = stream(&[Some("a"), Some("b"), None]);
        let e = took_over_within(&failing, AB, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("a failure"), "{e}");
    }
}
