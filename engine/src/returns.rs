//! Customer returns: where returned units go, what happens to them, and the refund record.
//!
//! This module owns the [`ReturnPolicy`] (an ordered list of [`DispositionRule`]s that operators
//! configure as data), [`dispose`] (which turns returned lines into [`Disposition`]s: a stock
//! point and an [`Action`] per line), and the [`ReturnRecord`] with its [`ReturnEvent`]s and
//! [`apply`]. The order side of a return (how many units may still come back) is
//! [`crate::order::open_return`]; this module trusts that check.
//!
//! Rules are tried in order. The first rule that matches a line *and* whose target resolves to
//! a stock point that accepts returns wins; a rule whose target does not resolve (no drop-off,
//! a drop-off that takes no returns, nothing of that kind in the network) falls through to the
//! next. That is how the default "restock at the drop-off store, else at the nearest warehouse"
//! is two plain rules rather than a special case.

use serde::{Deserialize, Serialize};

use crate::ids::{Code, OrderId, Qty, ReturnId, SkuId, StockPointId};
use crate::limits::{LINE_QTY_MAX, REQUEST_LINES_MAX, RULES_MAX};
use crate::network::{Capability, Location, Network, StockPoint, StockPointKind};
use crate::order::OrderLine;
use crate::time::Timestamp;

/// The state a customer says (and the receiving stock point confirms) a unit is in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Resellable,
    Damaged,
    Defective,
}

impl Condition {
    pub const ALL: [Condition; 3] = [
        Condition::Resellable,
        Condition::Damaged,
        Condition::Defective,
    ];
}

/// What the receiving stock point does with the units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Back on the shelf: the units become on hand (and available) when received.
    Restock,
    Repair,
    Refurbish,
    Recycle,
}

/// Which stock point a rule sends units to.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Where the customer dropped the units off, if they did and it accepts returns.
    DropOff,
    /// The nearest stock point that accepts returns, of `kind` if given. Nearest to the drop-off
    /// (where the units physically are), else to the customer, else to the stock point that
    /// shipped the order.
    Nearest { kind: Option<StockPointKind> },
    /// Always this stock point.
    Fixed(StockPointId),
}

/// One rule: a match (condition, optionally a SKU code prefix and the kind of the drop-off
/// stock point) and what to do with matching units.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DispositionRule {
    pub condition: Condition,
    /// Matches SKU codes starting with this; `None` matches every SKU.
    #[serde(default)]
    pub sku_prefix: Option<String>,
    /// Matches only returns dropped off at a stock point of this kind; `None` matches all,
    /// mail returns included.
    #[serde(default)]
    pub drop_off_kind: Option<StockPointKind>,
    pub action: Action,
    pub target: Target,
}

impl DispositionRule {
    fn matches(&self, line: &ReturnLine, drop_off: Option<&StockPoint>) -> bool {
        self.condition == line.condition
            && match &self.sku_prefix {
                Some(prefix) => line.sku_code.as_str().starts_with(prefix.as_str()),
                None => true,
            }
            && match self.drop_off_kind {
                Some(kind) => drop_off.is_some_and(|d| d.kind == kind),
                None => true,
            }
    }

    /// A rule that matches every line of its condition and always has somewhere to go (as long
    /// as the network has a stock point that accepts returns).
    fn is_catch_all(&self) -> bool {
        self.sku_prefix.is_none() && self.drop_off_kind.is_none() && self.target != Target::DropOff
    }
}

/// The operator's return policy: rules tried in order (see the module doc).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReturnPolicy {
    pub rules: Vec<DispositionRule>,
}

impl Default for ReturnPolicy {
    /// Resellable units are restocked at the drop-off if it accepts returns, else at the
    /// nearest warehouse; damaged units are refurbished and defective ones repaired at the
    /// nearest warehouse. The last three rules are catch-alls, so the default always validates.
    fn default() -> Self {
        let nearest_warehouse = Target::Nearest {
            kind: Some(StockPointKind::Warehouse),
        };
        let rule = |condition, action, target| DispositionRule {
            condition,
            sku_prefix: None,
            drop_off_kind: None,
            action,
            target,
        };
        ReturnPolicy {
            rules: vec![
                rule(Condition::Resellable, Action::Restock, Target::DropOff),
                rule(
                    Condition::Resellable,
                    Action::Restock,
                    nearest_warehouse.clone(),
                ),
                rule(
                    Condition::Damaged,
                    Action::Refurbish,
                    nearest_warehouse.clone(),
                ),
                rule(Condition::Defective, Action::Repair, nearest_warehouse),
            ],
        }
    }
}

