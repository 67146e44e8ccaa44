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

/// Whether `d` is a working day (Monday–Friday). Public holidays are not known here and count as
/// working days (a stated limitation of I10's "within 5 virkedager").
pub fn is_weekday(d: Date) -> bool {
    !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

/// The instant `n` working days after `t` (same wall-clock time, Oslo).
pub fn add_working_days(t: OffsetDateTime, n: u32) -> OffsetDateTime {
    let l = local(t);
    let mut d = l.date();
    let mut left = n;
    while left > 0 {
        d = d.next_day().unwrap_or(d);
        if is_weekday(d) {
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
    fn working_days_skip_weekends() {
        // Friday 4 Dec 2026 + 5 working days = Friday 11 Dec.
        let t = parse("2026-12-04T12:00:00").unwrap();
        assert_eq!(local(add_working_days(t, 5)), datetime!(2026-12-11 12:00));
    }
}
