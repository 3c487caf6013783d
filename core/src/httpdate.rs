//! The date format of `janrainCaptureToken_Expires`: an HTTP date such as
//! `Tue, 29 Mar 2016 00:24:21 GMT`, which is what JavaScript's
//! [`Date.prototype.toUTCString()`](https://developer.mozilla.org/en-US/docs/Web/JavaScript/Reference/Global_Objects/Date/toUTCString)
//! writes and what the Registration UI reads back with `Date.parse`.
//!
//! Hand-written (no `format!`, no tables beyond month names) because it ships to
//! browsers. Parsing is lenient in the ways `Date.parse` is: the weekday is
//! optional and not checked, the zone may be `GMT`, `UTC`, `UT`, `Z` or a numeric
//! offset, the RFC 850 (`Tuesday, 29-Mar-16 ...`), asctime
//! (`Tue Mar 29 00:24:21 2016`) and ISO 8601 (`2016-03-29T00:24:21.000Z`) forms
//! are accepted too. Dates without a zone are read as UTC.

use crate::engine::Millis;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const WEEKDAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats epoch milliseconds as `toUTCString()` does (`Tue, 29 Mar 2016 00:24:21 GMT`).
/// Milliseconds are dropped, as they are by `toUTCString()`.
pub fn format_http_date(at: Millis) -> String {
    let secs = (at / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(29);
    out.push_str(WEEKDAYS[days.rem_euclid(7) as usize]);
    out.push_str(", ");
    push_2(&mut out, d as i64);
    out.push(' ');
    out.push_str(MONTHS[m as usize - 1]);
    out.push(' ');
    push_2(&mut out, y / 100);
    push_2(&mut out, y % 100);
    out.push(' ');
    push_2(&mut out, rem / 3600);
    out.push(':');
    push_2(&mut out, rem / 60 % 60);
    out.push(':');
    push_2(&mut out, rem % 60);
    out.push_str(" GMT");
    out
}

fn push_2(out: &mut String, n: i64) {
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// Parses an HTTP date (and the other forms `Date.parse` commonly meets) into
/// epoch milliseconds. `None` for anything else, for dates before 1970 and for
/// impossible dates (`31 Feb`, `25:00`).
pub fn parse_http_date(s: &str) -> Option<Millis> {
    let s = s.trim();
    if s.len() > 64 {
        return None;
    }
    let ms = if s.as_bytes().first()?.is_ascii_digit() && s.as_bytes().get(4) == Some(&b'-') {
        parse_iso(s)?
    } else {
        parse_words(s)?
    };
    u64::try_from(ms).ok()
}

/// Epoch ms from fields, checking each is in range.
fn assemble(date: (i64, u32, u32), time: (u32, u32, u32, u32), offset_min: i64) -> Option<i64> {
    let (y, m, d) = date;
    let (hh, mm, ss, ms) = time;
    if !(1..=12).contains(&m)
        || d == 0
        || d > days_in_month(y, m)
        || hh > 24
        || mm > 59
        || ss > 59
        || (hh == 24 && (mm, ss, ms) != (0, 0, 0))
    {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + (hh * 3600 + mm * 60 + ss) as i64;
    Some(secs * 1000 + ms as i64 - offset_min * 60_000)
}

/// Reads a run of ASCII digits (at most `max` of them).
fn digits(s: &str, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > max {
        return None;
    }
    // Accumulated by hand: no `FromStr`, and `get` instead of slicing (no panic paths).
    let value = s
        .bytes()
        .take(n)
        .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    Some((value, s.get(n..)?))
}

/// `hh:mm[:ss[.fff]]`.
fn parse_time(s: &str) -> Option<(u32, u32, u32, u32, &str)> {
    let (hh, s) = digits(s, 2)?;
    let (mm, mut s) = digits(s.strip_prefix(':')?, 2)?;
    let mut ss = 0;
    let mut ms = 0;
    if let Some(rest) = s.strip_prefix(':') {
        let (v, rest) = digits(rest, 2)?;
        ss = v;
        s = rest;
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 || n > 9 {
                return None;
            }
            let frac = rest.get(..n.min(3))?;
            let (v, _) = digits(frac, 3)?;
            ms = v * [100, 10, 1][frac.len() - 1];
            s = rest.get(n..)?;
        }
    }
    Some((hh, mm, ss, ms, s))
}

/// A zone: `Z`, `GMT`, `UTC`, `UT` or `+hh[:]mm`, optionally `GMT+hhmm`; minutes east of UTC.
fn parse_zone(s: &str) -> Option<i64> {
    let s = s.trim();
    let rest = ["GMT", "UTC", "UT", "Z"]
        .iter()
        .find_map(|z| {
            s.get(..z.len())
                .filter(|p| p.eq_ignore_ascii_case(z))
                .and_then(|_| s.get(z.len()..))
        })
        .unwrap_or(s);
    if rest.is_empty() {
        return Some(0);
    }
    let sign = match rest.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = rest.get(1..)?;
    let (h, m) = if let Some((h, m)) = rest.split_once(':') {
        (digits(h, 2)?, digits(m, 2)?)
    } else if rest.len() == 4 {
        (digits(rest.get(..2)?, 2)?, digits(rest.get(2..)?, 2)?)
    } else {
        (digits(rest, 2)?, (0, ""))
    };
    if !h.1.is_empty() || !m.1.is_empty() || h.0 > 23 || m.0 > 59 {
        return None;
    }
    Some(sign * (h.0 as i64 * 60 + m.0 as i64))
}

/// `YYYY-MM-DD[THH:MM[:SS[.fff]][zone]]`.
fn parse_iso(s: &str) -> Option<i64> {
    let (y, s) = digits(s, 4)?;
    let (m, s) = digits(s.strip_prefix('-')?, 2)?;
    let (d, s) = digits(s.strip_prefix('-')?, 2)?;
    if s.is_empty() {
        return assemble((y as i64, m, d), (0, 0, 0, 0), 0);
    }
    let s = s.strip_prefix(['T', 't', ' '])?;
    let (hh, mm, ss, ms, rest) = parse_time(s)?;
    assemble((y as i64, m, d), (hh, mm, ss, ms), parse_zone(rest)?)
}

fn month(word: &str) -> Option<u32> {
    let head = word.get(..3)?;
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(head))?;
    // The rest, if any, must spell the month out ("March"), not be noise ("Marzipan" is accepted by
    // no one; be strict here so that garbage does not parse).
    let full = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ][i];
    let w = word.trim_end_matches('.');
    if w.len() == 3
        || full
            .get(..w.len())
            .is_some_and(|f| f.eq_ignore_ascii_case(w))
    {
        Some(i as u32 + 1)
    } else {
        None
    }
}