/// A policy field that cannot be used, by its path in the JSON body (`rules[2].target`).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct PolicyError {
    pub path: String,
    pub problem: PolicyProblem,
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PolicyProblem {
    #[error("must not be empty")]
    Empty,
    #[error("must have at most {RULES_MAX} rules")]
    TooManyRules,
    #[error("is not a valid SKU code prefix")]
    InvalidSkuPrefix,
    #[error("names stock point {0:?}, which does not exist")]
    UnknownStockPoint(StockPointId),
    #[error("names stock point {0:?}, which does not accept returns")]
    NoReturnsCapability(StockPointId),
    #[error("no rule catches every {0:?} return (a rule without sku_prefix or drop_off_kind, not targeting the drop-off)")]
    NoCatchAll(Condition),
}

impl ReturnPolicy {
    /// Checks the policy against the network, naming the first bad field.
    pub fn validate(&self, network: &Network) -> Result<(), PolicyError> {
        let err = |path: String, problem| Err(PolicyError { path, problem });
        if self.rules.is_empty() {
            return err("rules".into(), PolicyProblem::Empty);
        }
        if self.rules.len() > RULES_MAX {
            return err("rules".into(), PolicyProblem::TooManyRules);
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(prefix) = &rule.sku_prefix {
                // A prefix of a valid code is itself a valid code, so the same parser applies.
                if Code::parse(prefix).is_err() {
                    return err(
                        format!("rules[{i}].sku_prefix"),
                        PolicyProblem::InvalidSkuPrefix,
                    );
                }
            }
            if let Target::Fixed(id) = rule.target {
                match network.get(id) {
                    None => {
                        return err(
                            format!("rules[{i}].target"),
                            PolicyProblem::UnknownStockPoint(id),
                        )
                    }
                    Some(point) if !point.can(Capability::Returns) => {
                        return err(
                            format!("rules[{i}].target"),
                            PolicyProblem::NoReturnsCapability(id),
                        )
                    }
                    Some(_) => {}
                }
            }
        }
        // Without a catch-all, some returns would match nothing and be refused at the counter.
        for condition in Condition::ALL {
            if !self
                .rules
                .iter()
                .any(|r| r.condition == condition && r.is_catch_all())
            {
                return err("rules".into(), PolicyProblem::NoCatchAll(condition));
            }
        }
        Ok(())
    }
}

/// One returned line as the customer declares it. The SKU's code travels with its id because
/// rules match on code prefixes, and the engine's ids are interned integers.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReturnLine {
    pub sku: SkuId,
    pub sku_code: Code,
    pub qty: Qty,
    pub condition: Condition,
}

/// The order's view of returned lines, for [`crate::order::open_return`], which checks them
/// against what shipped before [`dispose`] routes them.
pub fn order_lines(lines: &[ReturnLine]) -> Vec<OrderLine> {
    lines
        .iter()
        .map(|l| OrderLine {
            sku: l.sku,
            qty: l.qty,
        })
        .collect()
}

/// Where one returned line goes and what happens to it there.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Disposition {
    pub sku: SkuId,
    pub qty: Qty,
    pub stock_point: StockPointId,
    pub action: Action,
}

/// Why a return was refused.
#[derive(Clone, PartialEq, Debug, thiserror::Error)]
pub enum ReturnError {
    #[error("a return needs at least one line")]
    NoLines,
    #[error("a return has at most {REQUEST_LINES_MAX} lines")]
    TooManyLines,
    #[error("quantity {qty} for sku {sku:?} is outside 1..={LINE_QTY_MAX}")]
    QtyOutOfRange { sku: SkuId, qty: Qty },
    #[error("drop-off stock point {0:?} does not exist")]
    UnknownDropOff(StockPointId),
    #[error("origin stock point {0:?} does not exist")]
    UnknownOrigin(StockPointId),
    #[error("customer location {0:?} is not on the globe")]
    InvalidLocation(Location),
    #[error("no rule sends {condition:?} units of sku {sku:?} anywhere")]
    NoDisposition { sku: SkuId, condition: Condition },
    #[error("return {0} is already received")]
    AlreadyReceived(ReturnId),
    #[error("return {0} is not received yet; refunds wait for the goods")]
    NotReceived(ReturnId),
    #[error("return {0} is already refunded")]
    AlreadyRefunded(ReturnId),
}

