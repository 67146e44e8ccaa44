//! Times as the messages write them, placed in Europe/Oslo (research note §3 pitfalls: "Times
//! carry no time zone: read them as Europe/Oslo").
//!
//! Norway keeps Central European Time (UTC+1) with summer time (UTC+2) from the last Sunday of
//! March 01:00 UTC to the last Sunday of October 01:00 UTC (EU directive 2000/84/EC, which the
//! Norwegian regulation on summer time follows since 1996). That one rule is written out here
//! instead of pulling a time-zone database into the gateway; times before 1996 are not expected.
//!
//! Input: xs:date / xs:dateTime text (with or without an offset). Output: an instant (UTC) or the
//! Oslo calendar date. Unparseable text gives `None`, never a panic.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// The last Sunday of `month` in `year`, at 01:00 UTC.
fn switch(year: i32, month: Month) -> Option<OffsetDateTime> {
    let last = Date::from_calendar_date(year, month, 31).ok()?;
    let back = last.weekday().number_days_from_sunday();
    let day = last - Duration::days(i64::from(back));
    Some(PrimitiveDateTime::new(day, Time::from_hms(1, 0, 0).ok()?).assume_utc())
}

/// Oslo's offset from UTC at instant `t`.
pub fn offset_at(t: OffsetDateTime) -> UtcOffset {
    let t = t.to_offset(UtcOffset::UTC);
    let summer = match (
        switch(t.year(), Month::March),
        switch(t.year(), Month::October),
    ) {
        (Some(start), Some(end)) => t >= start && t < end,
        _ => false,
    };
    let hours = if summer { 2 } else { 1 };
    UtcOffset::from_hms(hours, 0, 0).unwrap_or(UtcOffset::UTC)
}

/// Instant `t` as Oslo wall-clock time.
pub fn local(t: OffsetDateTime) -> PrimitiveDateTime {
    let l = t.to_offset(offset_at(t));
    PrimitiveDateTime::new(l.date(), l.time())
}

/// An Oslo wall-clock time as an instant. In the autumn hour that occurs twice the first (summer)
/// one is taken; a time in the spring gap is read with the winter offset (one hour later in
/// summer time), as clocks that were not moved would have written it.
pub fn from_local(l: PrimitiveDateTime) -> OffsetDateTime {
    let summer = l.assume_offset(UtcOffset::from_hms(2, 0, 0).unwrap_or(UtcOffset::UTC));
    if offset_at(summer).whole_hours() == 2 {
        return summer;
    }
    l.assume_offset(UtcOffset::from_hms(1, 0, 0).unwrap_or(UtcOffset::UTC))
}

/// An xs:dateTime or xs:date as an instant; a zone-less value is Oslo time, a bare date is Oslo
/// midnight.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Some((dt, off)) = crate::msghead::parse_xs_datetime(s) {
        return Some(match off {
            Some(o) => dt.assume_offset(o),
            None => from_local(dt),
        });
    }
    parse_date(s).map(|d| from_local(PrimitiveDateTime::new(d, Time::MIDNIGHT)))
}

/// The Oslo calendar date of an xs:date or xs:dateTime (an offset is honoured).
pub fn date_of(s: &str) -> Option<Date> {
    let s = s.trim();
    match crate::msghead::parse_xs_datetime(s) {
        Some((dt, Some(o))) => Some(local(dt.assume_offset(o)).date()),
        Some((dt, None)) => Some(dt.date()),
        None => parse_date(s),
    }
}

/// `YYYY-MM-DD`, optionally followed by an offset (xs:date allows one; the date stands as written).
fn parse_date(s: &str) -> Option<Date> {
    let d = s.get(..10)?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(d, fmt).ok()
}

/// Easter Sunday of `year` in the Gregorian calendar (the computus as Gauss and later Meeus/Jones/
/// Butcher wrote it out; valid for every Gregorian year). `None` only outside `time`'s range.
pub fn easter_sunday(year: i32) -> Option<Date> {
    let (a, b, c) = (year % 19, year / 100, year % 100);
    let (d, e) = (b / 4, b % 4);
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let (i, k) = (c / 4, c % 4);
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::from_calendar_date(year, Month::try_from(month as u8).ok()?, day as u8).ok()
}