fn is_weekday(word: &str) -> bool {
    let w = word.trim_end_matches(['.', ',']);
    w.len() >= 3
        && WEEKDAY_NAMES
            .iter()
            .any(|d| d.get(..w.len()).is_some_and(|d| d.eq_ignore_ascii_case(w)))
}

/// RFC 1123, RFC 850 and asctime forms, by recognising each word.
fn parse_words(s: &str) -> Option<i64> {
    let (mut day, mut mon, mut year) = (None, None, None);
    let mut time = None;
    let mut zone = 0;
    let mut zone_seen = false;
    for word in s.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
        let Some(&first) = word.as_bytes().first() else {
            continue;
        };
        if first.is_ascii_digit() {
            if word.contains(':') {
                if time.is_some() {
                    return None;
                }
                let (hh, mm, ss, ms, rest) = parse_time(word)?;
                if !rest.is_empty() {
                    zone = parse_zone(rest)?;
                    zone_seen = true;
                }
                time = Some((hh, mm, ss, ms));
            } else if let Some((d, rest)) = word.split_once('-') {
                // RFC 850: 29-Mar-16 (two-digit years are 19xx/20xx as Date.parse does: < 50 is 20xx).
                let (m, y) = rest.split_once('-')?;
                let (d, r) = digits(d, 2)?;
                let (y, ry) = digits(y, 4)?;
                if !r.is_empty() || !ry.is_empty() || day.is_some() || mon.is_some() {
                    return None;
                }
                day = Some(d);
                mon = Some(month(m)?);
                year = Some(match y {
                    0..=49 => 2000 + y,
                    50..=99 => 1900 + y,
                    _ => y,
                });
            } else {
                let (n, rest) = digits(word, 4)?;
                if !rest.is_empty() {
                    return None;
                }
                if word.len() <= 2 && day.is_none() {
                    day = Some(n);
                } else if year.is_none() && word.len() == 4 {
                    year = Some(n);
                } else {
                    return None;
                }
            }
        } else if first == b'+' || first == b'-' || zone_word(word) {
            if zone_seen {
                return None;
            }
            zone = parse_zone(word)?;
            zone_seen = true;
        } else if let Some(m) = month(word) {
            if mon.replace(m).is_some() {
                return None;
            }
        } else if !is_weekday(word) {
            return None;
        }
    }
    assemble(
        (year? as i64, mon?, day?),
        time.unwrap_or((0, 0, 0, 0)),
        zone,
    )
}

