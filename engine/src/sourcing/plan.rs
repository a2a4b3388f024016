//! The planner: a request, the rules and a view of availability in; a [`SourcingPlan`] (which
//! stock point serves which units of which line, and why) or a precise shortage report out.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::{smallvec, SmallVec};

use crate::ids::{Qty, SkuId, StockPointId};
use crate::inventory::{Source, StockPointInventory};
use crate::network::{Capability, Channel, Location, Network, StockPoint, StockPointKind};
use crate::sourcing::rules::{CompiledRule, CompiledRuleSet, Strategy};
use crate::time::Timestamp;

/// Candidates recorded per rule group in a plan's explanation; the rest are counted only.
pub const CANDIDATES_EXPLAINED_MAX: usize = 8;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Candidates kept on the stack in a plan's scratch lists (the candidates, a line's offers,
/// the order, the picks): in larger networks they spill to the heap. Planning is most of a
/// checkout's cost when requests differ (the plan memo cannot help), and a dozen small
/// allocations per plan were a fifth of it (a one-line plan 1.35 → 0.97 µs in the engine bench,
/// whose 50 stock points spill the candidate lists even so).
const CANDIDATES_INLINE: usize = 16;

/// Stock points whose candidate slot is kept on the stack.
const SLOTS_INLINE: usize = 64;

/// A request's lines grouped by the first rule that matches each, in rule order.
type RuleGroups<'r> = SmallVec<[(&'r CompiledRule, SmallVec<[usize; 4]>); 2]>;

/// Scratch lists indexed by candidate.
type PerCandidate<T> = SmallVec<[T; CANDIDATES_INLINE]>;

/// What one stock point has of one SKU, as the planner sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StockAt {
    pub stock_point: StockPointId,
    /// Units a hold may take from the shelf now.
    pub available: Qty,
    /// Unpromised incoming units arriving by the horizon asked for.
    pub incoming: Qty,
}

/// Where the planner reads availability. Advisory: a stock point re-checks when it holds.
pub trait AvailabilityView {
    /// Appends an entry for every stock point that has a position for `sku`.
    fn stock_of(&self, sku: SkuId, incoming_horizon: Timestamp, out: &mut Vec<StockAt>);
}