/// Whether `d` is a Norwegian public holiday (lov om helligdager og helligdagsfred §1 with
/// lov om 1. og 17. mai som høgtidsdager): 1 January, Skjærtorsdag, Langfredag, 1. and 2. påskedag,
/// 1 May, 17 May, Kristi himmelfartsdag, 1. and 2. pinsedag, 25 and 26 December. Every Sunday is a
/// holiday too; [`is_working_day`] already excludes it.
pub fn is_public_holiday(d: Date) -> bool {
    let fixed = matches!(
        (d.month(), d.day()),
        (Month::January, 1)
            | (Month::May, 1)
            | (Month::May, 17)
            | (Month::December, 25)
            | (Month::December, 26)
    );
    if fixed {
        return true;
    }
    let Some(easter) = easter_sunday(d.year()) else {
        return false;
    };
    // Skjærtorsdag −3, Langfredag −2, påskedag 0, 2. påskedag +1, Kristi himmelfart +39,
    // pinsedag +49, 2. pinsedag +50.
    let from_easter = (d - easter).whole_days();
    matches!(from_easter, -3 | -2 | 0 | 1 | 39 | 49 | 50)
}

/// Whether `d` is a working day (virkedag): Monday–Friday and not a public holiday. Saturday is
/// not counted although the Sunday-and-holiday act calls it a virkedag, because the dialogue
/// reply norm is about offices' working days (kjøreregler for dialogmeldinger).
pub fn is_working_day(d: Date) -> bool {
    !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) && !is_public_holiday(d)
}

