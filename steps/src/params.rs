//! Typed step parameters: each parses with a regex and a `FromStr` that can fail.

use std::str::FromStr;
use std::time::Duration;

use cucumber::Parameter;

/// `first`, `second`, `third`, ... or `1st`, `2nd`, `4th`: a 0-based index into a pod list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(
    name = "ordinal",
    regex = r"first|second|third|fourth|fifth|\d+(?:st|nd|rd|th)"
)]
pub struct Ordinal(pub usize);

impl FromStr for Ordinal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = match s {
            "first" => 1,
            "second" => 2,
            "third" => 3,
            "fourth" => 4,
            "fifth" => 5,
            other => other
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse::<usize>()
                .map_err(|e| format!("bad ordinal {other:?}: {e}"))?,
        };
        if n == 0 {
            return Err("ordinals start at 1st".into());
        }
        Ok(Ordinal(n - 1))
    }
}

/// `150ms`, `2s`, `1.5s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Parameter)]
#[param(name = "duration", regex = r"\d+(?:\.\d+)?(?:ms|s)")]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (number, scale) = match s.strip_suffix("ms") {
            Some(n) => (n, 1e-3),
            None => (
                s.strip_suffix('s')
                    .ok_or_else(|| format!("bad duration {s:?}"))?,
                1.0,
            ),
        };
        let value: f64 = number
            .parse()
            .map_err(|e| format!("bad duration {s:?}: {e}"))?;
        Ok(Span(Duration::from_secs_f64(value * scale)))
    }
}

/// A false-alarm rate: a probability strictly between 0 and 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Parameter)]
#[param(name = "rate", regex = r"0\.\d+")]
pub struct Rate(pub f64);

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let p: f64 = s.parse().map_err(|e| format!("bad rate {s:?}: {e}"))?;
        if !(p > 0.0 && p < 0.5) {
            return Err(format!("a false-alarm rate must be in (0, 0.5), got {p}"));
        }
        Ok(Rate(p))
    }
}

/// A log level as ztunnel writes it.
#[derive(Debug, Clone, PartialEq, Eq, Parameter)]
#[param(name = "level", regex = "error|warn|info|debug|trace")]
pub struct Level(pub String);

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Level(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("first", 0)]
    #[case("third", 2)]
    #[case("4th", 3)]
    #[case("21st", 20)]
    fn ordinals(#[case] text: &str, #[case] index: usize) {
        assert_eq!(text.parse::<Ordinal>().unwrap(), Ordinal(index));
    }

    #[rstest]
    #[case("150ms", 150)]
    #[case("2s", 2000)]
    #[case("1.5s", 1500)]
    fn spans(#[case] text: &str, #[case] ms: u64) {
        assert_eq!(text.parse::<Span>().unwrap().0, Duration::from_millis(ms));
    }

    #[test]
    fn rates_are_bounded() {
        assert!("0.001".parse::<Rate>().is_ok());
        assert!("0.7".parse::<Rate>().is_err());
        assert!("0th".parse::<Ordinal>().is_err());
    }
}