impl AvailabilityView for [StockPointInventory] {
    fn stock_of(&self, sku: SkuId, incoming_horizon: Timestamp, out: &mut Vec<StockAt>) {
        for inventory in self {
            if let Some(p) = inventory.position(sku) {
                out.push(StockAt {
                    stock_point: inventory.id,
                    available: p.available(),
                    incoming: p.incoming_available(incoming_horizon),
                });
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct PlanLine<'a> {
    pub sku: SkuId,
    /// The SKU's code, for rules that match on a prefix.
    pub code: &'a str,
    pub qty: Qty,
}

/// Options that come with a request; rules may narrow them, never widen them.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    pub allow_split: bool,
    pub allow_partial: bool,
    pub allow_backorder: bool,
}

#[derive(Clone, Debug)]
pub struct PlanRequest<'a> {
    pub channel: Channel,
    pub lines: &'a [PlanLine<'a>],
    pub ship_to: Option<Location>,
    /// Buy online, pick up here: only this store may serve the request.
    pub pickup_at: Option<StockPointId>,
    pub tags: &'a [String],
    /// Stock points that must not serve this request (e.g. those that already came up short).
    pub exclude: &'a [StockPointId],
    pub options: PlanOptions,
    pub now: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PlannedAllocation {
    /// Index into the request's lines.
    pub line: usize,
    pub sku: SkuId,
    pub stock_point: StockPointId,
    pub qty: Qty,
    pub source: Source,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct CandidateScore {
    pub stock_point: StockPointId,
    /// The strategy's measure: km, cents, rank or units, depending on the strategy.
    pub score: f64,
    pub available: Qty,
    pub chosen: bool,
}

/// How candidates with equal scores were ordered.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// Lower priority rank first, then lower stock point id.
    PriorityThenId,
}

/// Why one group of lines was sourced the way it was.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct GroupExplanation {
    pub rule_index: usize,
    /// Shared with the compiled rule: cloning a plan does not copy the name.
    pub rule_name: Arc<str>,
    pub strategy: Strategy,
    pub lines: Vec<usize>,
    /// Best first, at most [`CANDIDATES_EXPLAINED_MAX`].
    pub candidates: Vec<CandidateScore>,
    pub candidates_total: usize,
    /// How equal scores were ordered, when they were.
    pub tie_break: Option<TieBreak>,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Explanation {
    pub rule_set_version: u64,
    pub groups: Vec<GroupExplanation>,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct SourcingPlan {
    pub allocations: Vec<PlannedAllocation>,
    /// Shared by the reservations made from this plan (a flash sale's identical checkouts are
    /// planned once), so that each does not carry a copy of its own.
    pub explanation: Arc<Explanation>,
}

impl SourcingPlan {
    /// Units planned for a line.
    pub fn planned(&self, line: usize) -> Qty {
        self.allocations
            .iter()
            .filter(|a| a.line == line)
            .map(|a| a.qty)
            .sum()
    }

    /// The stock points in the plan, each once, in first-use order.
    pub fn stock_points(&self) -> Vec<StockPointId> {
        let mut out: Vec<StockPointId> = Vec::new();
        for a in &self.allocations {
            if !out.contains(&a.stock_point) {
                out.push(a.stock_point);
            }
        }
        out
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: SkuId,
    pub requested: Qty,
    /// What the eligible stock points could offer for it.
    pub available: Qty,
}

/// The planner's answer; a shortage is a value.
#[derive(Clone, PartialEq, Debug)]
pub enum PlanOutcome {
    Planned(SourcingPlan),
    Insufficient {
        shortages: Vec<Shortage>,
        explanation: Explanation,
    },
}

/// A request the planner cannot work with at all.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PlanError {
    #[error("stock point {0:?} does not exist")]
    UnknownStockPoint(StockPointId),
    #[error("stock point {0:?} is not a store that offers pickup")]
    NotAPickupPoint(StockPointId),
    #[error("no rule matches line {0}")]
    NoRuleMatches(usize),
}

/// Plans a request. Deterministic: the same inputs give the same plan, ties broken by priority
/// rank and then by stock point id.
pub fn plan(
    rules: &CompiledRuleSet,
    network: &Network,
    view: &(impl AvailabilityView + ?Sized),
    request: &PlanRequest<'_>,
) -> Result<PlanOutcome, PlanError> {
    if let Some(store) = request.pickup_at {
        let sp = network
            .get(store)
            .ok_or(PlanError::UnknownStockPoint(store))?;
        if sp.kind != StockPointKind::Store || !sp.can(Capability::Pickup) {
            return Err(PlanError::NotAPickupPoint(store));
        }
    }
    // Group lines by the first rule that matches each, keeping rule order.
    let mut groups: RuleGroups<'_> = SmallVec::new();
    for (i, line) in request.lines.iter().enumerate() {
        let rule = rules
            .rules
            .iter()
            .find(|r| r.matches(request.channel, line.code, request.tags))
            .ok_or(PlanError::NoRuleMatches(i))?;
        match groups.iter_mut().find(|(r, _)| r.index == rule.index) {
            Some((_, lines)) => lines.push(i),
            None => groups.push((rule, smallvec![i])),
        }
    }
    groups.sort_by_key(|(rule, _)| rule.index);
    let mut ledger = Ledger::default();
    let mut allocations = Vec::new();
    let mut shortages = Vec::new();
    let mut explanation = Explanation {
        rule_set_version: rules.version,
        groups: Vec::with_capacity(groups.len()),
    };
    for (rule, lines) in &groups {
        let outcome = plan_group(
            rule,
            network,
            view,
            request,
            lines,
            &mut ledger,
            &rules.unit_vectors,
        );
        // Most requests are one group: take its list rather than copy it into a new one.
        if allocations.is_empty() {
            allocations = outcome.allocations;
        } else {
            allocations.extend(outcome.allocations);
        }
        shortages.extend(outcome.shortages);
        explanation.groups.push(outcome.explanation);
    }
    if !shortages.is_empty() || allocations.is_empty() {
        if shortages.is_empty() {
            // Every line was allowed to be partial and none got a unit: still a "no".
            shortages = request
                .lines
                .iter()
                .map(|l| Shortage {
                    sku: l.sku,
                    requested: l.qty,
                    available: Qty::ZERO,
                })
                .collect();
        }
        return Ok(PlanOutcome::Insufficient {
            shortages,
            explanation,
        });
    }
    Ok(PlanOutcome::Planned(SourcingPlan {
        allocations,
        explanation: Arc::new(explanation),
    }))
}

/// Units this plan has already taken, so that two lines of one SKU do not count the same units.
#[derive(Default)]
struct Ledger {
    taken: SmallVec<[(StockPointId, SkuId, Source, Qty); 4]>,
}

impl Ledger {
    fn taken(&self, sp: StockPointId, sku: SkuId, source: Source) -> Qty {
        self.taken_since(0, sp, sku, source)
    }

    fn taken_since(&self, start: usize, sp: StockPointId, sku: SkuId, source: Source) -> Qty {
        self.taken[start..]
            .iter()
            .filter(|t| t.0 == sp && t.1 == sku && t.2 == source)
            .map(|t| t.3)
            .sum()
    }

    fn take(&mut self, sp: StockPointId, sku: SkuId, source: Source, qty: Qty) {
        self.taken.push((sp, sku, source, qty));
    }
}

struct GroupOutcome {
    allocations: Vec<PlannedAllocation>,
    shortages: Vec<Shortage>,
    explanation: GroupExplanation,
}

/// One eligible stock point with its strategy score for this group.
#[derive(Clone, Copy)]
struct Candidate<'n> {
    sp: &'n StockPoint,
    score: f64,
}

fn eligible(rule: &CompiledRule, request: &PlanRequest<'_>, sp: &StockPoint) -> bool {
    let c = &rule.rule.constraints;
    let place_ok = match request.pickup_at {
        Some(store) => sp.id == store,
        None => sp.can(Capability::Ship),
    };
    place_ok
        && sp.serves(request.channel)
        && (c.kinds.is_empty() || c.kinds.contains(&sp.kind))
        && (rule.only.is_empty() || rule.only.contains(&sp.id))
        && !rule.exclude.contains(&sp.id)
        && !request.exclude.contains(&sp.id)
}

/// Lower is better. For `closest` the score is the negated dot product of unit vectors, which
/// ranks exactly as distance does; kilometres are computed only for explained candidates.
fn score(
    strategy: Strategy,
    sp: &StockPoint,
    ship_to: Option<[f64; 3]>,
    unit_vectors: &[[f64; 3]],
) -> f64 {
    match strategy {
        Strategy::Priority | Strategy::Balance | Strategy::FewestShipments => {
            f64::from(sp.priority)
        }
        Strategy::Closest => match ship_to {
            Some(to) => {
                let at = unit_vectors
                    .get(sp.id.index())
                    .copied()
                    .unwrap_or_else(|| sp.location.unit_vector());
                -(at[0] * to[0] + at[1] * to[1] + at[2] * to[2])
            }
            None => f64::from(sp.priority),
        },
        Strategy::LowestCost => f64::from(sp.cost_per_shipment),
    }
}

/// Orders candidates best first: score, then priority rank, then id. Returns whether any two
/// candidates tied on score.
fn rank(candidates: &mut [Candidate<'_>]) -> bool {
    candidates.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then(a.sp.priority.cmp(&b.sp.priority))
            .then(a.sp.id.cmp(&b.sp.id))
    });
    candidates.windows(2).any(|w| w[0].score == w[1].score)
}

