//! A clock that runs faster than the wall clock, for `helsemelding-lab soak`: a soak of an hour
//! then covers weeks of the gateway's time, so AppRecs go overdue (HIS 80415:2012 §3.2: 96 hours),
//! records are pruned past retention and CRLs turn stale and are refreshed while it runs.
//!
//! Armed by `HELSEMELDING_CLOCK_SPEED=<factor>[@<origin>]`: the gateway's time is
//! `origin + (wall − origin) × factor`, `origin` in unix seconds (default: when `serve` started),
//! so a load generator that knows the value computes the very same time ([`FastClock::at`]). The
//! housekeeping pass (overdue, prune) then runs every minute of the gateway's time.
//!
//! Like the crash points (`super::crash`), and behind the same gate: the cargo feature
//! `fault-injection` (off in the operators' build: none of this is compiled in, and a set variable
//! is ignored with a warning) and [`super::crash::allow`] (only `helsemelding-lab serve` calls it).
//! Where it is on, `serve` logs a warning naming the factor and refuses to start on a value it
//! cannot read.

use super::server::Clock;

/// The environment variable that speeds the gateway's clock up.
pub const ENV: &str = "HELSEMELDING_CLOCK_SPEED";

/// `origin + (wall − origin) × factor`.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastClock {
    pub factor: u32,
    pub origin: crate::ids::Timestamp,
}

#[cfg(feature = "fault-injection")]
impl FastClock {
    /// Reads `<factor>[@<origin unix seconds>]`; `started` is the origin when none is given.
    pub fn parse(value: &str, started: crate::ids::Timestamp) -> Result<FastClock, String> {
        let (factor, origin) = match value.split_once('@') {
            Some((f, o)) => (f, Some(o)),
            None => (value, None),
        };
        let factor = factor
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|f| *f >= 1)
            .ok_or_else(|| format!("{ENV}={value}: the factor must be a whole number from 1"))?;
        let origin = match origin {
            None => started,
            Some(o) => o
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .ok_or_else(|| {
                    format!("{ENV}={value}: the origin after '@' must be unix seconds")
                })?,
        };
        Ok(FastClock { factor, origin })
    }

    /// The gateway's time at wall time `wall`.
    pub fn at(&self, wall: crate::ids::Timestamp) -> crate::ids::Timestamp {
        self.origin + (wall - self.origin) * self.factor
    }

    /// The value of [`ENV`] that makes `serve` run this clock.
    pub fn env_value(&self) -> String {
        format!("{}@{}", self.factor, self.origin.unix_timestamp())
    }
}

/// The clock `serve` runs with, and the factor it runs at (1: the wall clock). Where the fast
/// clock is unavailable (see the module documentation) a set variable is ignored with a warning.
pub fn from_env() -> Result<(Clock, u32), String> {
    let value = match std::env::var(ENV) {
        Ok(v) if v.trim().is_empty() => return Ok((Clock::system(), 1)),
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok((Clock::system(), 1)),
        Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{ENV} is not valid UTF-8")),
    };
    if let Some(why) = super::crash::unavailable() {
        tracing::warn!("{ENV} is set, but {why}: ignored, the clock is the wall clock");
        return Ok((Clock::system(), 1));
    }
    fast(&value)
}

#[cfg(feature = "fault-injection")]
fn fast(value: &str) -> Result<(Clock, u32), String> {
    let c = FastClock::parse(value, time::OffsetDateTime::now_utc())?;
    tracing::warn!(
        factor = c.factor,
        origin = c.origin.unix_timestamp(),
        "lab clock: the gateway's time runs {} times faster than the wall clock ({ENV}); never set it in production",
        c.factor
    );
    Ok((
        Clock::new(move || c.at(time::OffsetDateTime::now_utc())),
        c.factor,
    ))
}

#[cfg(not(feature = "fault-injection"))]
fn fast(_value: &str) -> Result<(Clock, u32), String> {
    Ok((Clock::system(), 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_the_lab_serve_the_clock_is_the_wall_clock() {
        // The library's own tests never call crash::allow(): a set variable is ignored.
        assert!(super::super::crash::unavailable().is_some());
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn the_fast_clock_multiplies_the_time_since_its_origin() {
        use super::FastClock;
        let t0 = time::macros::datetime!(2026-12-04 12:00 UTC);
        let c = FastClock::parse("60", t0).unwrap();
        assert_eq!(
            c.at(t0 + time::Duration::seconds(2)),
            t0 + time::Duration::minutes(2)
        );
        let c = FastClock::parse("1440@1796385600", t0).unwrap();
        assert_eq!(c.origin.unix_timestamp(), 1796385600);
        assert_eq!(FastClock::parse(&c.env_value(), t0).unwrap(), c);
        assert!(FastClock::parse("0", t0).unwrap_err().contains("from 1"));
        assert!(FastClock::parse("2@soon", t0)
            .unwrap_err()
            .contains("unix seconds"));
    }
}