/// Routes each returned line by the policy (see the module doc for the rule semantics).
/// `drop_off` is where the customer handed the units in (`None` for a mail return),
/// `customer_location` where the customer is, and `origin` the stock point that shipped the
/// order, the fallback reference point for "nearest". Deterministic: equal distances are broken
/// by stock point priority, then id. One disposition per line, in line order.
pub fn dispose(
    policy: &ReturnPolicy,
    network: &Network,
    lines: &[ReturnLine],
    drop_off: Option<StockPointId>,
    customer_location: Option<Location>,
    origin: StockPointId,
) -> Result<Vec<Disposition>, ReturnError> {
    if lines.is_empty() {
        return Err(ReturnError::NoLines);
    }
    if lines.len() > REQUEST_LINES_MAX {
        return Err(ReturnError::TooManyLines);
    }
    if let Some(line) = lines
        .iter()
        .find(|l| l.qty.is_zero() || l.qty.0 > LINE_QTY_MAX)
    {
        return Err(ReturnError::QtyOutOfRange {
            sku: line.sku,
            qty: line.qty,
        });
    }
    let drop_off = match drop_off {
        Some(id) => Some(network.get(id).ok_or(ReturnError::UnknownDropOff(id))?),
        None => None,
    };
    let origin = network
        .get(origin)
        .ok_or(ReturnError::UnknownOrigin(origin))?;
    if let Some(location) = customer_location.filter(|l| !l.is_valid()) {
        return Err(ReturnError::InvalidLocation(location));
    }
    // The units travel from where they are: the drop-off, else the customer's door.
    let from = drop_off
        .map(|d| d.location)
        .or(customer_location)
        .unwrap_or(origin.location);
    lines
        .iter()
        .map(|line| {
            policy
                .rules
                .iter()
                .filter(|rule| rule.matches(line, drop_off))
                .find_map(|rule| {
                    let point = resolve(&rule.target, network, drop_off, &from)?;
                    Some(Disposition {
                        sku: line.sku,
                        qty: line.qty,
                        stock_point: point.id,
                        action: rule.action,
                    })
                })
                .ok_or(ReturnError::NoDisposition {
                    sku: line.sku,
                    condition: line.condition,
                })
        })
        .collect()
}

/// The stock point a target names, if it exists and accepts returns.
fn resolve<'n>(
    target: &Target,
    network: &'n Network,
    drop_off: Option<&'n StockPoint>,
    from: &Location,
) -> Option<&'n StockPoint> {
    let accepts = |p: &&StockPoint| p.can(Capability::Returns);
    match target {
        Target::DropOff => drop_off.filter(accepts),
        Target::Fixed(id) => network.get(*id).filter(accepts),
        Target::Nearest { kind } => network
            .iter()
            .filter(accepts)
            .filter(|p| kind.is_none() || *kind == Some(p.kind))
            .min_by(|a, b| {
                a.location
                    .distance_km(from)
                    .total_cmp(&b.location.distance_km(from))
                    .then(a.priority.cmp(&b.priority))
                    .then(a.id.cmp(&b.id))
            }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    Pending,
    Issued,
}

/// The refund owed for a return. The engine counts units; prices live with the storefront.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Refund {
    pub status: RefundStatus,
    pub units: Qty,
}

/// A return, from opening to refund. Built by [`ReturnRecord::from_opened`], changed only by
/// [`apply`], live and on replay alike.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReturnRecord {
    pub id: ReturnId,
    pub order: OrderId,
    pub lines: Vec<ReturnLine>,
    pub dispositions: Vec<Disposition>,
    pub refund: Refund,
    pub opened_at: Timestamp,
    /// When the disposition stock points received the units; `None` until then.
    pub received_at: Option<Timestamp>,
    /// Stock points whose restock of this return is done (each logged with its restock), when
    /// a return restocks at more than one: a receipt retried after a crash restocks only the
    /// others.
    #[serde(default)]
    pub restocked_at: Vec<StockPointId>,
}

impl ReturnRecord {
    pub fn received(&self) -> bool {
        self.received_at.is_some()
    }

    /// Builds a record from its `Opened` event; `None` for any other event.
    pub fn from_opened(event: &ReturnEvent, at: Timestamp) -> Option<ReturnRecord> {
        let ReturnEvent::Opened {
            id,
            order,
            lines,
            dispositions,
        } = event
        else {
            return None;
        };
        Some(ReturnRecord {
            id: *id,
            order: *order,
            lines: lines.clone(),
            dispositions: dispositions.clone(),
            refund: Refund {
                status: RefundStatus::Pending,
                units: lines.iter().map(|l| l.qty).sum(),
            },
            opened_at: at,
            received_at: None,
            restocked_at: Vec::new(),
        })
    }
}

