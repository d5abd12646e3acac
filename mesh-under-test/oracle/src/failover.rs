//! Verdicts over time: when a set of replicas took over a stream of paced requests.

use std::time::Duration;

/// One request of a paced stream: when it started (relative to the stream's start) and who
/// answered it (`None`: it failed).
pub type Timed<'a> = (Duration, Option<&'a str>);

/// Whether `members` took every request from some point on, starting no later than `deadline`:
/// the first run of `members.len()` consecutive answers by members (one round) starts by the
/// deadline, and every later request is answered by a member. Returns when that run started.
pub fn took_over_within(
    stream: &[Timed<'_>],
    members: &[&str],
    deadline: Duration,
) -> Result<Duration, String> {
    let round = members.len().max(1);
    let by_member = |t: &Timed<'_>| t.1.is_some_and(|r| members.contains(&r));
    let Some(start) = stream.windows(round).position(|w| w.iter().all(by_member)) else {
        return Err(format!("no {round} answers in a row came from {members:?}"));
    };
    let at = stream[start].0;
    if at > deadline {
        return Err(format!(
            "{members:?} took over only at {at:?}, after the {deadline:?} deadline"
        ));
    }
    match stream[start..].iter().find(|t| !by_member(t)) {
        Some((when, who)) => Err(format!(
            "after {members:?} took over at {at:?}, the request at {when:?} was {}",
            who.map_or("a failure".to_string(), |r| format!("answered by {r}"))
        )),
        None => Ok(at),
    }
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
    }

    #[test]
    fn too_late_or_never_or_not_for_good_fails() {
        let late = stream(&[Some("x"), Some("x"), Some("x"), Some("a"), Some("b")]);
        let e = took_over_within(&late, AB, Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("after the"), "{e}");
        let never = stream(&[Some("x"), Some("a"), Some("x"), Some("b")]);
        assert!(took_over_within(&never, AB, Duration::from_secs(1)).is_err());
        let relapse = stream(&[Some("a"), Some("b"), Some("a"), Some("x")]);
        let e = took_over_within(&relapse, AB, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("answered by x"), "{e}");
    }
}
