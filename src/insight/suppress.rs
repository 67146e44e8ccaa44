//! Small numbers protected, exactly by the research note's rule
//! (`../shared/research/health-community-indicators.md` §6 "Suppression rule", after hdir's
//! epikrisetid page and SSB's practice, §4):
//!
//! 1. a share is shown only if its denominator is ≥ 5 and its numerator is 0 or ≥ 5; a count
//!    (a numerator without a denominator) only if it is 0 or ≥ 5;
//! 2. a sum of days (and I5's mean of daily counts, and I2 per 1,000 inhabitants) only if ≥ 5
//!    episodes contributed;
//! 3. a median or p90 only if n ≥ 10 (a minimum or maximum is never computed at all);
//! 4. secondary suppression: where the cells of a row add up to a total someone can see (the
//!    counts and sums of one indicator over the units of a period; the I7 outcome shares of one
//!    unit; a unit's I10 shares split by direction, or by TypeForesp, whose numerators and
//!    denominators add up to the unit's overall I10 share; a unit's I12 counts by sending
//!    organisation, which add up to I12_total), one hidden cell would be recoverable, so the
//!    next-smallest visible one is hidden too — smallest by numerator, for an I10 split by
//!    denominator (the questions behind it). A cell can be in two rows (an `I12_from_*` count is
//!    in its indicator's row over units and in its unit's row over senders), so the rows are
//!    passed over, in the order of their keys, until a pass hides nothing more;
//! 5. fall back to the quarter, then to the 12 months ending with the month (`fallback`);
//! 6. units are organisations (level-1 HER-ids), never a single doctor — by construction in
//!    `indicators`.
//!
//! Pure: cells in, the same cells with `suppressed` set (and their value kept only for the
//! fallback decision; writers print nothing for a suppressed cell).

use std::collections::BTreeMap;

use super::indicators::{Cell, Kind};

/// Rules 1–3 for one cell.
pub fn primary(c: &Cell) -> bool {
    let small = |x: f64| x > 0.0 && x < 5.0;
    match c.kind {
        Kind::Share => c.denominator.is_none_or(|d| d < 5.0) || c.numerator.is_none_or(small),
        Kind::Count => c.value.is_none_or(small),
        Kind::Sum | Kind::Mean | Kind::Rate => c.n < 5,
        Kind::Quantile => c.n < 10 || c.value.is_none(),
    }
}

/// The row of a split cell within its unit (rule 4): `I10_within_5d_dir_gp_municipality` →
/// `I10_within_5d_dir`, `I10_unanswered_14d_T8` → `I10_unanswered_14d_T`, `I12_from_70000` →
/// `I12_from`; `None` for any other indicator.
pub fn split_row(indicator: &str) -> Option<String> {
    if indicator.starts_with("I12_from_") {
        return Some("I12_from".into());
    }
    for share in ["I10_within_5d", "I10_unanswered_14d"] {
        let Some(rest) = indicator.strip_prefix(share) else {
            continue;
        };
        if rest.starts_with("_dir_") {
            return Some(format!("{share}_dir"));
        }
        if rest.starts_with("_T") {
            return Some(format!("{share}_T"));
        }
    }
    None
}

/// Rules 1–4 over a whole set of cells.
pub fn apply(cells: &mut [Cell]) {
    for c in cells.iter_mut() {
        c.suppressed = primary(c);
    }
    // Rule 4 rows: (indicator, period) over units for additive kinds; (period, unit) for I7 and
    // for each split of a unit's I10 shares and I12 counts.
    let mut rows: BTreeMap<(String, String, u32), Vec<usize>> = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        if matches!(c.kind, Kind::Count | Kind::Sum) {
            rows.entry((c.indicator.clone(), c.period.clone(), 0))
                .or_default()
                .push(i);
        }
        let within_unit = if c.kind == Kind::Share && c.indicator.starts_with("I7_") {
            Some("I7".to_owned())
        } else {
            split_row(&c.indicator)
        };
        if let Some(row) = within_unit {
            rows.entry((row, c.period.clone(), c.unit))
                .or_default()
                .push(i);
        }
    }
    while rows.iter().fold(false, |hid, ((row, _, _), idx)| {
        secondary(cells, idx, row.starts_with("I10_")) || hid
    }) {}
}

/// Rule 4 in one row: a single hidden cell takes the next-smallest visible one with it (by its
/// denominator when `by_denominator`, else by its numerator or value). Whether it hid one.
fn secondary(cells: &mut [Cell], row: &[usize], by_denominator: bool) -> bool {
    let hidden = row.iter().filter(|&&i| cells[i].suppressed).count();
    if hidden != 1 {
        return false;
    }
    let size = |c: &Cell| {
        if by_denominator {
            c.denominator.unwrap_or(0.0)
        } else {
            c.numerator.or(c.value).unwrap_or(0.0)
        }
    };
    let next = row
        .iter()
        .copied()
        .filter(|&i| !cells[i].suppressed && size(&cells[i]) > 0.0)
        .min_by(|&a, &b| size(&cells[a]).total_cmp(&size(&cells[b])));
    if let Some(i) = next {
        cells[i].suppressed = true;
    }
    next.is_some()
}