/// Every change to a return.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnEvent {
    Opened {
        id: ReturnId,
        order: OrderId,
        lines: Vec<ReturnLine>,
        dispositions: Vec<Disposition>,
    },
    /// The units to restock at `stock_point` are back on its shelves; logged in one record
    /// with that stock point's restock.
    Restocked {
        stock_point: StockPointId,
    },
    /// The units arrived at their disposition stock points.
    Received,
    RefundIssued,
}

/// Opens a return with the dispositions [`dispose`] chose. The order must already have
/// accepted the quantities ([`crate::order::open_return`]).
pub fn open(
    id: ReturnId,
    order: OrderId,
    lines: Vec<ReturnLine>,
    dispositions: Vec<Disposition>,
) -> ReturnEvent {
    debug_assert_eq!(lines.len(), dispositions.len(), "one disposition per line");
    ReturnEvent::Opened {
        id,
        order,
        lines,
        dispositions,
    }
}

/// Units to put back on hand at a stock point after a return is received.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Restock {
    pub stock_point: StockPointId,
    pub sku: SkuId,
    pub qty: Qty,
}

/// Records that the units arrived, and says which to restock: only `Restock` dispositions at
/// stock points not yet [`ReturnEvent::Restocked`], one entry per (stock point, SKU), sorted by
/// both. Receiving twice is refused.
pub fn receive(record: &ReturnRecord) -> Result<(ReturnEvent, Vec<Restock>), ReturnError> {
    if record.received() {
        return Err(ReturnError::AlreadyReceived(record.id));
    }
    let mut restocks: Vec<Restock> = Vec::new();
    for d in record
        .dispositions
        .iter()
        .filter(|d| d.action == Action::Restock && !record.restocked_at.contains(&d.stock_point))
    {
        match restocks
            .iter_mut()
            .find(|r| r.stock_point == d.stock_point && r.sku == d.sku)
        {
            Some(r) => r.qty += d.qty,
            None => restocks.push(Restock {
                stock_point: d.stock_point,
                sku: d.sku,
                qty: d.qty,
            }),
        }
    }
    restocks.sort_by_key(|r| (r.stock_point, r.sku));
    Ok((ReturnEvent::Received, restocks))
}

/// Issues the refund once the units are received; refunding twice is refused.
pub fn issue_refund(record: &ReturnRecord) -> Result<ReturnEvent, ReturnError> {
    if record.refund.status == RefundStatus::Issued {
        return Err(ReturnError::AlreadyRefunded(record.id));
    }
    if !record.received() {
        return Err(ReturnError::NotReceived(record.id));
    }
    Ok(ReturnEvent::RefundIssued)
}