fn plan_group(
    rule: &CompiledRule,
    network: &Network,
    view: &(impl AvailabilityView + ?Sized),
    request: &PlanRequest<'_>,
    lines: &[usize],
    ledger: &mut Ledger,
    unit_vectors: &[[f64; 3]],
) -> GroupOutcome {
    let c = &rule.rule.constraints;
    let strategy = rule.rule.strategy;
    let ship_to = request.ship_to.map(|to| to.unit_vector());
    let mut candidates: PerCandidate<Candidate<'_>> = SmallVec::new();
    candidates.extend(
        network
            .iter()
            .filter(|sp| eligible(rule, request, sp))
            .map(|sp| Candidate {
                sp,
                score: score(strategy, sp, ship_to, unit_vectors),
            }),
    );
    let tied = rank(&mut candidates);
    let max_splits = if request.options.allow_split {
        c.max_splits.max(1) as usize
    } else {
        1
    };
    let allow_partial = request.options.allow_partial && c.allow_partial;
    let allow_backorder = request.options.allow_backorder && c.allow_backorder;
    let horizon = request
        .now
        .plus_ms(u64::from(c.promise_incoming_days).saturating_mul(DAY_MS));

    // Per line: what each candidate can offer, in candidate order. The SKU's stock list is
    // walked once and mapped to candidates through `slot`, so the cost follows the stock points
    // that carry the SKU, not candidates × stock points.
    let mut slot: SmallVec<[usize; SLOTS_INLINE]> = smallvec![usize::MAX; network.len()];
    for (k, cand) in candidates.iter().enumerate() {
        slot[cand.sp.id.index()] = k;
    }
    let mut stock = Vec::new();
    let mut offers: SmallVec<[PerCandidate<(Qty, Qty)>; 1]> = SmallVec::with_capacity(lines.len());
    for &i in lines {
        let line = &request.lines[i];
        stock.clear();
        view.stock_of(line.sku, horizon, &mut stock);
        let mut row: PerCandidate<(Qty, Qty)> = smallvec![(Qty::ZERO, Qty::ZERO); candidates.len()];
        for s in &stock {
            let Some(&k) = slot.get(s.stock_point.index()) else {
                continue;
            };
            if k == usize::MAX {
                continue;
            }
            let shelf = s
                .available
                .saturating_sub(c.min_remaining)
                .saturating_sub(ledger.taken(s.stock_point, line.sku, Source::OnHand));
            let incoming =
                s.incoming
                    .saturating_sub(ledger.taken(s.stock_point, line.sku, Source::Incoming));
            row[k] = (shelf, incoming);
        }
        offers.push(row);
    }

    let order: PerCandidate<usize> = match strategy {
        Strategy::FewestShipments => cover_order(&candidates, lines, request, &offers),
        Strategy::Balance => {
            // Most available (summed over the group's lines) first; ties keep rank order.
            let mut idx: PerCandidate<usize> = (0..candidates.len()).collect();
            idx.sort_by_key(|&k| {
                std::cmp::Reverse(offers.iter().map(|row| row[k].0 .0).sum::<u64>())
            });
            idx
        }
        _ => (0..candidates.len()).collect(),
    };

    let mut allocations = Vec::new();
    let mut shortages = Vec::new();
    let mut chosen: PerCandidate<bool> = smallvec![false; candidates.len()];
    let group_start = ledger.taken.len();
    for (row, &i) in offers.iter().zip(lines) {
        let line = &request.lines[i];
        // Earlier lines of this group may have taken units of the same SKU.
        let row: PerCandidate<(Qty, Qty)> = row
            .iter()
            .zip(&candidates)
            .map(|((shelf, incoming), cand)| {
                let id = cand.sp.id;
                (
                    shelf.saturating_sub(ledger.taken_since(
                        group_start,
                        id,
                        line.sku,
                        Source::OnHand,
                    )),
                    incoming.saturating_sub(ledger.taken_since(
                        group_start,
                        id,
                        line.sku,
                        Source::Incoming,
                    )),
                )
            })
            .collect();
        let row = row.as_slice();
        let mut picked = allocate_line(&order, row, line.qty, max_splits, Source::OnHand);
        let mut got: Qty = picked.iter().map(|p| p.1).sum();
        if got < line.qty && allow_backorder {
            let splits_left = max_splits - picked.len();
            let more = allocate_line(&order, row, line.qty - got, splits_left, Source::Incoming);
            got += more.iter().map(|p| p.1).sum();
            picked.extend(more);
        }
        if got < line.qty && !allow_partial {
            let offered: Qty = row
                .iter()
                .map(|(shelf, incoming)| {
                    *shelf
                        + if allow_backorder {
                            *incoming
                        } else {
                            Qty::ZERO
                        }
                })
                .sum();
            shortages.push(Shortage {
                sku: line.sku,
                requested: line.qty,
                available: offered,
            });
            continue;
        }
        for (k, qty, source) in picked {
            chosen[k] = true;
            ledger.take(candidates[k].sp.id, line.sku, source, qty);
            allocations.push(PlannedAllocation {
                line: i,
                sku: line.sku,
                stock_point: candidates[k].sp.id,
                qty,
                source,
            });
        }
    }

    // What the order was decided on (cheap); `explained_score` is what customer service reads.
    let rank_score = |k: usize| match strategy {
        Strategy::Balance => offers.iter().map(|row| row[k].0 .0).sum::<u64>() as f64,
        _ => candidates[k].score,
    };
    let explained_score = |k: usize| match (strategy, ship_to) {
        (Strategy::Balance, _) => offers.iter().map(|row| row[k].0 .0).sum::<u64>() as f64,
        (Strategy::Closest, Some(to)) => {
            Location::km_between(candidates[k].sp.location.unit_vector(), to)
        }
        _ => candidates[k].score,
    };
    let tied = tied
        || order
            .windows(2)
            .any(|w| rank_score(w[0]) == rank_score(w[1]));
    let explained = order
        .iter()
        .take(CANDIDATES_EXPLAINED_MAX)
        .map(|&k| CandidateScore {
            stock_point: candidates[k].sp.id,
            score: explained_score(k),
            available: offers.iter().map(|row| row[k].0).sum(),
            chosen: chosen[k],
        })
        .collect();
    GroupOutcome {
        allocations,
        shortages,
        explanation: GroupExplanation {
            rule_index: rule.index,
            rule_name: rule.name.clone(),
            strategy,
            lines: lines.to_vec(),
            candidates: explained,
            candidates_total: candidates.len(),
            tie_break: tied.then_some(TieBreak::PriorityThenId),
        },
    }
}

