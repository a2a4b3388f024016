//! Shared helpers for the actor tests: a system on a temporary data dir with a small network.

#![allow(dead_code)]

use std::time::Duration;

use conductor_actors::error::Refusal;
use conductor_actors::orchestrator::StockPointSpec;
use conductor_actors::warehouse::{Task, WorkerConfig};
use conductor_actors::{Conductor, Config};
use conductor_engine::checkout::ReserveRequest;
use conductor_engine::ids::{Code, OrderId, Qty, SkuId, StockPointId};
use conductor_engine::inventory::{AdjustReason, Adjustment};
use conductor_engine::network::{Capability, Channel, Location, StockPointKind};
use conductor_engine::order::Order;
use conductor_engine::returns::{Condition, ReturnLine, ReturnRecord};

pub struct System {
    pub conductor: Conductor,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.wave_window = Duration::from_millis(20);
    config
}

pub async fn start() -> System {
    let dir = tempfile::tempdir().expect("temp dir");
    let (conductor, _) = Conductor::start(config(dir.path())).await.expect("start");
    System { conductor, dir }
}

/// A system whose configuration `adjust` changes first.
pub async fn start_configured(adjust: impl FnOnce(&mut Config)) -> System {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    adjust(&mut config);
    let (conductor, _) = Conductor::start(config).await.expect("start");
    System { conductor, dir }
}

pub async fn restart(system: System) -> System {
    system.conductor.shutdown().await;
    let (conductor, _) = Conductor::start(config(system.dir.path()))
        .await
        .expect("restart");
    System {
        conductor,
        dir: system.dir,
    }
}

pub async fn start_with_workers() -> System {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.workers = Some(WorkerConfig {
        pick_ms: 1,
        pack_ms: 1,
        ship_ms: 1,
        putaway_ms: 1,
        walk_ms_per_m: 0,
    });
    let (conductor, _) = Conductor::start(config).await.expect("start");
    System { conductor, dir }
}

pub fn code(text: &str) -> Code {
    Code::parse(text).expect("valid code")
}

/// WH1 (Paris, priority 1), WH2 (Lyon, priority 2), ST1 (a Paris store with pickup).
pub async fn network(c: &Conductor) -> [StockPointId; 3] {
    let sites = [
        ("WH1", StockPointKind::Warehouse, 1, 48.85, 2.35),
        ("WH2", StockPointKind::Warehouse, 2, 45.76, 4.83),
        ("ST1", StockPointKind::Store, 3, 48.86, 2.34),
    ];
    let mut ids = Vec::new();
    for (name, kind, priority, lat, lon) in sites {
        let sp = c
            .put_stock_point(StockPointSpec {
                code: code(name),
                kind,
                name: name.to_lowercase(),
                location: Location { lat, lon },
                priority,
                channels: vec![Channel::Web, Channel::Store],
                capabilities: vec![Capability::Ship, Capability::Pickup, Capability::Returns],
                cost_per_shipment: 500,
                tags: vec![],
            })
            .await
            .expect("no error")
            .expect("accepted");
        ids.push(sp.id);
    }
    // The stock point actors start asynchronously after the definition is durable.
    tokio::time::sleep(Duration::from_millis(50)).await;
    [ids[0], ids[1], ids[2]]
}

pub async fn sku(c: &Conductor, text: &str) -> SkuId {
    c.define_skus(vec![code(text)])
        .await
        .expect("no error")
        .expect("defined")[0]
}

pub async fn stock(c: &Conductor, sp: StockPointId, sku: SkuId, qty: u64) {
    c.adjust(sp, sku, Adjustment::Set(Qty(qty)), AdjustReason::Adjustment)
        .await
        .expect("no error")
        .expect("adjusted");
}

pub fn request(lines: &[(&str, u64)]) -> ReserveRequest {
    ReserveRequest::web(lines.iter().map(|(s, q)| (code(s), Qty(*q))).collect(), 600)
}

pub async fn available(c: &Conductor, sp: StockPointId, sku: SkuId) -> u64 {
    c.inventory(sp).await.expect("inventory").available(sku).0
}

pub fn is_insufficient<T>(answer: &Result<T, Refusal>) -> bool {
    matches!(answer, Err(Refusal::Insufficient(_)))
}

/// Polls `check` until it holds or five seconds pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The network, 10 of SKU "A" at WH1, and an order for 2 of them released to WH1 (its pick task
/// is on WH1's list): the order and WH1.
pub async fn released_order(c: &Conductor) -> (Order, StockPointId) {
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 10).await;
    let order = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
    eventually("the order is released to the warehouse", || async {
        !c.tasks(wh1, true).await.unwrap().is_empty()
    })
    .await;
    (order, wh1)
}

/// Opens a return of one resellable unit of `sku` (code `code_text`) of `order`, dropped off at
/// `drop_off`.
pub async fn return_one_resellable(
    c: &Conductor,
    order: OrderId,
    (sku, code_text): (SkuId, &str),
    drop_off: StockPointId,
) -> ReturnRecord {
    let lines = vec![ReturnLine {
        sku,
        sku_code: code(code_text),
        qty: Qty(1),
        condition: Condition::Resellable,
    }];
    c.open_return(order, lines, Some(drop_off))
        .await
        .expect("the return is answered")
        .expect("the return is opened")
}

/// Waits for a task on `sp`'s list and reports the first with `picked` units (fewer than asked
/// is a short pick): the warehouse's answer.
pub async fn pick_first_task(
    c: &Conductor,
    sp: StockPointId,
    picked: Qty,
) -> Result<Result<Task, Refusal>, conductor_actors::error::CommandError> {
    eventually("a task appears", || async {
        !c.tasks(sp, true).await.unwrap().is_empty()
    })
    .await;
    let task = c.tasks(sp, true).await.unwrap().remove(0);
    c.complete_task(sp, task.id, Some(picked)).await
}

/// The tasks' ids, in list order.
pub fn task_ids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.id.as_str()).collect()
}

/// Buyers reserving in a loop until stopped, each keeping the ids of the holds it was
/// acknowledged. A failure (unavailable while an actor restarts, or outcome unknown) is
/// retried after a millisecond; a refusal fails the test.
pub struct Buyers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    buyers: Vec<tokio::task::JoinHandle<Vec<conductor_engine::ids::ReservationId>>>,
}

impl Buyers {
    /// `count` buyers; buyer `n` reserves `lines(n)` each time.
    pub fn start(
        c: &Conductor,
        count: u64,
        lines: fn(u64) -> &'static [(&'static str, u64)],
    ) -> Buyers {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let buyers = (0..count)
            .map(|n| {
                let c = c.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match c.reserve(request(lines(n))).await {
                            Ok(Ok(r)) => acknowledged.push(r.id),
                            Ok(Err(refusal)) => panic!("refused: {refusal:?}"),
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        Buyers { stop, buyers }
    }

    /// Stops them and returns every acknowledged hold.
    pub async fn stop(self) -> Vec<conductor_engine::ids::ReservationId> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        for buyer in self.buyers {
            acknowledged.extend(buyer.await.expect("a buyer panicked"));
        }
        acknowledged
    }
}