/// Applies one event (live and on replay). Events come from the decision functions, so one that
/// does not fit is a bug and panics.
pub fn apply(record: &mut ReturnRecord, event: &ReturnEvent, at: Timestamp) {
    match event {
        ReturnEvent::Opened { .. } => panic!("return {} is already open", record.id),
        ReturnEvent::Restocked { stock_point } => {
            assert!(
                !record.received(),
                "return {} restocked after receipt",
                record.id
            );
            assert!(
                !record.restocked_at.contains(stock_point),
                "return {} restocked twice at {stock_point:?}",
                record.id
            );
            record.restocked_at.push(*stock_point);
        }
        ReturnEvent::Received => {
            assert!(!record.received(), "return {} received twice", record.id);
            record.received_at = Some(at);
        }
        ReturnEvent::RefundIssued => {
            assert!(
                record.received(),
                "return {} refunded before receipt",
                record.id
            );
            assert_eq!(record.refund.status, RefundStatus::Pending);
            record.refund.status = RefundStatus::Issued;
        }
    }
    debug_assert_eq!(
        record.refund.units,
        record.lines.iter().map(|l| l.qty).sum::<Qty>()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Channel;

    const WH_PARIS: StockPointId = StockPointId(0);
    const WH_LONDON: StockPointId = StockPointId(1);
    const STORE_PARIS: StockPointId = StockPointId(2);
    const STORE_LYON: StockPointId = StockPointId(3);
    const WH_BERLIN: StockPointId = StockPointId(4);

    const PARIS: Location = Location {
        lat: 48.8566,
        lon: 2.3522,
    };
    const LONDON: Location = Location {
        lat: 51.5074,
        lon: -0.1278,
    };
    const LYON: Location = Location {
        lat: 45.764,
        lon: 4.8357,
    };
    const BERLIN: Location = Location {
        lat: 52.52,
        lon: 13.405,
    };

    fn point(id: StockPointId, kind: StockPointKind, at: Location, returns: bool) -> StockPoint {
        let mut capabilities = vec![Capability::Ship];
        if returns {
            capabilities.push(Capability::Returns);
        }
        StockPoint {
            id,
            code: Code::parse(&format!("SP{}", id.0)).unwrap(),
            kind,
            name: format!("stock point {}", id.0),
            location: at,
            priority: 1,
            channels: vec![Channel::Web],
            capabilities,
            cost_per_shipment: 500,
            tags: Vec::new(),
        }
    }

    /// Warehouses in Paris and London take returns, Berlin's does not; the Paris store takes
    /// returns, the Lyon store does not.
    fn network() -> Network {
        let mut network = Network::default();
        network.upsert(point(WH_PARIS, StockPointKind::Warehouse, PARIS, true));
        network.upsert(point(WH_LONDON, StockPointKind::Warehouse, LONDON, true));
        network.upsert(point(STORE_PARIS, StockPointKind::Store, PARIS, true));
        network.upsert(point(STORE_LYON, StockPointKind::Store, LYON, false));
        network.upsert(point(WH_BERLIN, StockPointKind::Warehouse, BERLIN, false));
        network
    }

    fn line(code: &str, qty: u64, condition: Condition) -> ReturnLine {
        ReturnLine {
            sku: SkuId(code.len() as u32),
            sku_code: Code::parse(code).unwrap(),
            qty: Qty(qty),
            condition,
        }
    }

    /// Disposes one line of `condition` and returns where it goes and what happens there.
    fn check(
        policy: &ReturnPolicy,
        code: &str,
        condition: Condition,
        drop_off: Option<StockPointId>,
        customer: Option<Location>,
        origin: StockPointId,
    ) -> (StockPointId, Action) {
        let lines = [line(code, 1, condition)];
        let dispositions = dispose(policy, &network(), &lines, drop_off, customer, origin).unwrap();
        assert_eq!(dispositions.len(), 1);
        (dispositions[0].stock_point, dispositions[0].action)
    }

    fn default_check(
        condition: Condition,
        drop_off: Option<StockPointId>,
        customer: Option<Location>,
    ) -> (StockPointId, Action) {
        check(
            &ReturnPolicy::default(),
            "A",
            condition,
            drop_off,
            customer,
            WH_LONDON,
        )
    }

    fn rule(condition: Condition, action: Action, target: Target) -> DispositionRule {
        DispositionRule {
            condition,
            sku_prefix: None,
            drop_off_kind: None,
            action,
            target,
        }
    }

    #[test]
    fn resellable_units_dropped_at_a_store_that_takes_returns_are_restocked_there() {
        assert_eq!(
            default_check(Condition::Resellable, Some(STORE_PARIS), Some(LONDON)),
            (STORE_PARIS, Action::Restock)
        );
    }

    #[test]
    fn resellable_units_dropped_where_returns_are_not_taken_go_to_the_nearest_warehouse() {
        // Nearest to Lyon, where the units are, not to the customer in London.
        assert_eq!(
            default_check(Condition::Resellable, Some(STORE_LYON), Some(LONDON)),
            (WH_PARIS, Action::Restock)
        );
    }

    #[test]
    fn mailed_returns_go_to_the_warehouse_nearest_the_customer() {
        assert_eq!(
            default_check(Condition::Resellable, None, Some(PARIS)),
            (WH_PARIS, Action::Restock)
        );
        assert_eq!(
            default_check(Condition::Resellable, None, Some(LONDON)),
            (WH_LONDON, Action::Restock)
        );
    }

    #[test]
    fn mailed_returns_without_a_customer_location_go_nearest_the_shipping_stock_point() {
        let policy = ReturnPolicy::default();
        let near_origin = |origin| check(&policy, "A", Condition::Resellable, None, None, origin).0;
        assert_eq!(near_origin(WH_LONDON), WH_LONDON);
        assert_eq!(near_origin(STORE_LYON), WH_PARIS);
    }

    #[test]
    fn damaged_units_are_refurbished_and_defective_ones_repaired_at_the_nearest_warehouse() {
        // Dropped at the Paris store: the store takes returns, but only resellable units stay.
        assert_eq!(
            default_check(Condition::Damaged, Some(STORE_PARIS), None),
            (WH_PARIS, Action::Refurbish)
        );
        assert_eq!(
            default_check(Condition::Defective, None, Some(LONDON)),
            (WH_LONDON, Action::Repair)
        );
    }

    #[test]
    fn a_sku_prefix_rule_applies_to_matching_skus_only() {
        let mut policy = ReturnPolicy::default();
        policy.rules.insert(
            0,
            DispositionRule {
                sku_prefix: Some("BATT-".into()),
                ..rule(
                    Condition::Defective,
                    Action::Recycle,
                    Target::Fixed(WH_LONDON),
                )
            },
        );
        let go = |code| {
            check(
                &policy,
                code,
                Condition::Defective,
                None,
                Some(PARIS),
                WH_PARIS,
            )
        };
        assert_eq!(go("BATT-9V"), (WH_LONDON, Action::Recycle));
        assert_eq!(go("BAT-9V"), (WH_PARIS, Action::Repair));
    }

    #[test]
    fn a_drop_off_kind_rule_applies_only_to_returns_dropped_at_that_kind() {
        let mut policy = ReturnPolicy::default();
        policy.rules.insert(
            0,
            DispositionRule {
                drop_off_kind: Some(StockPointKind::Store),
                ..rule(Condition::Damaged, Action::Recycle, Target::DropOff)
            },
        );
        let go = |drop_off| {
            check(
                &policy,
                "A",
                Condition::Damaged,
                drop_off,
                Some(LONDON),
                WH_LONDON,
            )
        };
        assert_eq!(go(Some(STORE_PARIS)), (STORE_PARIS, Action::Recycle));
        assert_eq!(
            go(Some(WH_PARIS)),
            (WH_PARIS, Action::Refurbish),
            "a warehouse, not a store"
        );
        assert_eq!(go(None), (WH_LONDON, Action::Refurbish), "mailed");
        assert_eq!(
            go(Some(STORE_LYON)),
            (WH_PARIS, Action::Refurbish),
            "store takes no returns"
        );
    }

    #[test]
    fn a_fixed_target_that_stopped_taking_returns_falls_through_to_the_next_rule() {
        let mut policy = ReturnPolicy::default();
        policy.rules.insert(
            0,
            rule(
                Condition::Damaged,
                Action::Recycle,
                Target::Fixed(WH_BERLIN),
            ),
        );
        let go = check(
            &policy,
            "A",
            Condition::Damaged,
            None,
            Some(BERLIN),
            WH_PARIS,
        );
        assert_eq!(go, (WH_PARIS, Action::Refurbish), "Berlin takes no returns");
    }

    #[test]
    fn a_nearest_target_without_a_kind_weighs_stores_and_warehouses_alike() {
        let policy = ReturnPolicy {
            rules: vec![rule(
                Condition::Resellable,
                Action::Restock,
                Target::Nearest { kind: None },
            )],
        };
        let go = check(
            &policy,
            "A",
            Condition::Resellable,
            Some(STORE_LYON),
            None,
            WH_LONDON,
        );
        // The Paris store and warehouse are equally near Lyon, with equal priority: lower id wins.
        assert_eq!(go, (WH_PARIS, Action::Restock));
    }

    #[test]
    fn equal_distances_are_broken_by_priority_then_by_id() {
        let mut network = network();
        let mut twin = point(StockPointId(5), StockPointKind::Warehouse, PARIS, true);
        twin.priority = 0;
        network.upsert(twin);
        let lines = [line("A", 1, Condition::Damaged)];
        let policy = ReturnPolicy::default();
        let nearest = |network: &Network| {
            dispose(&policy, network, &lines, None, Some(PARIS), WH_PARIS).unwrap()[0].stock_point
        };
        assert_eq!(
            nearest(&network),
            StockPointId(5),
            "lower priority value wins"
        );
        let mut twin = network.get(StockPointId(5)).unwrap().clone();
        twin.priority = 1;
        network.upsert(twin);
        assert_eq!(nearest(&network), WH_PARIS, "then the lower id");
    }

    #[test]
    fn every_line_gets_its_own_disposition_in_line_order() {
        let lines = [
            line("A", 2, Condition::Resellable),
            line("A", 1, Condition::Defective),
        ];
        let dispositions = dispose(
            &ReturnPolicy::default(),
            &network(),
            &lines,
            Some(STORE_PARIS),
            None,
            WH_PARIS,
        )
        .unwrap();
        assert_eq!(
            dispositions,
            vec![
                Disposition {
                    sku: lines[0].sku,
                    qty: Qty(2),
                    stock_point: STORE_PARIS,
                    action: Action::Restock
                },
                Disposition {
                    sku: lines[1].sku,
                    qty: Qty(1),
                    stock_point: WH_PARIS,
                    action: Action::Repair
                },
            ]
        );
    }

    #[test]
    fn a_return_with_nowhere_to_go_is_refused() {
        let mut network = Network::default();
        network.upsert(point(
            StockPointId(0),
            StockPointKind::Warehouse,
            PARIS,
            false,
        ));
        let lines = [line("A", 1, Condition::Damaged)];
        assert_eq!(
            dispose(
                &ReturnPolicy::default(),
                &network,
                &lines,
                None,
                None,
                StockPointId(0)
            ),
            Err(ReturnError::NoDisposition {
                sku: lines[0].sku,
                condition: Condition::Damaged
            })
        );
    }

    #[test]
    fn malformed_return_requests_are_refused() {
        let policy = ReturnPolicy::default();
        let network = network();
        let one = [line("A", 1, Condition::Resellable)];
        let go = |lines: &[ReturnLine], drop_off, customer, origin| {
            dispose(&policy, &network, lines, drop_off, customer, origin)
        };
        assert_eq!(go(&[], None, None, WH_PARIS), Err(ReturnError::NoLines));
        assert_eq!(
            go(&[line("A", 0, Condition::Resellable)], None, None, WH_PARIS),
            Err(ReturnError::QtyOutOfRange {
                sku: one[0].sku,
                qty: Qty(0)
            })
        );
        let too_many = vec![one[0].clone(); REQUEST_LINES_MAX + 1];
        assert_eq!(
            go(&too_many, None, None, WH_PARIS),
            Err(ReturnError::TooManyLines)
        );
        assert_eq!(
            go(&one, Some(StockPointId(99)), None, WH_PARIS),
            Err(ReturnError::UnknownDropOff(StockPointId(99)))
        );
        assert_eq!(
            go(&one, None, None, StockPointId(99)),
            Err(ReturnError::UnknownOrigin(StockPointId(99)))
        );
        let nowhere = Location {
            lat: 95.0,
            lon: 0.0,
        };
        assert_eq!(
            go(&one, None, Some(nowhere), WH_PARIS),
            Err(ReturnError::InvalidLocation(nowhere))
        );
    }

    #[test]
    fn the_default_policy_is_valid_on_any_network() {
        assert_eq!(ReturnPolicy::default().validate(&network()), Ok(()));
        assert_eq!(
            ReturnPolicy::default().validate(&Network::default()),
            Ok(())
        );
    }

    #[test]
    fn validation_names_the_path_of_the_bad_field() {
        let network = network();
        let problem = |policy: &ReturnPolicy| {
            let e = policy.validate(&network).unwrap_err();
            (e.path, e.problem)
        };
        let with = |index: usize, extra: DispositionRule| {
            let mut policy = ReturnPolicy::default();
            policy.rules.insert(index, extra);
            policy
        };
        assert_eq!(
            problem(&ReturnPolicy { rules: vec![] }),
            ("rules".into(), PolicyProblem::Empty)
        );
        let bad_prefix = DispositionRule {
            sku_prefix: Some("no spaces".into()),
            ..rule(Condition::Damaged, Action::Recycle, Target::DropOff)
        };
        assert_eq!(
            problem(&with(1, bad_prefix)),
            (
                "rules[1].sku_prefix".into(),
                PolicyProblem::InvalidSkuPrefix
            )
        );
        let unknown = rule(
            Condition::Damaged,
            Action::Recycle,
            Target::Fixed(StockPointId(99)),
        );
        assert_eq!(
            problem(&with(2, unknown)),
            (
                "rules[2].target".into(),
                PolicyProblem::UnknownStockPoint(StockPointId(99))
            )
        );
        let refuses = rule(
            Condition::Damaged,
            Action::Recycle,
            Target::Fixed(WH_BERLIN),
        );
        assert_eq!(
            problem(&with(0, refuses)),
            (
                "rules[0].target".into(),
                PolicyProblem::NoReturnsCapability(WH_BERLIN)
            )
        );
        let mut no_catch_all = ReturnPolicy::default();
        no_catch_all
            .rules
            .retain(|r| r.condition != Condition::Resellable || r.target == Target::DropOff);
        assert_eq!(
            problem(&no_catch_all),
            (
                "rules".into(),
                PolicyProblem::NoCatchAll(Condition::Resellable)
            )
        );
        let mut too_many = ReturnPolicy::default();
        too_many.rules = vec![too_many.rules[1].clone(); RULES_MAX + 1];
        assert_eq!(
            problem(&too_many),
            ("rules".into(), PolicyProblem::TooManyRules)
        );
        let e = with(
            2,
            rule(
                Condition::Damaged,
                Action::Recycle,
                Target::Fixed(StockPointId(99)),
            ),
        )
        .validate(&network)
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules[2].target: names stock point StockPointId(99), which does not exist"
        );
    }

    #[test]
    fn policies_read_from_json_in_the_documented_shape() {
        let json = r#"{"rules":[
            {"condition":"defective","sku_prefix":"BATT-","action":"recycle","target":{"fixed":1}},
            {"condition":"resellable","drop_off_kind":"store","action":"restock","target":"drop_off"},
            {"condition":"damaged","action":"refurbish","target":{"nearest":{"kind":"warehouse"}}}
        ]}"#;
        let policy: ReturnPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(policy.rules[0].target, Target::Fixed(WH_LONDON));
        assert_eq!(policy.rules[1].drop_off_kind, Some(StockPointKind::Store));
        let back: ReturnPolicy =
            serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
        assert_eq!(back, policy);
        assert_eq!(
            serde_json::to_string(&Condition::Resellable).unwrap(),
            "\"resellable\""
        );
        assert_eq!(
            serde_json::to_string(&RefundStatus::Pending).unwrap(),
            "\"pending\""
        );
    }

    fn opened() -> ReturnRecord {
        let lines = vec![
            line("A", 2, Condition::Resellable),
            line("BB", 1, Condition::Damaged),
            line("A", 1, Condition::Resellable),
        ];
        let dispositions = dispose(
            &ReturnPolicy::default(),
            &network(),
            &lines,
            Some(STORE_PARIS),
            None,
            WH_PARIS,
        )
        .unwrap();
        let event = open(ReturnId(1), OrderId(9), lines, dispositions);
        ReturnRecord::from_opened(&event, Timestamp(10)).unwrap()
    }

    #[test]
    fn the_order_sees_returned_lines_as_sku_and_quantity() {
        let lines = [line("A", 2, Condition::Damaged)];
        assert_eq!(
            order_lines(&lines),
            vec![OrderLine {
                sku: SkuId(1),
                qty: Qty(2)
            }]
        );
    }

    #[test]
    fn an_opened_return_owes_a_pending_refund_for_every_unit() {
        let record = opened();
        assert_eq!(
            record.refund,
            Refund {
                status: RefundStatus::Pending,
                units: Qty(4)
            }
        );
        assert!(!record.received());
        assert_eq!(
            ReturnRecord::from_opened(&ReturnEvent::Received, Timestamp(1)),
            None
        );
    }

    #[test]
    fn receiving_restocks_only_restock_dispositions_once_per_stock_point_and_sku() {
        let mut record = opened();
        let (event, restocks) = receive(&record).unwrap();
        assert_eq!(
            restocks,
            vec![Restock {
                stock_point: STORE_PARIS,
                sku: SkuId(1),
                qty: Qty(3)
            }]
        );
        apply(&mut record, &event, Timestamp(20));
        assert_eq!(record.received_at, Some(Timestamp(20)));
        assert_eq!(
            receive(&record).map(|_| ()),
            Err(ReturnError::AlreadyReceived(ReturnId(1)))
        );
    }

    #[test]
    fn a_receipt_after_one_stock_point_restocked_asks_only_for_the_others() {
        let mut record = opened();
        let restock = record
            .dispositions
            .iter()
            .find(|d| d.action == Action::Restock)
            .cloned()
            .unwrap();
        record.dispositions.push(Disposition {
            stock_point: WH_PARIS,
            ..restock
        });
        let (_, restocks) = receive(&record).unwrap();
        assert_eq!(restocks.len(), 2);
        apply(
            &mut record,
            &ReturnEvent::Restocked {
                stock_point: STORE_PARIS,
            },
            Timestamp(20),
        );
        let (_, restocks) = receive(&record).unwrap();
        assert_eq!(
            restocks.iter().map(|r| r.stock_point).collect::<Vec<_>>(),
            vec![WH_PARIS]
        );
    }

    #[test]
    fn the_refund_is_issued_once_and_only_after_receipt() {
        let mut record = opened();
        assert_eq!(
            issue_refund(&record),
            Err(ReturnError::NotReceived(ReturnId(1)))
        );
        let (event, _) = receive(&record).unwrap();
        apply(&mut record, &event, Timestamp(20));
        let refund = issue_refund(&record).unwrap();
        apply(&mut record, &refund, Timestamp(30));
        assert_eq!(record.refund.status, RefundStatus::Issued);
        assert_eq!(
            issue_refund(&record),
            Err(ReturnError::AlreadyRefunded(ReturnId(1)))
        );
    }
}