fn zone_word(word: &str) -> bool {
    ["GMT", "UTC", "UT", "Z"].iter().any(|z| {
        word.get(..z.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(z))
            && word
                .get(z.len()..)
                .unwrap_or("x")
                .bytes()
                .all(|b| b == b'+' || b == b'-' || b == b':' || b.is_ascii_digit())
    })
}

/// Milliseconds in a day, for callers computing plausibility windows.
pub const DAY: Millis = DAY_MS as Millis;

#[cfg(test)]
mod tests {
    use super::*;

    const T: Millis = 1_459_211_061_000; // Tue, 29 Mar 2016 00:24:21 GMT

    #[test]
    fn formats_like_to_utc_string() {
        assert_eq!(format_http_date(T), "Tue, 29 Mar 2016 00:24:21 GMT");
        assert_eq!(format_http_date(T + 999), "Tue, 29 Mar 2016 00:24:21 GMT");
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format_http_date(951_782_400_000),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            format_http_date(4_102_444_799_000),
            "Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }

    #[test]
    fn parses_what_date_parse_reads() {
        for s in [
            "Tue, 29 Mar 2016 00:24:21 GMT",
            "  Tue, 29 Mar 2016 00:24:21 GMT ",
            "29 Mar 2016 00:24:21 GMT",
            "Tue, 29 Mar 2016 00:24:21 UTC",
            "Tue, 29 Mar 2016 00:24:21",
            "tue, 29 mar 2016 00:24:21 gmt",
            "Mon, 29 Mar 2016 00:24:21 GMT", // wrong weekday: Date.parse ignores it
            "Tuesday, 29-Mar-16 00:24:21 GMT",
            "Tue Mar 29 00:24:21 2016",
            "Tue Mar 29 2016 02:24:21 GMT+0200",
            "Tue, 29 Mar 2016 01:24:21 +0100",
            "Mon, 28 Mar 2016 19:24:21 -0500",
            "March 29, 2016 00:24:21 UTC",
            "2016-03-29T00:24:21Z",
            "2016-03-29T00:24:21.000Z",
            "2016-03-29T02:24:21+02:00",
        ] {
            assert_eq!(parse_http_date(s), Some(T), "{s:?}");
        }
        assert_eq!(parse_http_date("2016-03-29T00:24:21.5Z"), Some(T + 500));
        assert_eq!(parse_http_date("2016-03-29"), Some(T - 1_461_000));
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "garbage",
            "Tue, 29 Foo 2016 00:24:21 GMT",
            "Tue, 31 Feb 2016 00:24:21 GMT",
            "Tue, 29 Mar 2016 25:24:21 GMT",
            "Tue, 29 Mar 2016 00:60:21 GMT",
            "Tue, 29 Mar 00:24:21 GMT",
            "Tue, 29 Mar 2016 00:24:21 GMT extra",
            "Tue, 29 Mar 2016 00:24:21 GMT GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "1459211061000",
            "NaN",
            "Invalid Date",
            "2016-13-01T00:00:00Z",
            "2016-03-29T00:24:21+25:00",
        ] {
            assert_eq!(parse_http_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn round_trips() {
        let mut t: Millis = 0;
        while t < 5_000_000_000_000 {
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t / 1000 * 1000));
            t += 7_777_777_777;
        }
    }
}
