//! The optional population table (`[insight] population_file`, issue 13 item 2): inhabitants per
//! municipality and year, so the report can give USK days per 1,000 inhabitants (research note §6
//! I2, as Samdata and the health communities publish them, §1 and §5).
//!
//! Input: a CSV file `kommunenummer,year,population` (a header line exactly so, then one row per
//! municipality and year; `#` comment lines and blank lines are skipped), as SSB's table 07459
//! gives it for 1 January. Output: [`Population`], and per I2 cell an `I2_per_1000` cell. Every
//! problem of a file is reported at once, with its line number; nothing panics.
//!
//! A rate cell is hidden exactly when its I2 cell is: the population is public, so a visible rate
//! would give a hidden sum of days back (rate × population ÷ 1,000).

use std::collections::BTreeMap;
use std::path::Path;

use super::indicators::{Cell, Kind};

/// The header the file must start with.
pub const HEADER: &str = "kommunenummer,year,population";

/// Inhabitants by (kommunenummer, year).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Population {
    rows: BTreeMap<(String, i32), u64>,
}

impl Population {
    /// Reads the file; every problem found, each with its line, when it is not a good table.
    pub fn load(path: &Path) -> Result<Population, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        Population::parse(&text)
    }

    /// The problems of the file at `path` (empty when it is good), for `check-config`.
    pub fn problems(path: &Path) -> Vec<String> {
        Population::load(path).err().unwrap_or_default()
    }

    /// Parses the CSV text (see the module documentation).
    pub fn parse(text: &str) -> Result<Population, Vec<String>> {
        let mut problems = Vec::new();
        let mut rows = BTreeMap::new();
        let mut header_seen = false;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim().trim_start_matches('\u{feff}');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !header_seen {
                header_seen = true;
                if line.replace(' ', "") != HEADER {
                    problems.push(format!(
                        "line {n}: expected the header {HEADER:?}, found {line:?}"
                    ));
                }
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [kommune, year, people] = fields[..] else {
                problems.push(format!(
                    "line {n}: expected 3 fields (kommunenummer,year,population), found {}",
                    fields.len()
                ));
                continue;
            };
            let mut bad = false;
            if kommune.len() != 4 || !kommune.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "line {n}: kommunenummer {kommune:?} is not 4 digits (e.g. 0301, 5501)"
                ));
                bad = true;
            }
            let year_ok = year
                .parse::<i32>()
                .ok()
                .filter(|y| (1900..=2999).contains(y));
            if year_ok.is_none() {
                problems.push(format!("line {n}: year {year:?} is not a year (YYYY)"));
                bad = true;
            }
            let people_ok = people.parse::<u64>().ok().filter(|p| *p > 0);
            if people_ok.is_none() {
                problems.push(format!(
                    "line {n}: population {people:?} is not a whole number above 0"
                ));
                bad = true;
            }
            if bad {
                continue;
            }
            if let (Some(y), Some(p)) = (year_ok, people_ok) {
                if rows.insert((kommune.to_owned(), y), p).is_some() {
                    problems.push(format!(
                        "line {n}: kommunenummer {kommune} has a second row for {y}"
                    ));
                }
            }
        }
        if !header_seen {
            problems.push(format!(
                "the file is empty (expected the header {HEADER:?})"
            ));
        }
        if problems.is_empty() {
            Ok(Population { rows })
        } else {
            Err(problems)
        }
    }

    /// The inhabitants of `kommune` for `year`: that year's figure, else the latest earlier one
    /// (SSB publishes a year's figure some weeks into it). `None` when there is neither.
    pub fn of(&self, kommune: &str, year: i32) -> Option<u64> {
        self.rows
            .range((kommune.to_owned(), i32::MIN)..=(kommune.to_owned(), year))
            .next_back()
            .map(|(_, p)| *p)
    }

    /// An `I2_per_1000` cell for every I2 cell whose unit has a municipality in the table: value
    /// = days ÷ population × 1,000, numerator the days, denominator the population, n the
    /// episodes; hidden when the I2 cell is. The period's year picks the population (a quarter's
    /// or 12 months' period, the year it ends in). `municipality` gives a unit's kommunenummer.
    pub fn rates(&self, cells: &[Cell], municipality: impl Fn(u32) -> Option<String>) -> Vec<Cell> {
        cells
            .iter()
            .filter(|c| c.indicator == "I2")
            .filter_map(|c| {
                let year: i32 = c.period.get(..4)?.parse().ok()?;
                let people = self.of(&municipality(c.unit)?, year)?;
                let days = c.value?;
                Some(Cell {
                    indicator: "I2_per_1000".into(),
                    period: c.period.clone(),
                    unit: c.unit,
                    kind: Kind::Rate,
                    value: Some(days / people as f64 * 1000.0),
                    numerator: Some(days),
                    denominator: Some(people as f64),
                    n: c.n,
                    suppressed: c.suppressed,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\u{feff}kommunenummer,year,population\n\
        # SSB 07459, 1 January\n\
        5501,2025,78000\n\
        5501,2026,80000\n\
        \n\
        1804,2026, 52000\n";

    fn i2(unit: u32, period: &str, days: f64, n: u64, suppressed: bool) -> Cell {
        Cell {
            indicator: "I2".into(),
            period: period.into(),
            unit,
            kind: Kind::Sum,
            value: Some(days),
            numerator: Some(days),
            denominator: None,
            n,
            suppressed,
        }
    }

    #[test]
    fn a_good_table_gives_the_year_or_the_latest_before_it() {
        let p = Population::parse(GOOD).unwrap();
        assert_eq!(p.of("5501", 2026), Some(80000));
        assert_eq!(p.of("5501", 2025), Some(78000));
        assert_eq!(p.of("5501", 2027), Some(80000), "latest earlier year");
        assert_eq!(p.of("5501", 2024), None, "no earlier year");
        assert_eq!(p.of("1804", 2026), Some(52000));
        assert_eq!(p.of("0301", 2026), None);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "kommune,year,population\n\
            55O1,2026,100\n\
            5501,26,100\n\
            5501,2026,-4\n\
            5501,2026\n\
            1804,2026,0\n\
            1804,2025,10\n\
            1804,2025,11\n";
        let problems = Population::parse(text).unwrap_err();
        let want = [
            "line 1: expected the header",
            "line 2: kommunenummer \"55O1\"",
            "line 3: year \"26\"",
            "line 4: population \"-4\"",
            "line 5: expected 3 fields",
            "line 6: population \"0\"",
            "line 8: kommunenummer 1804 has a second row for 2025",
        ];
        assert_eq!(problems.len(), want.len(), "{problems:#?}");
        for (p, w) in problems.iter().zip(want) {
            assert!(p.starts_with(w), "{p:?} should start with {w:?}");
        }
        assert_eq!(
            Population::parse("# only a comment\n").unwrap_err(),
            vec![format!(
                "the file is empty (expected the header {HEADER:?})"
            )]
        );
    }

    #[test]
    fn a_missing_file_is_a_problem_not_a_panic() {
        let problems = Population::problems(Path::new("/nonexistent/population.csv"));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("cannot read /nonexistent/population.csv"));
    }

    #[test]
    fn rates_per_1000_follow_their_sums_suppression() {
        let p = Population::parse(GOOD).unwrap();
        let muni = |u: u32| match u {
            81000 => Some("5501".to_owned()),
            82000 => Some("1804".to_owned()),
            83000 => Some("9999".to_owned()),
            _ => None,
        };
        let cells = vec![
            i2(81000, "2026-03", 40.0, 7, false),
            i2(82000, "2026-03", 13.0, 6, true),
            i2(83000, "2026-03", 50.0, 9, false),
            i2(84000, "2026-03", 50.0, 9, false),
            i2(81000, "2026-Q1", 120.0, 15, false),
            i2(81000, "2025-12/12m", 390.0, 60, false),
        ];
        let rates = p.rates(&cells, muni);
        let got: Vec<(u32, &str, f64, bool)> = rates
            .iter()
            .map(|c| (c.unit, c.period.as_str(), c.value.unwrap(), c.suppressed))
            .collect();
        assert_eq!(
            got,
            vec![
                (81000, "2026-03", 0.5, false),
                // Hidden as its sum is (a secondary suppression, say): rate × population would
                // give the 13 days back.
                (82000, "2026-03", 0.25, true),
                (81000, "2026-Q1", 1.5, false),
                (81000, "2025-12/12m", 5.0, false),
            ]
        );
        let c = &rates[0];
        assert_eq!(c.indicator, "I2_per_1000");
        assert_eq!(
            (c.numerator, c.denominator, c.n),
            (Some(40.0), Some(80000.0), 7)
        );
        assert_eq!(c.kind, Kind::Rate);
        assert!(!crate::insight::suppress::primary(c));
        let mut few = c.clone();
        few.n = 4;
        assert!(
            crate::insight::suppress::primary(&few),
            "rule 2: five episodes"
        );
    }
}
