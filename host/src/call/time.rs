//! Exotel's wall-clock times, read as Unix seconds.
//!
//! Exotel writes times in India Standard Time (UTC+05:30, no daylight saving) and in two shapes:
//! `2024-07-31 16:42:56` (what its documents describe) and `Wed, 31 Jul 2024 16:42:56` (what the
//! `Created` parameter of real requests carries). Both are read here, strictly: every field must be
//! in range, and the day must exist in its month (leap years included), so placeholders such as
//! `0000-00-00 00:00:00` are not a time. The calendar arithmetic is Howard Hinnant's
//! `days_from_civil`, on the proleptic Gregorian calendar.

/// India Standard Time is this many seconds ahead of UTC.
const IST_OFFSET_SECONDS: i64 = 5 * 3600 + 30 * 60;

/// Seconds in one calendar day (Unix time has no leap seconds).
const SECONDS_PER_DAY: i64 = 86_400;

/// English three-letter month names, as Exotel spells them, January first.
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Reads an Exotel time (India time) and returns it as UTC Unix seconds.
///
/// Accepts `yyyy-mm-dd hh:mm:ss` and `Www, d[d] Mon yyyy hh:mm:ss`; surrounding whitespace is
/// ignored. In the second shape the weekday must be a three-letter word but is not checked against
/// the date. Returns `None` for anything else, and for dates or times that do not exist.
pub(super) fn india_time_to_unix(text: &str) -> Option<i64> {
    let text = text.trim();
    let civil = parse_numeric(text).or_else(|| parse_named(text))?;
    civil.to_unix()
}

/// A calendar date and a time of day, as written, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilTime {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl CivilTime {
    /// Checks every field's range and converts India time to UTC Unix seconds.
    fn to_unix(self) -> Option<i64> {
        let valid = (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let seconds_of_day =
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        Some(days * SECONDS_PER_DAY + seconds_of_day - IST_OFFSET_SECONDS)
    }
}

/// `yyyy-mm-dd hh:mm:ss`, exactly 19 bytes.
fn parse_numeric(text: &str) -> Option<CivilTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 19 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b' ' {
        return None;
    }
    let (hour, minute, second) = parse_clock(&bytes[11..])?;
    Some(CivilTime {
        year: digits(&bytes[0..4])?,
        month: digits(&bytes[5..7])?,
        day: digits(&bytes[8..10])?,
        hour,
        minute,
        second,
    })
}

/// `Www, d[d] Mon yyyy hh:mm:ss`, fields separated by single spaces.
fn parse_named(text: &str) -> Option<CivilTime> {
    let mut fields = text.split(' ');
    let weekday = fields.next()?.as_bytes();
    let day = fields.next()?.as_bytes();
    let month = fields.next()?;
    let year = fields.next()?.as_bytes();
    let clock = fields.next()?.as_bytes();
    if fields.next().is_some() {
        return None;
    }
    let weekday_ok =
        matches!(weekday, [a, b, c, b','] if [a, b, c].iter().all(|x| x.is_ascii_alphabetic()));
    if !weekday_ok || !(1..=2).contains(&day.len()) || year.len() != 4 {
        return None;
    }
    let (month, _) = (1..).zip(MONTH_NAMES).find(|(_, name)| *name == month)?;
    let (hour, minute, second) = parse_clock(clock)?;
    Some(CivilTime {
        year: digits(year)?,
        month,
        day: digits(day)?,
        hour,
        minute,
        second,
    })
}

/// `hh:mm:ss`, exactly 8 bytes.
fn parse_clock(bytes: &[u8]) -> Option<(u32, u32, u32)> {
    if bytes.len() != 8 || bytes[2] != b':' || bytes[5] != b':' {
        return None;
    }
    Some((
        digits(&bytes[0..2])?,
        digits(&bytes[3..5])?,
        digits(&bytes[6..8])?,
    ))
}