/// Takes units for one line from candidates in `order`. Without room to split, only a candidate
/// that covers the whole line is used.
fn allocate_line(
    order: &[usize],
    row: &[(Qty, Qty)],
    qty: Qty,
    max_splits: usize,
    source: Source,
) -> SmallVec<[(usize, Qty, Source); 2]> {
    let offer = |k: usize| match source {
        Source::OnHand => row[k].0,
        Source::Incoming => row[k].1,
    };
    if max_splits == 0 {
        return SmallVec::new();
    }
    if let Some(&k) = order.iter().find(|&&k| offer(k) >= qty) {
        // One stock point can serve the whole line: one shipment beats a split.
        return smallvec![(k, qty, source)];
    }
    if max_splits == 1 {
        return SmallVec::new();
    }
    let mut left = qty;
    let mut out = SmallVec::new();
    for &k in order {
        if left.is_zero() || out.len() == max_splits {
            break;
        }
        let take = offer(k).min(left);
        if !take.is_zero() {
            out.push((k, take, source));
            left -= take;
        }
    }
    out
}

/// Greedy set cover: repeatedly the candidate that fully covers the most remaining lines (then
/// the most remaining units), so that the request ships in as few parcels as possible.
fn cover_order(
    candidates: &[Candidate<'_>],
    lines: &[usize],
    request: &PlanRequest<'_>,
    offers: &[PerCandidate<(Qty, Qty)>],
) -> PerCandidate<usize> {
    let mut open: SmallVec<[bool; 8]> = smallvec![true; lines.len()];
    let mut order = PerCandidate::with_capacity(candidates.len());
    let mut used: PerCandidate<bool> = smallvec![false; candidates.len()];
    while order.len() < candidates.len() {
        let best = (0..candidates.len())
            .filter(|&k| !used[k])
            .max_by_key(|&k| {
                let (mut full, mut units) = (0usize, 0u64);
                for (j, &i) in lines.iter().enumerate() {
                    if open[j] {
                        let have = offers[j][k].0;
                        if have >= request.lines[i].qty {
                            full += 1;
                        }
                        units += have.min(request.lines[i].qty).0;
                    }
                }
                // max_by_key keeps the last maximum; reverse the rank so the best-ranked wins.
                (full, units, std::cmp::Reverse(k))
            });
        let Some(k) = best else { break };
        used[k] = true;
        order.push(k);
        for (j, &i) in lines.iter().enumerate() {
            if offers[j][k].0 >= request.lines[i].qty {
                open[j] = false;
            }
        }
        if !open.contains(&true) {
            // Every line is covered: the rest keep their rank order.
            order.extend((0..candidates.len()).filter(|&k| !used[k]));
            break;
        }
    }
    order
}
