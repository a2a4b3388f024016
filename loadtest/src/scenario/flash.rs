//! `flash-sale` and `availability`: N hot SKUs, C buyers each reserving 1–k units until sold
//! out or time is up, optionally confirming a share of their holds; with storefront readers
//! (single and batch availability) alongside for `availability`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::invariant::Expected;
use crate::load::{drive, Pace, Rng, Step, Worker};
use crate::stats::{Live, Local, Recorder};
use crate::target::{Answer, Error, Session, Target};

/// SKUs per batch availability read.
pub const BATCH_SKUS_MAX: usize = 50;

#[derive(Clone, Debug)]
pub struct FlashOptions {
    pub skus: usize,
    pub stock: u64,
    /// Each hold asks for 1..=max_qty units.
    pub max_qty: u64,
    /// Share of holds confirmed into orders at once (0 to 1).
    pub confirm_share: f64,
    pub ttl_s: u64,
    /// SKU codes are `<prefix><n>`: a fresh prefix per run keeps runs on one server apart.
    pub sku_prefix: String,
    /// Keep every acknowledged hold id (the crash scenario reads them back).
    pub keep_ids: bool,
}

/// What the buyers share: the SKUs, which are sold out, and what was acknowledged.
pub struct Flash {
    pub opts: FlashOptions,
    pub skus: Arc<Vec<String>>,
    sold_out: Vec<AtomicBool>,
    open: AtomicUsize,
    acked_units: Vec<AtomicU64>,
    confirmed_units: Vec<AtomicU64>,
    in_doubt_units: Vec<AtomicU64>,
    acked_ids: Mutex<Vec<String>>,
}

impl Flash {
    pub async fn setup(target: &Target, opts: FlashOptions) -> Result<Arc<Flash>, Error> {
        let skus: Vec<String> = (0..opts.skus)
            .map(|i| format!("{}{i}", opts.sku_prefix))
            .collect();
        target.setup(&skus, opts.stock).await?;
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Ok(Arc::new(Flash {
            sold_out: (0..skus.len()).map(|_| AtomicBool::new(false)).collect(),
            open: AtomicUsize::new(skus.len()),
            acked_units: zeros(skus.len()),
            confirmed_units: zeros(skus.len()),
            in_doubt_units: zeros(skus.len()),
            acked_ids: Mutex::new(Vec::new()),
            skus: Arc::new(skus),
            opts,
        }))
    }

    pub fn all_sold_out(&self) -> bool {
        self.open.load(Ordering::Relaxed) == 0
    }

    fn mark_sold_out(&self, sku: usize) {
        if !self.sold_out[sku].swap(true, Ordering::Relaxed) {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Opens one session per buyer and runs them; answers how long they ran.
    pub async fn buy(
        self: &Arc<Flash>,
        target: &Target,
        pace: Pace,
        seed: u64,
        recorder: Arc<Recorder>,
        stop: Arc<AtomicBool>,
    ) -> Result<Duration, Error> {
        let mut buyers = Vec::with_capacity(pace.concurrency);
        for i in 0..pace.concurrency {
            buyers.push(Buyer {
                session: target.session(&self.skus).await?,
                rng: Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9)),
                flash: self.clone(),
                one_unit: vec![false; self.skus.len()],
                stop: stop.clone(),
                ids: Vec::new(),
            });
        }
        Ok(drive(buyers, pace, recorder, stop).await)
    }

    /// What the system should report now. With `expired`, the unconfirmed holds are gone.
    pub fn expected(&self, expired: bool) -> Vec<Expected> {
        self.skus
            .iter()
            .enumerate()
            .map(|(i, sku)| Expected {
                sku: sku.clone(),
                initial: self.opts.stock,
                live_units: if expired {
                    self.confirmed_units[i].load(Ordering::Relaxed)
                } else {
                    self.acked_units[i].load(Ordering::Relaxed)
                },
                in_doubt: self.in_doubt_units[i].load(Ordering::Relaxed),
            })
            .collect()
    }

