//! The availability board: what every stock point has of every SKU, published by the stock point
//! actors after each change and read lock-free by the planner and by storefronts, which never
//! enter a mailbox. Also the SKU catalog (code ↔ id) and the change stream for SSE.
//!
//! Availability here is advisory: a stock point re-checks when it holds. A change is published
//! before it is durable, so a reader may briefly see an effect that is not yet acknowledged;
//! nobody is told "yes" before it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use conductor_engine::hash::FxBuild;
use conductor_engine::ids::{Code, Qty, SkuId, StockPointId};
use conductor_engine::inventory::{Incoming, Position};
use conductor_engine::sourcing::{AvailabilityView, StockAt};
use conductor_engine::time::Timestamp;
use dashmap::DashMap;
use tokio::sync::broadcast;

/// Changes buffered for stream subscribers; a subscriber further behind is told it lagged and
/// resynchronises from the board.
pub const CHANGES_BUFFERED_MAX: usize = 16_384;

/// One stock point's figures for one SKU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures {
    pub stock_point: StockPointId,
    pub on_hand: Qty,
    pub held: Qty,
    pub allocated: Qty,
    pub safety_stock: Qty,
    pub non_sellable: Qty,
    pub available: Qty,
    pub incoming: Vec<Incoming>,
    /// Incoming units already promised to backorders.
    pub incoming_promised: Qty,
}

impl Figures {
    fn of(stock_point: StockPointId, p: &Position) -> Figures {
        Figures {
            stock_point,
            on_hand: p.on_hand,
            held: p.held,
            allocated: p.allocated,
            safety_stock: p.safety_stock,
            non_sellable: p.non_sellable,
            available: p.available(),
            incoming: p.incoming.clone(),
            incoming_promised: p.held_incoming + p.allocated_incoming,
        }
    }

    fn incoming_available(&self, horizon: Timestamp) -> Qty {
        let arriving: Qty = self
            .incoming
            .iter()
            .filter(|i| i.eta <= horizon)
            .map(|i| i.qty)
            .sum();
        arriving.saturating_sub(self.incoming_promised)
    }
}

pub struct Board {
    by_sku: DashMap<SkuId, Vec<Figures>, FxBuild>,
    sku_ids: DashMap<Code, SkuId>,
    sku_codes: RwLock<Vec<Code>>,
    changes: broadcast::Sender<SkuId>,
    /// Publications so far, for metrics.
    published: AtomicU64,
}

impl Default for Board {
    fn default() -> Board {
        Board {
            by_sku: DashMap::default(),
            sku_ids: DashMap::new(),
            sku_codes: RwLock::new(Vec::new()),
            changes: broadcast::channel(CHANGES_BUFFERED_MAX).0,
            published: AtomicU64::new(0),
        }
    }
}

impl Board {
    pub fn publish(&self, stock_point: StockPointId, sku: SkuId, position: &Position) {
        let figures = Figures::of(stock_point, position);
        let mut entry = self.by_sku.entry(sku).or_default();
        match entry.iter_mut().find(|f| f.stock_point == stock_point) {
            Some(existing) => *existing = figures,
            None => entry.push(figures),
        }
        drop(entry);
        self.published.fetch_add(1, Ordering::Relaxed);
        if self.changes.receiver_count() > 0 {
            // No receiver is not an error: nobody is streaming right now.
            let _ = self.changes.send(sku);
        }
    }

    pub fn figures(&self, sku: SkuId) -> Vec<Figures> {
        self.by_sku.get(&sku).map(|e| e.clone()).unwrap_or_default()
    }

    /// Calls `f` with the figures without copying them.
    pub fn with_figures<R>(&self, sku: SkuId, f: impl FnOnce(&[Figures]) -> R) -> R {
        match self.by_sku.get(&sku) {
            Some(entry) => f(&entry),
            None => f(&[]),
        }
    }

    /// on_hand of every SKU published for `stock_point`: what a warehouse slots into its bins
    /// when it starts. The stock point publishes every position as it starts and after every
    /// change, so this never waits on it, even while it restarts.
    pub fn on_hand_at(&self, stock_point: StockPointId) -> Vec<(SkuId, Qty)> {
        let mut out: Vec<(SkuId, Qty)> = self
            .by_sku
            .iter()
            .filter_map(|entry| {
                entry
                    .value()
                    .iter()
                    .find(|f| f.stock_point == stock_point)
                    .map(|f| (*entry.key(), f.on_hand))
            })
            .collect();
        out.sort_by_key(|(sku, _)| *sku);
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SkuId> {
        self.changes.subscribe()
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    pub fn sku_id(&self, code: &str) -> Option<SkuId> {
        self.sku_ids.get(code).map(|id| *id)
    }

    pub fn sku_code(&self, sku: SkuId) -> Option<Code> {
        self.sku_codes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sku.index())
            .cloned()
    }

    /// Records a SKU's id; only the orchestrator defines SKUs, in id order.
    pub(crate) fn define_sku(&self, sku: SkuId, code: Code) {
        let mut codes = self.sku_codes.write().unwrap_or_else(|e| e.into_inner());
        debug_assert_eq!(codes.len(), sku.index(), "SKU ids are dense");
        codes.push(code.clone());
        self.sku_ids.insert(code, sku);
    }
}

impl AvailabilityView for Board {
    fn stock_of(&self, sku: SkuId, incoming_horizon: Timestamp, out: &mut Vec<StockAt>) {
        if let Some(entry) = self.by_sku.get(&sku) {
            out.extend(entry.iter().map(|f| StockAt {
                stock_point: f.stock_point,
                available: f.available,
                incoming: f.incoming_available(incoming_horizon),
            }));
        }
    }
}