/// Rule 5: for a suppressed monthly cell, the first visible cell of the same indicator and unit
/// among its quarter's and its 12 months' cells.
pub fn fallback<'a>(
    month_cell: &Cell,
    wider: &'a [Cell],
    quarter: &str,
    twelve: &str,
) -> Option<&'a Cell> {
    [quarter, twelve].into_iter().find_map(|period| {
        wider.iter().find(|c| {
            c.period == period
                && c.indicator == month_cell.indicator
                && c.unit == month_cell.unit
                && !c.suppressed
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(ind: &str, unit: u32, kind: Kind, num: Option<f64>, den: Option<f64>, n: u64) -> Cell {
        Cell {
            indicator: ind.into(),
            period: "2026-03".into(),
            unit,
            kind,
            value: match (num, den) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                (Some(a), None) => Some(a),
                _ => Some(1.0),
            },
            numerator: num,
            denominator: den,
            n,
            suppressed: false,
        }
    }

    #[test]
    fn rule1_share_needs_five_in_the_denominator_and_zero_or_five_in_the_numerator() {
        assert!(primary(&cell(
            "I3",
            1,
            Kind::Share,
            Some(0.0),
            Some(4.0),
            4
        )));
        assert!(!primary(&cell(
            "I3",
            1,
            Kind::Share,
            Some(0.0),
            Some(5.0),
            5
        )));
        assert!(primary(&cell(
            "I3",
            1,
            Kind::Share,
            Some(1.0),
            Some(20.0),
            20
        )));
        assert!(primary(&cell(
            "I3",
            1,
            Kind::Share,
            Some(4.0),
            Some(20.0),
            20
        )));
        assert!(!primary(&cell(
            "I3",
            1,
            Kind::Share,
            Some(5.0),
            Some(20.0),
            20
        )));
    }

    #[test]
    fn rule1_counts_between_one_and_four_are_hidden() {
        assert!(!primary(&cell("I1", 1, Kind::Count, Some(0.0), None, 0)));
        assert!(primary(&cell("I1", 1, Kind::Count, Some(3.0), None, 3)));
        assert!(!primary(&cell("I1", 1, Kind::Count, Some(5.0), None, 5)));
    }

    #[test]
    fn rule2_sums_of_days_need_five_episodes() {
        assert!(primary(&cell("I2", 1, Kind::Sum, Some(40.0), None, 4)));
        assert!(!primary(&cell("I2", 1, Kind::Sum, Some(40.0), None, 5)));
        assert!(primary(&cell(
            "I5",
            1,
            Kind::Mean,
            Some(40.0),
            Some(31.0),
            4
        )));
    }

    #[test]
    fn rule3_quantiles_need_ten() {
        assert!(primary(&cell(
            "I4_median",
            1,
            Kind::Quantile,
            None,
            None,
            9
        )));
        assert!(!primary(&cell(
            "I4_median",
            1,
            Kind::Quantile,
            None,
            None,
            10
        )));
    }

    #[test]
    fn rule4_one_hidden_cell_in_a_row_takes_the_next_smallest_with_it() {
        let mut cells = vec![
            cell("I1", 1, Kind::Count, Some(3.0), None, 3),
            cell("I1", 2, Kind::Count, Some(7.0), None, 7),
            cell("I1", 3, Kind::Count, Some(6.0), None, 6),
            cell("I1", 4, Kind::Count, Some(30.0), None, 30),
        ];
        apply(&mut cells);
        let hidden: Vec<u32> = cells
            .iter()
            .filter(|c| c.suppressed)
            .map(|c| c.unit)
            .collect();
        assert_eq!(hidden, vec![1, 3]);
    }

    #[test]
    fn rule4_outcome_shares_of_one_unit_form_a_row() {
        let mut cells = vec![
            cell("I7_home", 1, Kind::Share, Some(12.0), Some(20.0), 20),
            cell("I7_dead", 1, Kind::Share, Some(2.0), Some(20.0), 20),
            cell("I7_institution", 1, Kind::Share, Some(6.0), Some(20.0), 20),
            cell("I7_other", 1, Kind::Share, Some(0.0), Some(20.0), 20),
        ];
        apply(&mut cells);
        let hidden: Vec<&str> = cells
            .iter()
            .filter(|c| c.suppressed)
            .map(|c| c.indicator.as_str())
            .collect();
        assert_eq!(hidden, vec!["I7_dead", "I7_institution"]);
    }

    #[test]
    fn rule4_an_i10_split_of_one_unit_forms_a_row_by_its_questions() {
        // Direction gp→municipality has 3 questions (hidden); the next-smallest direction by
        // questions (8, though its numerator is the largest) goes too, or the overall share
        // minus the visible ones would give it away. Quantiles are not additive: no row.
        let mut cells = vec![
            cell(
                "I10_within_5d_dir_gp_municipality",
                1,
                Kind::Share,
                Some(3.0),
                Some(3.0),
                3,
            ),
            cell(
                "I10_within_5d_dir_hospital_municipality",
                1,
                Kind::Share,
                Some(8.0),
                Some(8.0),
                8,
            ),
            cell(
                "I10_within_5d_dir_other_municipality",
                1,
                Kind::Share,
                Some(5.0),
                Some(30.0),
                30,
            ),
            cell(
                "I10_within_5d_dir_gp_municipality",
                2,
                Kind::Share,
                Some(6.0),
                Some(9.0),
                9,
            ),
            cell("I10_within_5d_T8", 1, Kind::Share, Some(0.0), Some(2.0), 2),
            cell("I10_within_5d_T99", 1, Kind::Share, Some(5.0), Some(6.0), 6),
            cell(
                "I10_within_5d_T1",
                1,
                Kind::Share,
                Some(30.0),
                Some(40.0),
                40,
            ),
            cell("I10_median_h_T8", 1, Kind::Quantile, None, None, 9),
            cell("I10_median_h_T1", 1, Kind::Quantile, None, None, 12),
        ];
        apply(&mut cells);
        let hidden: Vec<(&str, u32)> = cells
            .iter()
            .filter(|c| c.suppressed)
            .map(|c| (c.indicator.as_str(), c.unit))
            .collect();
        assert_eq!(
            hidden,
            vec![
                ("I10_within_5d_dir_gp_municipality", 1),
                ("I10_within_5d_dir_hospital_municipality", 1),
                ("I10_within_5d_T8", 1),
                ("I10_within_5d_T99", 1),
                ("I10_median_h_T8", 1),
            ]
        );
        assert_eq!(
            split_row("I10_unanswered_14d_Tnone").as_deref(),
            Some("I10_unanswered_14d_T")
        );
        assert_eq!(split_row("I10_within_5d"), None);
        assert_eq!(split_row("I10_median_h_dir_gp_municipality"), None);
        assert_eq!(split_row("I12_from_70000").as_deref(), Some("I12_from"));
    }

    #[test]
    fn rule4_rows_are_passed_over_until_nothing_more_is_hidden() {
        // I12 by sender: unit 1 gets 3 from A (hidden), 6 from B, 9 from C; unit 2 gets 0 from
        // A, 20 from B, 30 from C. Unit 1's row hides B@1; the row of B over units then hides
        // B@2, which leaves unit 2's row — already passed — with one hidden cell: a second pass
        // hides C@2, and the row of C over units then C@1.
        let (a, b, c) = ("I12_from_70000", "I12_from_71000", "I12_from_72000");
        let mut cells = vec![
            cell(a, 1, Kind::Count, Some(3.0), None, 3),
            cell(b, 1, Kind::Count, Some(6.0), None, 6),
            cell(c, 1, Kind::Count, Some(9.0), None, 9),
            cell(a, 2, Kind::Count, Some(0.0), None, 0),
            cell(b, 2, Kind::Count, Some(20.0), None, 20),
            cell(c, 2, Kind::Count, Some(30.0), None, 30),
        ];
        apply(&mut cells);
        let visible: Vec<(&str, u32)> = cells
            .iter()
            .filter(|c| !c.suppressed)
            .map(|c| (c.indicator.as_str(), c.unit))
            .collect();
        assert_eq!(visible, vec![(a, 2)]);
    }

    #[test]
    fn rule4_two_hidden_cells_need_no_third() {
        let mut cells = vec![
            cell("I1", 1, Kind::Count, Some(3.0), None, 3),
            cell("I1", 2, Kind::Count, Some(2.0), None, 2),
            cell("I1", 3, Kind::Count, Some(6.0), None, 6),
        ];
        apply(&mut cells);
        assert_eq!(cells.iter().filter(|c| c.suppressed).count(), 2);
    }

    #[test]
    fn rule5_falls_back_to_the_quarter_then_twelve_months() {
        let month = cell("I3", 1, Kind::Share, Some(1.0), Some(3.0), 3);
        let mut q = cell("I3", 1, Kind::Share, Some(1.0), Some(8.0), 8);
        q.period = "2026-Q1".into();
        q.suppressed = true;
        let mut y = cell("I3", 1, Kind::Share, Some(6.0), Some(30.0), 30);
        y.period = "2026-03/12m".into();
        let wider = vec![q, y];
        let f = fallback(&month, &wider, "2026-Q1", "2026-03/12m").unwrap();
        assert_eq!(f.period, "2026-03/12m");
    }
}