    pub fn acked_units(&self) -> u64 {
        self.acked_units
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    pub fn take_ids(&self) -> Vec<String> {
        std::mem::take(&mut *self.acked_ids.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct Buyer {
    session: Session,
    rng: Rng,
    flash: Arc<Flash>,
    /// Per SKU: a multi-unit hold was refused, so ask for one unit from now on (a refused
    /// one-unit hold means sold out).
    one_unit: Vec<bool>,
    stop: Arc<AtomicBool>,
    ids: Vec<String>,
}

impl Drop for Buyer {
    fn drop(&mut self) {
        if self.flash.opts.keep_ids && !self.ids.is_empty() {
            let mut all = self
                .flash
                .acked_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            all.append(&mut self.ids);
        }
    }
}

impl Worker for Buyer {
    async fn step(&mut self, local: &mut Local, live: &Live, intended: Instant) -> Step {
        let flash = &self.flash;
        let n = flash.skus.len();
        let first = self.rng.below(n as u64) as usize;
        let Some(sku) = (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| !flash.sold_out[i].load(Ordering::Relaxed))
        else {
            self.stop.store(true, Ordering::Relaxed);
            return Step::Done;
        };
        let qty = if self.one_unit[sku] {
            1
        } else {
            1 + self.rng.below(flash.opts.max_qty.max(1))
        };
        match self.session.reserve(sku, qty, flash.opts.ttl_s).await {
            Answer::Ok(id) => {
                local.ok(live, "reserve", intended.elapsed());
                flash.acked_units[sku].fetch_add(qty, Ordering::Relaxed);
                if flash.opts.confirm_share > 0.0 && self.rng.unit() < flash.opts.confirm_share {
                    let t = Instant::now();
                    match self.session.confirm(&id).await {
                        Answer::Ok(()) => {
                            local.ok(live, "confirm", t.elapsed());
                            flash.confirmed_units[sku].fetch_add(qty, Ordering::Relaxed);
                        }
                        Answer::Refused(kind) => local.refused(live, "confirm", &kind),
                        Answer::Failed { kind, .. } => local.error(live, "confirm", &kind),
                    }
                }
                if flash.opts.keep_ids {
                    self.ids.push(id);
                }
            }
            Answer::Refused(kind) => {
                local.refused(live, "reserve", &kind);
                if kind == "insufficient-stock" {
                    if qty == 1 {
                        flash.mark_sold_out(sku);
                    } else {
                        self.one_unit[sku] = true;
                    }
                }
            }
            Answer::Failed { kind, in_doubt } => {
                local.error(live, "reserve", &kind);
                if in_doubt {
                    flash.in_doubt_units[sku].fetch_add(qty, Ordering::Relaxed);
                }
                // Back off a little so that a dead server is not hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Step::Go
    }
}

/// A storefront: single or batch availability reads while the sale runs.
pub struct Reader {
    session: Session,
    rng: Rng,
    skus: usize,
    batch_share: f64,
    stop: Arc<AtomicBool>,
}

impl Reader {
    pub async fn open(
        target: &Target,
        flash: &Flash,
        seed: u64,
        batch_share: f64,
        stop: Arc<AtomicBool>,
    ) -> Result<Reader, Error> {
        Ok(Reader {
            session: target.session(&flash.skus).await?,
            rng: Rng::new(seed),
            skus: flash.skus.len(),
            batch_share,
            stop,
        })
    }
}

impl Worker for Reader {
    async fn step(&mut self, local: &mut Local, live: &Live, intended: Instant) -> Step {
        if self.stop.load(Ordering::Relaxed) {
            return Step::Done;
        }
        let batch = self.rng.unit() < self.batch_share;
        let (op, wanted): (&'static str, Vec<usize>) = if batch {
            let k = self.skus.min(BATCH_SKUS_MAX);
            let first = self.rng.below(self.skus as u64) as usize;
            (
                "availability-batch",
                (0..k).map(|j| (first + j) % self.skus).collect(),
            )
        } else {
            (
                "availability",
                vec![self.rng.below(self.skus as u64) as usize],
            )
        };
        match self.session.availability(&wanted).await {
            Answer::Ok(_) => local.ok(live, op, intended.elapsed()),
            Answer::Refused(kind) => local.refused(live, op, &kind),
            Answer::Failed { kind, .. } => local.error(live, op, &kind),
        }
        Step::Go
    }
}
