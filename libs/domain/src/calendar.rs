//! Working days (工作日) on the official calendar: weekends off, public holidays off, and the
//! weekend days the State Council declares worked (调休) on. Deadlines of the policy documents
//! (7 working days to report a penalty, 15 to execute a sanction, 3 to answer an objection) count
//! these days.
//!
//! The calendar is data, one file a year under `data/calendar/`: each line `off DATE name` or
//! `work DATE name`. Years without data follow the plain week, and [`Calendar::covers`] says so.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// Today in China Standard Time (UTC+8, no daylight saving), the calendar decisions are dated in.
pub fn today() -> NaiveDate {
    day_at(chrono::Utc::now())
}

/// The day `instant` falls on in China Standard Time: for a caller that has read the clock already.
pub fn day_at(instant: chrono::DateTime<chrono::Utc>) -> NaiveDate {
    (instant + chrono::Duration::hours(8)).date_naive()
}

/// A `YYYY-MM-DD` day, as the contracts and events write them (surrounding spaces allowed).
pub fn parse_day(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    // The usual `2025-03-07` directly: chrono's format parser costs more than the rest of checking
    // a record. Anything else (`2025-3-7`) goes through it, so both accept the same days.
    if let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = text.as_bytes() {
        let digits = [*y1, *y2, *y3, *y4, *m1, *m2, *d1, *d2];
        if digits.iter().all(u8::is_ascii_digit) {
            let number = |digits: &[u8]| digits.iter().fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
            return NaiveDate::from_ymd_opt(number(&digits[..4]) as i32, number(&digits[4..6]), number(&digits[6..]));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// A day as `YYYY-MM-DD`, the way `to_string` writes it, without the formatting machinery: events
/// and idempotency digests write two or three days per record, and chrono's `Display` was a
/// visible part of a bulk submission's CPU.
pub fn day_text(day: NaiveDate) -> String {
    let (year, month, date) = (day.year(), day.month(), day.day());
    if !(0..=9999).contains(&year) {
        // Signed and five-digit years, as chrono writes them.
        return day.to_string();
    }
    let mut out = String::with_capacity(10);
    let digit = |value: u32| char::from(b'0' + value as u8);
    let year = year as u32;
    for value in [year / 1000, year / 100 % 10, year / 10 % 10, year % 10] {
        out.push(digit(value));
    }
    out.push('-');
    out.push(digit(month / 10));
    out.push(digit(month % 10));
    out.push('-');
    out.push(digit(date / 10));
    out.push(digit(date % 10));
    out
}

/// The years shipped with the platform.
const OFFICIAL: &[&str] = &[include_str!("../data/calendar/2025.txt"), include_str!("../data/calendar/2026.txt")];

/// A day that differs from the plain week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exception {
    /// A public holiday on a weekday.
    Holiday(String),
    /// A weekend day that is worked.
    MakeUp(String),
}

/// Why calendar data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Working days of the years it has data for.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    exceptions: BTreeMap<NaiveDate, Exception>,
    years: BTreeSet<i32>,
}

impl Calendar {
    /// The official calendar shipped with the platform (2025 and 2026).
    pub fn official() -> Calendar {
        let mut calendar = Calendar::default();
        for year in OFFICIAL {
            calendar.load(year).expect("the shipped calendar data is valid");
        }
        calendar
    }

    /// Add one year's data (a deployment can add later years without a release).
    pub fn load(&mut self, text: &str) -> Result<(), CalendarError> {
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(kind), Some(date)) = (parts.next(), parts.next()) else {
                return Err(CalendarError::Line {
                    line: line_number,
                    reason: "expected `off|work YYYY-MM-DD name`".into(),
                });
            };
            let name = parts.collect::<Vec<_>>().join(" ");
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| CalendarError::Line { line: line_number, reason: format!("`{date}` is not a date") })?;
            let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
            let exception = match (kind, weekend) {
                ("off", false) => Exception::Holiday(name),
                ("work", true) => Exception::MakeUp(name),
                ("off", true) => continue, // a holiday on a weekend changes nothing
                ("work", false) => {
                    return Err(CalendarError::Line {
                        line: line_number,
                        reason: format!("{date} is a weekday; only weekend days are made up"),
                    });
                }
                _ => {
                    return Err(CalendarError::Line {
                        line: line_number,
                        reason: format!("`{kind}` is neither off nor work"),
                    });
                }
            };
            self.years.insert(date.year());
            self.exceptions.insert(date, exception);
        }
        Ok(())
    }

    /// Whether the calendar has official data for the year of `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.years.contains(&date.year())
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        match self.exceptions.get(&date) {
            Some(Exception::Holiday(_)) => false,
            Some(Exception::MakeUp(_)) => true,
            None => !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    /// The `count`-th working day after `start` (`start` itself does not count): the deadline of
    /// "within `count` working days of `start`". Zero gives `start`.
    pub fn add_working_days(&self, start: NaiveDate, count: u32) -> NaiveDate {
        let mut day = start;
        let mut left = count;
        while left > 0 {
            day += Duration::days(1);
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days after `from` up to and including `to`: how late something that was due on
    /// `from` is on `to`. Negative when `to` is before `from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        if to < from {
            return -self.working_days_between(to, from);
        }
        if to == from {
            return 0;
        }
        // Weekdays in (from, to] by arithmetic, then the exceptions in that range: a holiday takes
        // a weekday away, a make-up day adds a weekend day. Constant time in the distance, which
        // matters when every record of a bulk load is dated years back.
        let mut count = weekdays_through(to) - weekdays_through(from);
        for (_, exception) in self.exceptions.range(from.succ_opt().unwrap_or(from)..=to) {
            match exception {
                Exception::Holiday(_) => count -= 1,
                Exception::MakeUp(_) => count += 1,
            }
        }
        count
    }
}

