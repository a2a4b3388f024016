//! Sourcing rules as data: what operators write (`PUT /v1/sourcing-rules`), how it is checked,
//! and the compiled form the planner uses, with stock point codes resolved to ids.

use serde::{Deserialize, Serialize};

use crate::ids::{Code, Qty, StockPointId};
use crate::limits::{RULES_MAX, SPLITS_MAX};
use crate::network::{Channel, Network, StockPointKind};

/// The longest SKU prefix or tag a rule may name.
pub const RULE_TEXT_BYTES_MAX: usize = 64;
/// Tags or stock points one rule may list.
pub const RULE_LIST_LEN_MAX: usize = 256;
/// The furthest ahead incoming stock may be promised.
pub const PROMISE_INCOMING_DAYS_MAX: u32 = 365;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Lowest priority rank first.
    Priority,
    /// Shortest great-circle distance to the ship-to point first (priority without one).
    Closest,
    /// Cheapest shipment first.
    LowestCost,
    /// As few stock points for the whole request as possible (greedy set cover).
    FewestShipments,
    /// Most available first, spreading depletion across the network.
    Balance,
}

/// Which requests a rule applies to. Empty lists match anything.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleMatch {
    pub channels: Vec<Channel>,
    pub sku_prefix: Option<String>,
    /// All of these must be among the request's tags.
    pub tags: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Constraints {
    /// Eligible kinds of stock point; empty means all.
    pub kinds: Vec<StockPointKind>,
    /// Only these stock points; empty means all.
    pub stock_points: Vec<Code>,
    /// Never these stock points.
    pub exclude: Vec<Code>,
    /// Stock points one line may be split across (1 = no split).
    pub max_splits: u32,
    pub allow_partial: bool,
    /// Whether lines may be promised against incoming stock when the request allows it.
    pub allow_backorder: bool,
    /// How far ahead incoming stock may be promised.
    pub promise_incoming_days: u32,
    /// Units a stock point must keep after this plan; it is skipped below that.
    pub min_remaining: Qty,
}

impl Default for Constraints {
    fn default() -> Constraints {
        Constraints {
            kinds: Vec::new(),
            stock_points: Vec::new(),
            exclude: Vec::new(),
            max_splits: SPLITS_MAX as u32,
            allow_partial: true,
            allow_backorder: true,
            promise_incoming_days: 30,
            min_remaining: Qty::ZERO,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matches: RuleMatch,
    pub strategy: Strategy,
    #[serde(default)]
    pub constraints: Constraints,
}

/// An ordered list of rules; the first that matches a line sources it. Replaced only as a whole,
/// under a new version, which every decision records.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RuleSet {
    pub version: u64,
    pub rules: Vec<Rule>,
}

impl Default for RuleSet {
    /// Before an operator says otherwise: closest stock point that serves the channel, splits
    /// allowed, priority rank breaking ties.
    fn default() -> RuleSet {
        RuleSet {
            version: 0,
            rules: vec![Rule {
                name: "default".into(),
                matches: RuleMatch::default(),
                strategy: Strategy::Closest,
                constraints: Constraints::default(),
            }],
        }
    }
}

/// A rule set that failed validation: the path of the bad field and what is wrong with it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

fn bad(path: String, message: impl Into<String>) -> RuleError {
    RuleError {
        path,
        message: message.into(),
    }
}

/// A rule with its stock points resolved, ready for the planner.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub index: usize,
    /// The rule's name, shared with every plan's explanation.
    pub name: std::sync::Arc<str>,
    pub rule: Rule,
    pub only: Vec<StockPointId>,
    pub exclude: Vec<StockPointId>,
}

#[derive(Clone, Debug)]
pub struct CompiledRuleSet {
    pub version: u64,
    pub rules: Vec<CompiledRule>,
    /// Each stock point's position as a unit vector (index = stock point id), so that
    /// `closest` ranks by one dot product instead of a haversine per candidate.
    pub unit_vectors: Vec<[f64; 3]>,
}

