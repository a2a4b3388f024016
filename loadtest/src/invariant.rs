//! The check at the end of every run: what the harness was told ("held", acknowledged) against
//! what the system reports when asked afterwards.
//!
//! For every SKU: acknowledged units + available = initial stock (no oversell, no lost hold).
//! Requests whose outcome is unknown (a timeout, a killed server) are "in doubt": the system
//! may count them or not, so the check allows that many units either way, and says so.

use serde::{Deserialize, Serialize};

use crate::target::Level;

/// What the harness knows about one SKU.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub sku: String,
    pub initial: u64,
    /// Units in holds (or orders) acknowledged and still live at the time of the check.
    pub live_units: u64,
    /// Units of requests that failed with an unknown outcome.
    pub in_doubt: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SkuCheck {
    pub sku: String,
    pub initial: u64,
    pub acknowledged: u64,
    pub in_doubt: u64,
    pub on_hand: u64,
    pub held_and_allocated: u64,
    pub available: u64,
    pub ok: bool,
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    /// The rule checked, when it is not the flash sale's.
    #[serde(default)]
    pub rule: Option<String>,
    pub skus: Vec<SkuCheck>,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn failed(problem: impl Into<String>) -> Verdict {
        Verdict {
            passed: false,
            rule: None,
            skus: Vec::new(),
            problems: vec![problem.into()],
        }
    }

    pub fn summary(&self) -> String {
        let skus = self.skus.len();
        if self.passed {
            let doubt: u64 = self.skus.iter().map(|s| s.in_doubt).sum();
            if let Some(rule) = &self.rule {
                format!("PASSED for {skus} SKUs: {rule}")
            } else if doubt > 0 {
                format!("PASSED for {skus} SKUs ({doubt} units in doubt, within bounds)")
            } else {
                format!("PASSED for {skus} SKUs: acknowledged + available = initial")
            }
        } else {
            format!("FAILED: {}", self.problems.join("; "))
        }
    }
}

/// Compares every SKU's levels with what the harness expects.
pub fn check(expected: &[Expected], levels: &[Level]) -> Verdict {
    let mut verdict = Verdict {
        passed: true,
        ..Verdict::default()
    };
    for e in expected {
        let Some(level) = levels.iter().find(|l| l.sku == e.sku) else {
            verdict.passed = false;
            verdict.problems.push(format!("{}: not reported", e.sku));
            continue;
        };
        let promised = level.held + level.allocated;
        // Split checks so that a failure names the rule it broke.
        let problem = if level.on_hand != e.initial {
            Some(format!("on_hand {} ≠ initial {}", level.on_hand, e.initial))
        } else if promised > level.on_hand {
            Some(format!(
                "oversold: held+allocated {promised} > on_hand {}",
                level.on_hand
            ))
        } else if promised < e.live_units {
            Some(format!(
                "lost holds: the system holds {promised}, {} were acknowledged",
                e.live_units
            ))
        } else if promised > e.live_units + e.in_doubt {
            Some(format!(
                "phantom holds: the system holds {promised}, acknowledged {} + in doubt {}",
                e.live_units, e.in_doubt
            ))
        } else if level.available + promised != e.initial {
            Some(format!(
                "available {} + held {} ≠ initial {}",
                level.available, promised, e.initial
            ))
        } else {
            None
        };
        if let Some(p) = &problem {
            verdict.passed = false;
            verdict.problems.push(format!("{}: {p}", e.sku));
        }
        verdict.skus.push(SkuCheck {
            sku: e.sku.clone(),
            initial: e.initial,
            acknowledged: e.live_units,
            in_doubt: e.in_doubt,
            on_hand: level.on_hand,
            held_and_allocated: promised,
            available: level.available,
            ok: problem.is_none(),
            problem,
        });
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(available: u64, held: u64) -> Level {
        Level {
            sku: "A".into(),
            on_hand: 10,
            held,
            allocated: 0,
            available,
        }
    }

    fn expect(live_units: u64, in_doubt: u64) -> Expected {
        Expected {
            sku: "A".into(),
            initial: 10,
            live_units,
            in_doubt,
        }
    }

    #[test]
    fn exact_accounting_passes_and_every_breach_is_named() {
        let cases = [
            (expect(4, 0), level(6, 4), None),
            (expect(4, 0), level(7, 3), Some("lost holds")),
            (expect(4, 1), level(5, 5), None),
            (expect(4, 0), level(5, 5), Some("phantom")),
            (expect(4, 0), level(0, 12), Some("oversold")),
        ];
        for (e, l, want) in cases {
            let v = check(&[e], &[l]);
            match want {
                None => assert!(v.passed, "{:?}", v.problems),
                Some(p) => assert!(v.problems[0].contains(p), "{:?}", v.problems),
            }
        }
    }
}