/// The value of a short run of ASCII digits (no sign, no spaces); `None` if empty or not digits.
///
/// Callers pass at most four bytes, so the value cannot overflow.
fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Whether `year` is a leap year in the Gregorian calendar.
fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The number of days in `month` (1-12) of `year`; 0 for a month out of range.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (negative before it).
///
/// Howard Hinnant's `days_from_civil`: count in 400-year eras of 146,097 days, with years that
/// start on 1 March so that the leap day is the last day of its year.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400); // [0, 399]
    let month_from_march = i64::from((month + 9) % 12); // March = 0, ..., February = 11
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::{days_from_civil, india_time_to_unix};

    #[test]
    fn reads_india_times() {
        // Expected values from `date -u -d '<time> +0530' +%s`.
        let cases: &[(&str, Option<i64>)] = &[
            // The Unix epoch, as Exotel's constant `EndTime` writes it.
            ("1970-01-01 05:30:00", Some(0)),
            ("1970-01-01 00:00:00", Some(-19_800)),
            ("1969-12-31 23:59:59", Some(-19_801)),
            ("2024-07-31 16:42:56", Some(1_722_424_376)),
            ("Wed, 31 Jul 2024 16:42:56", Some(1_722_424_376)),
            ("Tue, 03 Sep 2024 11:44:54", Some(1_725_344_094)),
            ("Tue, 3 Sep 2024 11:44:54", Some(1_725_344_094)),
            // The weekday is not checked against the date.
            ("Mon, 31 Jul 2024 16:42:56", Some(1_722_424_376)),
            ("xyz, 31 Jul 2024 16:42:56", Some(1_722_424_376)),
            ("Tue, 07 Jan 2025 15:51:06", Some(1_736_245_266)),
            ("Sat, 05 Sep 2026 23:10:37", Some(1_788_630_037)),
            ("2026-01-05 07:08:09", Some(1_767_577_089)),
            ("2024-12-31 23:59:59", Some(1_735_669_799)),
            // Leap days.
            ("2024-02-29 12:00:00", Some(1_709_188_200)),
            ("Thu, 29 Feb 2024 00:00:00", Some(1_709_145_000)),
            ("2000-02-29 00:00:00", Some(951_762_600)),
            ("2023-02-29 00:00:00", None),
            ("1900-02-29 00:00:00", None),
            ("2024-02-30 00:00:00", None),
            ("Fri, 30 Feb 2024 00:00:00", None),
            ("2024-04-31 00:00:00", None),
            // Far ends of four-digit years.
            ("1600-03-01 00:00:00", Some(-11_670_931_800)),
            ("0000-01-01 00:00:00", Some(-62_167_239_000)),
            ("9999-12-31 23:59:59", Some(253_402_280_999)),
            // Surrounding whitespace is ignored.
            (" 2024-07-31 16:42:56\n", Some(1_722_424_376)),
            // Placeholders and fields out of range.
            ("0000-00-00 00:00:00", None),
            ("2024-00-10 00:00:00", None),
            ("2024-13-10 00:00:00", None),
            ("2024-01-00 00:00:00", None),
            ("2024-01-32 00:00:00", None),
            ("2024-01-01 24:00:00", None),
            ("2024-01-01 23:60:00", None),
            ("2024-01-01 23:59:60", None),
            ("Wed, 00 Jul 2024 16:42:56", None),
            ("Wed, 32 Jul 2024 16:42:56", None),
            // Other shapes.
            ("", None),
            ("   ", None),
            ("2024-07-31", None),
            ("16:42:56", None),
            ("2024-07-31T16:42:56", None),
            ("2024-07-31 16:42:56Z", None),
            ("2024-07-31  16:42:56", None),
            ("2024-7-31 16:42:56", None),
            ("2024/07/31 16:42:56", None),
            ("2024-07-31 16:42", None),
            ("+024-07-31 16:42:56", None),
            ("2024-07-31 1:42:560", None),
            ("2024-07-31 -1:42:56", None),
            ("१९७०-01-01 05:30:00", None),
            ("Wednesday, 31 Jul 2024 16:42:56", None),
            ("We, 31 Jul 2024 16:42:56", None),
            ("W3d, 31 Jul 2024 16:42:56", None),
            ("Wed 31 Jul 2024 16:42:56", None),
            ("Wed,  31 Jul 2024 16:42:56", None),
            ("Wed, 031 Jul 2024 16:42:56", None),
            ("Wed, 31 jul 2024 16:42:56", None),
            ("Wed, 31 July 2024 16:42:56", None),
            ("Wed, 31 Jul 24 16:42:56", None),
            ("Wed, 31 Jul 2024 16:42:56 +0530", None),
            ("Wed, 31 Jul 2024", None),
            ("Wed, +1 Jul 2024 16:42:56", None),
        ];
        for (text, want) in cases {
            assert_eq!(india_time_to_unix(text), *want, "reading {text:?}");
        }
    }

    #[test]
    fn counts_days_from_the_epoch() {
        let cases: &[((i64, u32, u32), i64)] = &[
            ((1970, 1, 1), 0),
            ((1970, 1, 2), 1),
            ((1969, 12, 31), -1),
            ((1972, 3, 1), 790),
            ((2000, 3, 1), 11_017),
            ((2024, 2, 29), 19_782),
            ((1, 1, 1), -719_162),
        ];
        for ((year, month, day), want) in cases {
            assert_eq!(
                days_from_civil(*year, *month, *day),
                *want,
                "{year}-{month}-{day}"
            );
        }
    }
}
