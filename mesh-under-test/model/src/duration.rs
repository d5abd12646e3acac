//! Durations as people and configuration write them: `250ms`, `1.5s`, `2m`, and Go's `1m30s`
//! or `100us`. The one parser of duration text in meshcert: the thresholds file, step
//! parameters, target switches, the reference ztunnel's environment, Istio objects and wrk's
//! output all read through [`parse`], each wrapping its message in its own context (file,
//! field, variable).

use std::time::Duration;

/// How to write a duration: the end of every message.
const HOW: &str =
    "write a number and a unit, like 250ms, 1.5s or 1m30s (units ns, us, ms, s, m, h)";

/// Fraction digits read: more would overflow, and past 18 they are below a nanosecond of an hour.
const MOST_FRACTION_DIGITS: usize = 18;

/// Parses Go's `time.ParseDuration` syntax without a sign: one or more decimal numbers, each
/// with a unit (`ns`, `us` or `µs`, `ms`, `s`, `m`, `h`), or a bare `0`. The value is exact to
/// the nanosecond (decimal, not floating point); digits below a nanosecond are dropped, as Go
/// drops them. Nothing is trimmed: a caller that allows spaces trims them first.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(not_a_duration(text, "it is empty"));
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (number, unit, tail) = split_term(rest);
        if number.is_empty() {
            return Err(not_a_duration(text, "it does not start with a number"));
        }
        if unit.is_empty() {
            return Err(not_a_duration(text, &format!("no unit after {number:?}")));
        }
        let per_unit = nanos_per(unit)
            .ok_or_else(|| not_a_duration(text, &format!("unknown unit {unit:?}")))?;
        if !is_decimal(number) {
            return Err(not_a_duration(text, &format!("{number:?} is not a number")));
        }
        let term = term_nanos(number, per_unit).ok_or_else(|| too_long(text))?;
        nanos = nanos.checked_add(term).ok_or_else(|| too_long(text))?;
        rest = tail;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long(text))?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// The leading number, the unit after it, and what follows (the next term).
fn split_term(text: &str) -> (&str, &str, &str) {
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let unit_at = text.find(|c| !is_number(c)).unwrap_or(text.len());
    let tail_at = text[unit_at..]
        .find(is_number)
        .map_or(text.len(), |i| unit_at + i);
    (&text[..unit_at], &text[unit_at..tail_at], &text[tail_at..])
}

fn nanos_per(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // Go accepts both the micro sign and the Greek mu.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Digits with at most one `.`, and at least one digit.
fn is_decimal(number: &str) -> bool {
    number.matches('.').count() <= 1 && number.contains(|c: char| c.is_ascii_digit())
}

/// A decimal `number` times `per_unit` nanoseconds, in whole nanoseconds; `None` if too long.
fn term_nanos(number: &str, per_unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let fraction = &fraction[..fraction.len().min(MOST_FRACTION_DIGITS)];
    let digits = |s: &str| {
        if s.is_empty() {
            Some(0)
        } else {
            s.parse::<u128>().ok()
        }
    };
    let part = digits(fraction)? * per_unit / 10u128.pow(fraction.len() as u32);
    digits(whole)?.checked_mul(per_unit)?.checked_add(part)
}

/// What every refusal says: the text, what was wrong, and how to write a duration.
fn not_a_duration(text: &str, what: &str) -> String {
    format!("{text:?} is not a duration: {what}; {HOW}")
}

fn too_long(text: &str) -> String {
    not_a_duration(
        text,
        "it is too long (the longest is about 584 billion years)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::milliseconds("250ms", Duration::from_millis(250))]
    #[case::seconds("2s", Duration::from_secs(2))]
    #[case::fraction("1.5s", Duration::from_millis(1500))]
    #[case::fraction_of_ms("1.02ms", Duration::from_micros(1020))]
    #[case::trailing_zeros("412.00us", Duration::from_micros(412))]
    #[case::leading_dot(".5s", Duration::from_millis(500))]
    #[case::trailing_dot("2.s", Duration::from_secs(2))]
    #[case::minutes("1m", Duration::from_secs(60))]
    #[case::hours("2h", Duration::from_secs(7200))]
    #[case::micro("100us", Duration::from_micros(100))]
    #[case::micro_sign("100\u{b5}s", Duration::from_micros(100))]
    #[case::greek_mu("100\u{3bc}s", Duration::from_micros(100))]
    #[case::nanos("7ns", Duration::from_nanos(7))]
    #[case::below_a_nanosecond("1.9ns", Duration::from_nanos(1))]
    #[case::compound("1m30s", Duration::from_secs(90))]
    #[case::compound_fractions("1h0.5m1.5s", Duration::from_millis(3_631_500))]
    #[case::bare_zero("0", Duration::ZERO)]
    #[case::zero_with_unit("0ms", Duration::ZERO)]
    #[case::zero_seconds("0s", Duration::ZERO)]
    #[case::exact_tenths("0.1s", Duration::from_millis(100))]
    #[case::many_digits("0.1234567891234567891234s", Duration::from_nanos(123_456_789))]
    fn parses(#[case] text: &str, #[case] expected: Duration) {
        assert_eq!(parse(text), Ok(expected));
    }

    #[rstest]
    #[case::empty("", "it is empty")]
    #[case::no_unit("250", "no unit after \"250\"")]
    #[case::compound_without_last_unit("1m30", "no unit after \"30\"")]
    #[case::unit_only("ms", "does not start with a number")]
    #[case::negative("-1s", "does not start with a number")]
    #[case::space_before("  1s", "does not start with a number")]
    #[case::space_inside("10 s", "unknown unit \" s\"")]
    #[case::space_after("1s ", "unknown unit \"s \"")]
    #[case::word_unit("10sec", "unknown unit \"sec\"")]
    #[case::days("2d", "unknown unit \"d\"")]
    #[case::two_dots("1.2.3s", "\"1.2.3\" is not a number")]
    #[case::double_dot("1..5s", "\"1..5\" is not a number")]
    #[case::dot_only(".s", "\".\" is not a number")]
    #[case::exponent("1e3ms", "unknown unit \"e\"")]
    #[case::too_long("99999999999999999999999h", "too long")]
    #[case::digits_overflow("999999999999999999999999999999999999999999s", "too long")]
    fn refuses_with_what_was_wrong(#[case] text: &str, #[case] expected: &str) {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{err}");
        let named = format!("{text:?} is not a duration: ");
        assert!(err.starts_with(&named), "names the text: {err}");
        assert!(err.ends_with(HOW), "says how to write one: {err}");
    }

    #[test]
    fn the_longest_duration_fits() {
        assert_eq!(
            parse("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert!(parse("18446744073709551616s").is_err());
    }
}