/// The instant `n` working days after `t` (same wall-clock time, Oslo).
pub fn add_working_days(t: OffsetDateTime, n: u32) -> OffsetDateTime {
    let l = local(t);
    let mut d = l.date();
    let mut left = n;
    while left > 0 {
        d = d.next_day().unwrap_or(d);
        if is_working_day(d) {
            left -= 1;
        }
    }
    from_local(PrimitiveDateTime::new(d, l.time()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn zone_less_times_are_oslo_time_summer_and_winter() {
        assert_eq!(
            parse("2026-01-15T10:00:00"),
            Some(datetime!(2026-01-15 09:00 UTC))
        );
        assert_eq!(
            parse("2026-07-15T10:00:00"),
            Some(datetime!(2026-07-15 08:00 UTC))
        );
        assert_eq!(
            parse("2026-07-15T10:00:00Z"),
            Some(datetime!(2026-07-15 10:00 UTC))
        );
        assert_eq!(parse("2026-03-02"), Some(datetime!(2026-03-01 23:00 UTC)));
        assert_eq!(parse("nonsense"), None);
    }

    #[test]
    fn switches_are_the_last_sundays_at_one_utc() {
        // 2026: 29 March and 25 October.
        assert_eq!(offset_at(datetime!(2026-03-29 00:59 UTC)).whole_hours(), 1);
        assert_eq!(offset_at(datetime!(2026-03-29 01:00 UTC)).whole_hours(), 2);
        assert_eq!(offset_at(datetime!(2026-10-25 00:59 UTC)).whole_hours(), 2);
        assert_eq!(offset_at(datetime!(2026-10-25 01:00 UTC)).whole_hours(), 1);
    }

    #[test]
    fn a_utc_time_late_in_the_evening_is_the_next_oslo_day() {
        assert_eq!(
            date_of("2026-06-30T23:30:00Z"),
            Some(time::macros::date!(2026 - 07 - 01))
        );
        assert_eq!(
            date_of("2026-06-30T23:30:00"),
            Some(time::macros::date!(2026 - 06 - 30))
        );
    }

    #[test]
    fn easter_sunday_in_known_years() {
        // Published church calendars.
        for (y, m, d) in [
            (2000, Month::April, 23),
            (2008, Month::March, 23),
            (2011, Month::April, 24),
            (2019, Month::April, 21),
            (2024, Month::March, 31),
            (2025, Month::April, 20),
            (2026, Month::April, 5),
            (2027, Month::March, 28),
            (2038, Month::April, 25),
        ] {
            assert_eq!(
                easter_sunday(y),
                Date::from_calendar_date(y, m, d).ok(),
                "{y}"
            );
        }
    }

    #[test]
    fn norwegian_public_holidays_of_2026_and_2024() {
        use time::macros::date;
        let holidays_2026 = [
            date!(2026 - 01 - 01),
            date!(2026 - 04 - 02), // Skjærtorsdag
            date!(2026 - 04 - 03), // Langfredag
            date!(2026 - 04 - 05), // 1. påskedag
            date!(2026 - 04 - 06), // 2. påskedag
            date!(2026 - 05 - 01),
            date!(2026 - 05 - 14), // Kristi himmelfartsdag
            date!(2026 - 05 - 17),
            date!(2026 - 05 - 24), // 1. pinsedag
            date!(2026 - 05 - 25), // 2. pinsedag
            date!(2026 - 12 - 25),
            date!(2026 - 12 - 26),
        ];
        let mut d = date!(2026 - 01 - 01);
        let mut found = Vec::new();
        while d.year() == 2026 {
            if is_public_holiday(d) {
                found.push(d);
            }
            d = d.next_day().unwrap();
        }
        assert_eq!(found, holidays_2026);
        // 2024: an early Easter, and Kristi himmelfart on 9 May.
        for h in [
            date!(2024 - 03 - 28),
            date!(2024 - 03 - 29),
            date!(2024 - 04 - 01),
            date!(2024 - 05 - 09),
            date!(2024 - 05 - 20),
        ] {
            assert!(is_public_holiday(h), "{h}");
            assert!(!is_working_day(h), "{h}");
        }
        assert!(!is_public_holiday(date!(2024 - 04 - 02)));
        assert!(is_working_day(date!(2024 - 04 - 02)));
        // Christmas Eve and New Year's Eve are ordinary days in the act.
        assert!(is_working_day(date!(2025 - 12 - 24)));
        assert!(is_working_day(date!(2025 - 12 - 31)));
    }

    #[test]
    fn working_days_skip_public_holidays() {
        // Wednesday 1 April 2026 + 5 working days: Thu 2 (Skjærtorsdag), Fri 3 (Langfredag),
        // Mon 6 (2. påskedag) are skipped → 7, 8, 9, 10, 13 April.
        let t = parse("2026-04-01T09:30:00").unwrap();
        assert_eq!(local(add_working_days(t, 5)), datetime!(2026-04-13 09:30));
        // Friday 15 May 2026: 17 May is a Sunday, 25 May is 2. pinsedag →
        // 18, 19, 20, 21, 22 May.
        let t = parse("2026-05-15T12:00:00").unwrap();
        assert_eq!(local(add_working_days(t, 5)), datetime!(2026-05-22 12:00));
        // Monday 21 Dec 2026: 25 Dec (Fri) is a holiday, 26 Dec a Saturday →
        // 22, 23, 24, 28, 29 Dec.
        let t = parse("2026-12-21T08:00:00").unwrap();
        assert_eq!(local(add_working_days(t, 5)), datetime!(2026-12-29 08:00));
        // 2027: 17 May is a Monday, and Kristi himmelfart 6 May a Thursday.
        let t = parse("2027-05-05T10:00:00").unwrap();
        assert_eq!(local(add_working_days(t, 5)), datetime!(2027-05-13 10:00));
    }

    #[test]
    fn working_days_skip_weekends() {
        // Friday 4 Dec 2026 + 5 working days = Friday 11 Dec.
        let t = parse("2026-12-04T12:00:00").unwrap();
        assert_eq!(local(add_working_days(t, 5)), datetime!(2026-12-11 12:00));
    }
}
