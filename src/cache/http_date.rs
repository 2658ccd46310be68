//! HTTP dates as recipients must read them (RFC 9110 §5.6.7): the
//! preferred IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two
//! obsolete forms, RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
//! (`Sun Nov  6 08:49:37 1994`).
//!
//! Leniently, as the RFC asks of recipients: day and month names in any
//! case, any run of spaces between parts, a one-digit day, a weekday that
//! does not match the date (ignored), and a missing `GMT`. A two-digit
//! year more than 50 years in the future is taken as the most recent past
//! year with those digits.

use std::time::{Duration, SystemTime};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses an HTTP date in any of the three forms; `None` when it is not
/// one.
pub fn parse(text: &str) -> Option<SystemTime> {
    parse_at(text, SystemTime::now())
}

/// [`parse`], with `now` deciding the century of a two-digit year.
pub fn parse_at(text: &str, now: SystemTime) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() > 64 || !text.is_ascii() {
        return None;
    }
    let parts: Vec<&str> = text
        .split([' ', ',', '\t'])
        .filter(|p| !p.is_empty())
        .collect();
    let (weekday, rest) = parts.split_first()?;
    if !is_weekday(weekday) {
        return None;
    }
    let fields = match rest {
        // IMF-fixdate: 06 Nov 1994 08:49:37 GMT
        [day, month, year, time, zone @ ..] if is_gmt(zone) && month_of(month).is_some() => {
            Fields::new(day, month, year, time, now)?
        }
        // RFC 850: 06-Nov-94 08:49:37 GMT
        [date, time, zone @ ..] if is_gmt(zone) && date.contains('-') => {
            let mut dmy = date.split('-');
            let (day, month, year) = (dmy.next()?, dmy.next()?, dmy.next()?);
            if dmy.next().is_some() {
                return None;
            }
            Fields::new(day, month, year, time, now)?
        }
        // asctime: Nov  6 08:49:37 1994
        [month, day, time, year] => Fields::new(day, month, year, time, now)?,
        _ => return None,
    };
    fields.to_time()
}

fn is_weekday(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    WEEKDAYS.iter().any(|d| word.starts_with(d))
}

fn is_gmt(zone: &[&str]) -> bool {
    match zone {
        [] => true,
        [z] => z.eq_ignore_ascii_case("gmt") || z.eq_ignore_ascii_case("utc"),
        _ => false,
    }
}

fn month_of(word: &str) -> Option<u32> {
    let word = word.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == word)
        .and_then(|i| u32::try_from(i + 1).ok())
}

struct Fields {
    year: i64,
    month: u32,
    day: u32,
    seconds_of_day: u64,
}

impl Fields {
    fn new(day: &str, month: &str, year: &str, time: &str, now: SystemTime) -> Option<Self> {
        let day = digits(day, 1, 2)?;
        let month = month_of(month)?;
        let year = match year.len() {
            2 => two_digit_year(digits(year, 2, 2)?, now),
            4 => i64::from(digits(year, 4, 4)?),
            _ => return None,
        };
        let mut hms = time.split(':');
        let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
        if hms.next().is_some() {
            return None;
        }
        let (h, m, s) = (digits(h, 1, 2)?, digits(m, 2, 2)?, digits(s, 2, 2)?);
        // 60: a leap second, read as the next second would be.
        if h > 23 || m > 59 || s > 60 || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self {
            year,
            month,
            day,
            seconds_of_day: u64::from(h * 3600 + m * 60 + s),
        })
    }

    fn to_time(&self) -> Option<SystemTime> {
        let days = days_from_civil(self.year, self.month, self.day);
        let days = u64::try_from(days).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(days * 86_400 + self.seconds_of_day))
    }
}

fn digits(text: &str, min: usize, max: usize) -> Option<u32> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// RFC 9110 §5.6.7: a two-digit year that would be more than 50 years in
/// the future is the most recent past year with the same last two digits.
fn two_digit_year(yy: u32, now: SystemTime) -> i64 {
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let this_year = civil_year(i64::try_from(now_secs / 86_400).unwrap_or(0));
    let century = this_year - this_year.rem_euclid(100);
    let candidate = century + i64::from(yy);
    if candidate > this_year + 50 {
        candidate - 100
    } else {
        candidate
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day count since 1970-01-01.
fn civil_year(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sun, 06 Nov 1994 08:49:37 GMT
    const EXPECTED: u64 = 784_111_777;

    fn secs(text: &str) -> Option<u64> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000); // 2026
        parse_at(text, now).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn the_three_forms_of_rfc_9110_are_read() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(secs(text), Some(EXPECTED), "{text}");
        }
    }

    #[test]
    fn case_spacing_weekday_and_zone_are_read_leniently() {
        for text in [
            "sun, 06 NOV 1994 08:49:37 GMT",
            "SUN, 06 nov 1994 08:49:37 gmt",
            "Sun,  06  Nov  1994  08:49:37  GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun Nov 6 08:49:37 1994",
            "sunday, 06-nov-94 08:49:37 GMT",
            "  Sun, 06 Nov 1994 08:49:37 GMT  ",
        ] {
            assert_eq!(secs(text), Some(EXPECTED), "{text}");
        }
    }

    #[test]
    fn two_digit_years_more_than_fifty_years_ahead_are_in_the_past() {
        // In 2026: 94 → 1994 (2094 is more than 50 years ahead), 30 → 2030.
        assert_eq!(secs("Sunday, 06-Nov-94 08:49:37 GMT"), Some(EXPECTED));
        let y2030 = secs("Wednesday, 06-Nov-30 08:49:37 GMT").unwrap();
        assert_eq!(y2030, 1_920_185_377);
    }

    #[test]
    fn what_is_not_a_date_is_refused() {
        for text in [
            "",
            "0",
            "-1",
            "tomorrow",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1995 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 06 Nov 94 08:49:37 GMT x",
            "06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37",
            "Sun, 06 Nov 19941 08:49:37 GMT",
        ] {
            assert_eq!(secs(text), None, "{text}");
        }
        assert_eq!(secs("Thu, 29 Feb 1996 00:00:00 GMT"), Some(825_552_000));
    }
}