impl RuleSet {
    /// Checks every field against the limits and the network, naming the first bad field.
    pub fn compile(&self, network: &Network) -> Result<CompiledRuleSet, RuleError> {
        if self.rules.is_empty() {
            return Err(bad("rules".into(), "at least one rule is required"));
        }
        if self.rules.len() > RULES_MAX {
            return Err(bad("rules".into(), format!("at most {RULES_MAX} rules")));
        }
        let resolve = |path: String, codes: &[Code]| -> Result<Vec<StockPointId>, RuleError> {
            if codes.len() > RULE_LIST_LEN_MAX {
                return Err(bad(path, format!("at most {RULE_LIST_LEN_MAX} entries")));
            }
            codes
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    network
                        .iter()
                        .find(|sp| &sp.code == code)
                        .map(|sp| sp.id)
                        .ok_or_else(|| {
                            bad(
                                format!("{path}[{i}]"),
                                format!("unknown stock point {code}"),
                            )
                        })
                })
                .collect()
        };
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, rule) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("rules[{index}].{field}");
            if rule.name.is_empty() || rule.name.len() > RULE_TEXT_BYTES_MAX {
                return Err(bad(
                    at("name"),
                    format!("1 to {RULE_TEXT_BYTES_MAX} characters"),
                ));
            }
            if let Some(prefix) = &rule.matches.sku_prefix {
                if prefix.is_empty() || prefix.len() > RULE_TEXT_BYTES_MAX {
                    return Err(bad(
                        at("match.sku_prefix"),
                        format!("1 to {RULE_TEXT_BYTES_MAX} characters"),
                    ));
                }
            }
            if rule.matches.tags.len() > RULE_LIST_LEN_MAX {
                return Err(bad(
                    at("match.tags"),
                    format!("at most {RULE_LIST_LEN_MAX} tags"),
                ));
            }
            if let Some(i) = rule
                .matches
                .tags
                .iter()
                .position(|t| t.is_empty() || t.len() > RULE_TEXT_BYTES_MAX)
            {
                return Err(bad(
                    at(&format!("match.tags[{i}]")),
                    format!("1 to {RULE_TEXT_BYTES_MAX} characters"),
                ));
            }
            let c = &rule.constraints;
            if c.max_splits == 0 || c.max_splits as usize > SPLITS_MAX {
                return Err(bad(
                    at("constraints.max_splits"),
                    format!("1 to {SPLITS_MAX}"),
                ));
            }
            if c.promise_incoming_days > PROMISE_INCOMING_DAYS_MAX {
                return Err(bad(
                    at("constraints.promise_incoming_days"),
                    format!("at most {PROMISE_INCOMING_DAYS_MAX}"),
                ));
            }
            let only = resolve(at("constraints.stock_points"), &c.stock_points)?;
            let exclude = resolve(at("constraints.exclude"), &c.exclude)?;
            rules.push(CompiledRule {
                index,
                name: rule.name.as_str().into(),
                rule: rule.clone(),
                only,
                exclude,
            });
        }
        Ok(CompiledRuleSet {
            version: self.version,
            rules,
            unit_vectors: network.iter().map(|sp| sp.location.unit_vector()).collect(),
        })
    }
}

impl CompiledRule {
    pub fn matches(&self, channel: Channel, sku_code: &str, tags: &[String]) -> bool {
        let m = &self.rule.matches;
        (m.channels.is_empty() || m.channels.contains(&channel))
            && m.sku_prefix
                .as_deref()
                .is_none_or(|prefix| sku_code.starts_with(prefix))
            && m.tags.iter().all(|t| tags.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Capability, Location, StockPoint};

    fn network() -> Network {
        let mut network = Network::default();
        network.upsert(StockPoint {
            id: StockPointId(0),
            code: Code::parse("WH1").unwrap(),
            kind: StockPointKind::Warehouse,
            name: "one".into(),
            location: Location::default(),
            priority: 1,
            channels: vec![Channel::Web],
            capabilities: vec![Capability::Ship],
            cost_per_shipment: 500,
            tags: vec![],
        });
        network
    }

    fn rules(json: &str) -> RuleSet {
        RuleSet {
            version: 1,
            rules: serde_json::from_str(json).unwrap(),
        }
    }

    #[test]
    fn rules_parse_from_the_documented_json() {
        let set = rules(
            r#"[{"name":"flash","match":{"channels":["web"],"sku_prefix":"FS-"},"strategy":"fewest-shipments",
                 "constraints":{"kinds":["warehouse"],"stock_points":["WH1"],"max_splits":2}}]"#,
        );
        let compiled = set.compile(&network()).unwrap();
        assert_eq!(compiled.rules[0].only, vec![StockPointId(0)]);
        assert!(compiled.rules[0].matches(Channel::Web, "FS-1", &[]));
        assert!(!compiled.rules[0].matches(Channel::Web, "X-1", &[]));
        assert!(!compiled.rules[0].matches(Channel::B2b, "FS-1", &[]));
    }

    #[test]
    fn an_unknown_stock_point_is_reported_with_its_path() {
        let set = rules(
            r#"[{"name":"a","strategy":"priority"},{"name":"b","strategy":"priority","constraints":{"exclude":["WH9"]}}]"#,
        );
        let error = set.compile(&network()).unwrap_err();
        assert_eq!(error.path, "rules[1].constraints.exclude[0]");
    }

    #[test]
    fn zero_splits_and_empty_rule_sets_are_invalid() {
        let set = rules(r#"[{"name":"a","strategy":"balance","constraints":{"max_splits":0}}]"#);
        assert_eq!(
            set.compile(&network()).unwrap_err().path,
            "rules[0].constraints.max_splits"
        );
        assert_eq!(rules("[]").compile(&network()).unwrap_err().path, "rules");
    }

    #[test]
    fn unknown_fields_and_strategies_are_rejected() {
        assert!(serde_json::from_str::<Rule>(r#"{"name":"a","strategy":"cheapest"}"#).is_err());
        assert!(
            serde_json::from_str::<Rule>(r#"{"name":"a","strategy":"priority","x":1}"#).is_err()
        );
    }
}
