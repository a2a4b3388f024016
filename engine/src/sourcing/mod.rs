//! Sourcing: deciding which stock point serves which units of each line.
//!
//! - [`rules`]: the operator's rules as data, validated and compiled against the network.
//! - [`plan`]: the planner, a pure function from request, rules and availability to a
//!   [`plan::SourcingPlan`] with its explanation, or a shortage report.

pub mod plan;
pub mod rules;

pub use plan::{
    plan, AvailabilityView, Explanation, PlanError, PlanLine, PlanOptions, PlanOutcome,
    PlanRequest, PlannedAllocation, Shortage, SourcingPlan, StockAt, TieBreak,
};
pub use rules::{CompiledRuleSet, Constraints, Rule, RuleError, RuleMatch, RuleSet, Strategy};

#[cfg(test)]
mod tests;