/// Weekdays (Monday to Friday) from a fixed epoch up to and including `date`.
fn weekdays_through(date: NaiveDate) -> i64 {
    // Days since Monday 0001-01-01 (day 1 of the Common Era is a Monday).
    let days = i64::from(date.num_days_from_ce()) - 1;
    let weeks = days.div_euclid(7);
    let rest = days.rem_euclid(7); // 0 = Monday … 6 = Sunday
    weeks * 5 + rest.min(4) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_written_as_chrono_writes_them() {
        let mut day = NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
        while day.year() < 2101 {
            assert_eq!(day_text(day), day.to_string());
            day += Duration::days(13);
        }
        for day in [
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(12_345, 1, 2).unwrap(),
            NaiveDate::from_ymd_opt(-44, 3, 15).unwrap(),
            NaiveDate::from_ymd_opt(7, 1, 1).unwrap(),
        ] {
            assert_eq!(day_text(day), day.to_string());
        }
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_day_is_read_as_chrono_reads_it_on_the_fast_path_and_off_it() {
        for text in [
            "2025-03-07",
            " 2024-02-29 ",
            "2025-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-12-32",
            "0000-01-01",
            "2025-3-7",
            "2025/03/07",
            "2025-03-0a",
            "20250307",
            "",
            "２０２５-03-07",
            "+2025-03-07",
        ] {
            let chrono = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok();
            assert_eq!(parse_day(text), chrono, "{text:?}");
        }
        assert_eq!(parse_day("2025-03-07"), Some(date("2025-03-07")));
        assert_eq!(parse_day("2025-02-29"), None, "no such day");
    }

    #[test]
    fn the_2025_spring_festival_and_its_make_up_days() {
        let calendar = Calendar::official();
        // 1月26日（周日）、2月8日（周六）上班; 1月28日至2月4日放假.
        assert!(calendar.is_working_day(date("2025-01-26")));
        assert!(calendar.is_working_day(date("2025-02-08")));
        assert!(!calendar.is_working_day(date("2025-01-28")));
        assert!(!calendar.is_working_day(date("2025-02-04")));
        assert_eq!(
            calendar.add_working_days(date("2025-01-24"), 1),
            date("2025-01-26"),
            "Friday, then the Sunday worked"
        );
        assert_eq!(
            calendar.add_working_days(date("2025-01-26"), 2),
            date("2025-02-05"),
            "Monday 27th, then after the holiday"
        );
        // A penalty decided on 2025-01-24 must be reported within 7 working days (seed 002 art. 5):
        // 26th, 27th, Feb 5th, 6th, 7th, 8th (Saturday worked), 10th.
        assert_eq!(calendar.add_working_days(date("2025-01-24"), 7), date("2025-02-10"));
    }

    #[test]
    fn the_2025_national_day_and_its_make_up_days() {
        let calendar = Calendar::official();
        // 9月28日（周日）、10月11日（周六）上班; 10月1日至8日放假.
        assert_eq!(calendar.add_working_days(date("2025-09-26"), 7), date("2025-10-13"));
        assert_eq!(calendar.working_days_between(date("2025-09-30"), date("2025-10-09")), 1);
        assert_eq!(calendar.working_days_between(date("2025-10-09"), date("2025-09-30")), -1);
        assert_eq!(
            calendar.working_days_between(date("2025-10-08"), date("2025-10-11")),
            3,
            "9th, 10th and Saturday 11th"
        );
    }

    #[test]
    fn the_2026_spring_festival_counts_nine_days_off() {
        let calendar = Calendar::official();
        assert!(calendar.is_working_day(date("2026-02-14")));
        assert_eq!(calendar.add_working_days(date("2026-02-14"), 1), date("2026-02-24"));
        assert!(calendar.is_working_day(date("2026-02-28")));
    }

    #[test]
    fn years_without_data_follow_the_week_and_say_so() {
        let calendar = Calendar::official();
        assert!(calendar.covers(date("2026-06-01")));
        assert!(!calendar.covers(date("2027-10-01")));
        assert!(calendar.is_working_day(date("2027-10-01")), "a Friday without data is worked");
        assert_eq!(calendar.add_working_days(date("2027-01-08"), 1), date("2027-01-11"));
    }

    #[test]
    fn bad_data_is_refused_with_its_line() {
        let mut calendar = Calendar::default();
        assert_eq!(
            calendar.load("# header\nwork 2025-01-27 not a weekend"),
            Err(CalendarError::Line {
                line: 2,
                reason: "2025-01-27 is a weekday; only weekend days are made up".into()
            })
        );
        assert!(calendar.load("off 2025-13-01 x").is_err());
    }

    #[test]
    fn counting_matches_a_day_by_day_walk() {
        let calendar = Calendar::official();
        let walk = |from: NaiveDate, to: NaiveDate| {
            let mut count = 0;
            let mut day = from;
            while day < to {
                day += Duration::days(1);
                if calendar.is_working_day(day) {
                    count += 1;
                }
            }
            count
        };
        let start = date("2024-12-20");
        for offset in 0..800 {
            for length in [0, 1, 2, 5, 6, 7, 13, 40, 400] {
                let from = start + Duration::days(offset);
                let to = from + Duration::days(length);
                assert_eq!(calendar.working_days_between(from, to), walk(from, to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn counting_and_adding_agree() {
        let calendar = Calendar::official();
        let start = date("2025-01-01");
        for count in 0..400 {
            let end = calendar.add_working_days(start, count);
            assert_eq!(calendar.working_days_between(start, end), i64::from(count));
        }
    }
}
