//! `omnichannel`: a realistic mix over a small store network (two warehouses, two stores),
//! run all the way to shipped by simulated warehouse workers that the harness plays itself
//! through the task API (pick, pack, ship, putaway; now and then a short pick, which makes
//! Conductor re-source the missing units).
//!
//! Shoppers place web orders (shipped to an address), pickup-in-store orders, and orders they
//! cancel at once; after the load, the workers drain every order to shipped, and a share of the
//! shipped orders are returned to a store and received there (restocked).
//!
//! The check: every order ends shipped or cancelled within the drain time, no SKU is oversold
//! (held + allocated ≤ on_hand, available = on_hand − held − allocated), no hold is left
//! behind, and no unit appears from nowhere (on_hand ≤ initial + restocked).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use conductor_actors::orchestrator::StockPointSpec;
use conductor_actors::Conductor;
use conductor_engine::checkout::ReserveRequest;
use conductor_engine::ids::{Code, OrderId, Qty, ReturnId, SkuId, StockPointId};
use conductor_engine::network::{Capability, Channel, Location, StockPointKind};
use conductor_engine::returns::{Condition, ReturnLine};
use serde::Deserialize;

use crate::cli::OmniCmd;
use crate::invariant::{SkuCheck, Verdict};
use crate::load::{drive, sampler, Rng, Step, Worker};
use crate::report::RunReport;
use crate::run::{pace, seed, System};
use crate::stats::{Live, Local, Recorder};
use crate::target::{
    command_failure, err, refusal_kind, set_stock_in_process, Answer, Error, Http, Target,
};

/// How long the workers may take to ship every order after the shoppers stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Share of shipped orders returned.
const RETURN_SHARE: f64 = 0.1;
/// Share of picks done short by one unit.
const SHORT_PICK_SHARE: f64 = 0.03;

/// (code, kind, lat, lon): a small network in two cities.
const NETWORK: [(&str, StockPointKind, f64, f64); 4] = [
    ("OWH1", StockPointKind::Warehouse, 48.85, 2.35),
    ("OWH2", StockPointKind::Warehouse, 45.76, 4.83),
    ("OST1", StockPointKind::Store, 48.86, 2.34),
    ("OST2", StockPointKind::Store, 45.75, 4.85),
];
const STORES: [&str; 2] = ["OST1", "OST2"];

/// Conductor's order, warehouse and return operations, in-process or over HTTP.
#[derive(Clone)]
enum Omni {
    /// The handle, and the ids of [`NETWORK`]'s stock points in its order, set by the setup.
    InProcess(Conductor, Arc<OnceLock<Vec<StockPointId>>>),
    Http(Arc<Http>),
}

#[derive(Clone, Debug, Deserialize)]
struct TaskInfo {
    id: String,
    kind: String,
    qty: u64,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct StatusOnly {
    status: String,
}

/// An order line: SKU code and units.
type Lines = Vec<(String, u64)>;

impl Omni {
    /// A stock point's id, without a round trip to the orchestrator.
    fn sp(ids: &OnceLock<Vec<StockPointId>>, code: &str) -> Result<StockPointId, Error> {
        let index = NETWORK
            .iter()
            .position(|n| n.0 == code)
            .ok_or_else(|| err(format!("unknown stock point {code}")))?;
        ids.get()
            .and_then(|ids| ids.get(index).copied())
            .ok_or_else(|| err("network not set up"))
    }

    async fn setup(&self, skus: &[String], stock: u64) -> Result<(), Error> {
        match self {
            Omni::InProcess(c, known) => {
                let mut ids = Vec::new();
                for (code, kind, lat, lon) in NETWORK {
                    let sp = c
                        .put_stock_point(StockPointSpec {
                            code: Code::parse(code).map_err(|e| err(format!("{e:?}")))?,
                            kind,
                            name: code.to_lowercase(),
                            location: Location { lat, lon },
                            priority: ids.len() as u32 + 1,
                            channels: vec![Channel::Web, Channel::Store],
                            capabilities: vec![
                                Capability::Ship,
                                Capability::Pickup,
                                Capability::Returns,
                            ],
                            cost_per_shipment: 500,
                            tags: vec![],
                        })
                        .await
                        .map_err(|e| err(e.to_string()))?
                        .map_err(|e| err(e.to_string()))?;
                    ids.push(sp.id);
                }
                let _ = known.set(ids.clone());
                for sp in ids {
                    set_stock_in_process(c, sp, skus, stock).await?;
                }
                Ok(())
            }
            Omni::Http(http) => {
                for (i, (code, kind, lat, lon)) in NETWORK.iter().enumerate() {
                    let kind = match kind {
                        StockPointKind::Store => "store",
                        _ => "warehouse",
                    };
                    http.put_stock_point(
                        code,
                        serde_json::json!({
                            "kind": kind, "name": code.to_lowercase(),
                            "location": {"lat": lat, "lon": lon}, "priority": i + 1,
                            "channels": ["web", "store"],
                            "capabilities": ["ship", "pickup", "returns"]
                        }),
                    )
                    .await?;
                }
                let lines: Vec<(&str, &str, u64)> = NETWORK
                    .iter()
                    .flat_map(|n| skus.iter().map(move |s| (n.0, s.as_str(), stock)))
                    .collect();
                http.set_stock(&lines).await
            }
        }
    }

    async fn place_order(
        &self,
        lines: &Lines,
        ship_to: Option<(f64, f64)>,
        pickup_at: Option<&str>,
        customer: &str,
    ) -> Answer<String> {
        match self {
            Omni::InProcess(c, ids) => {
                let mut parsed = Vec::new();
                for (sku, qty) in lines {
                    match Code::parse(sku) {
                        Ok(code) => parsed.push((code, Qty(*qty))),
                        Err(_) => {
                            return Answer::Failed {
                                kind: "bad-sku".into(),
                                in_doubt: false,
                            }
                        }
                    }
                }
                let pickup = match pickup_at.map(|p| Omni::sp(ids, p)).transpose() {
                    Ok(p) => p,
                    Err(_) => {
                        return Answer::Failed {
                            kind: "bad-store".into(),
                            in_doubt: false,
                        }
                    }
                };
                let request = ReserveRequest {
                    channel: Channel::Web,
                    lines: parsed,
                    ship_to: ship_to.map(|(lat, lon)| Location { lat, lon }),
                    pickup_at: pickup,
                    ttl_seconds: 600,
                    allow_split: true,
                    allow_partial: false,
                    allow_backorder: false,
                    customer_ref: Some(customer.to_owned()),
                    tags: Vec::new(),
                    idempotency: None,
                };
                match c.place_order(request).await {
                    Ok(Ok(order)) => Answer::Ok(order.id.external()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Omni::Http(http) => {
                let lines: Vec<serde_json::Value> = lines
                    .iter()
                    .map(|(sku, qty)| serde_json::json!({"sku": sku, "qty": qty}))
                    .collect();
                let mut body = serde_json::json!({
                    "channel": "web", "lines": lines, "ttl_seconds": 600,
                    "allow_split": true, "allow_partial": false, "customer_ref": customer,
                });
                if let Some((lat, lon)) = ship_to {
                    body["ship_to"] = serde_json::json!({"lat": lat, "lon": lon});
                }
                if let Some(store) = pickup_at {
                    body["pickup_at"] = serde_json::json!(store);
                }
                created(http, "/v1/orders", body, 201).await
            }
        }
    }

    async fn cancel(&self, order: &str) -> Answer<()> {
        match self {
            Omni::InProcess(c, _) => {
                let Some(id) = OrderId::parse_external(order) else {
                    return Answer::Failed {
                        kind: "bad-id".into(),
                        in_doubt: false,
                    };
                };
                match c.cancel_order(id).await {
                    Ok(Ok(_)) => Answer::Ok(()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Omni::Http(http) => {
                let path = format!("/v1/orders/{order}/cancel");
                match created(http, &path, serde_json::json!({}), 200).await {
                    Answer::Ok(_) => Answer::Ok(()),
                    Answer::Refused(k) => Answer::Refused(k),
                    Answer::Failed { kind, in_doubt } => Answer::Failed { kind, in_doubt },
                }
            }
        }
    }

    async fn order_status(&self, order: &str) -> Result<String, Error> {
        match self {
            Omni::InProcess(c, _) => {
                let id = OrderId::parse_external(order).ok_or_else(|| err("bad order id"))?;
                let found = c.order(id).await.map_err(|e| err(e.to_string()))?;
                Ok(found.map_or("unknown".into(), |o| {
                    format!("{:?}", o.status()).to_lowercase()
                }))
            }
            Omni::Http(http) => {
                let bytes = http
                    .expect(
                        reqwest::Method::GET,
                        &format!("/v1/orders/{order}"),
                        None,
                        200,
                    )
                    .await?;
                Ok(serde_json::from_slice::<StatusOnly>(&bytes)?.status)
            }
        }
    }

    async fn tasks(&self, sp: &str) -> Result<Vec<TaskInfo>, Error> {
        match self {
            Omni::InProcess(c, ids) => {
                let id = Omni::sp(ids, sp)?;
                let tasks = c.tasks(id, true).await.map_err(|e| err(e.to_string()))?;
                Ok(tasks
                    .into_iter()
                    .map(|t| TaskInfo {
                        id: t.id,
                        kind: format!("{:?}", t.kind).to_lowercase(),
                        qty: t.qty.0,
                    })
                    .collect())
            }
            Omni::Http(http) => {
                let path = format!("/v1/stock-points/{sp}/tasks?status=open");
                let bytes = http.expect(reqwest::Method::GET, &path, None, 200).await?;
                Ok(serde_json::from_slice::<Items<TaskInfo>>(&bytes)?.items)
            }
        }
    }

    async fn complete(&self, sp: &str, task: &str, qty: Option<u64>) -> Answer<()> {
        match self {
            Omni::InProcess(c, ids) => {
                let Ok(id) = Omni::sp(ids, sp) else {
                    return Answer::Failed {
                        kind: "bad-stock-point".into(),
                        in_doubt: false,
                    };
                };
                match c.complete_task(id, task.to_owned(), qty.map(Qty)).await {
                    Ok(Ok(_)) => Answer::Ok(()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Omni::Http(http) => {
                let body = match qty {
                    Some(q) => serde_json::json!({"qty": q}),
                    None => serde_json::json!({}),
                };
                match created(http, &format!("/v1/tasks/{task}/complete"), body, 200).await {
                    Answer::Ok(_) => Answer::Ok(()),
                    Answer::Refused(k) => Answer::Refused(k),
                    Answer::Failed { kind, in_doubt } => Answer::Failed { kind, in_doubt },
                }
            }
        }
    }

    /// Opens a return of one unit of `sku` dropped off at `store`; answers the return id.
    async fn open_return(&self, order: &str, sku: &str, store: &str) -> Answer<String> {
        match self {
            Omni::InProcess(c, ids) => {
                let (Some(id), Some(sku_id), Ok(code), Ok(sp)) = (
                    OrderId::parse_external(order),
                    c.board().sku_id(sku),
                    Code::parse(sku),
                    Omni::sp(ids, store),
                ) else {
                    return Answer::Failed {
                        kind: "bad-id".into(),
                        in_doubt: false,
                    };
                };
                let lines = vec![ReturnLine {
                    sku: SkuId(sku_id.0),
                    sku_code: code,
                    qty: Qty(1),
                    condition: Condition::Resellable,
                }];
                match c.open_return(id, lines, Some(sp)).await {
                    Ok(Ok(r)) => Answer::Ok(r.id.external()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Omni::Http(http) => {
                let body = serde_json::json!({
                    "lines": [{"sku": sku, "qty": 1, "condition": "resellable"}],
                    "drop_off": store,
                });
                created(http, &format!("/v1/orders/{order}/returns"), body, 201).await
            }
        }
    }

    async fn receive_return(&self, ret: &str) -> Answer<()> {
        match self {
            Omni::InProcess(c, _) => {
                let Some(id) = ReturnId::parse_external(ret) else {
                    return Answer::Failed {
                        kind: "bad-id".into(),
                        in_doubt: false,
                    };
                };
                match c.receive_return(id).await {
                    Ok(Ok(_)) => Answer::Ok(()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Omni::Http(http) => {
                match created(
                    http,
                    &format!("/v1/returns/{ret}/receive"),
                    serde_json::json!({}),
                    200,
                )
                .await
                {
                    Answer::Ok(_) => Answer::Ok(()),
                    Answer::Refused(k) => Answer::Refused(k),
                    Answer::Failed { kind, in_doubt } => Answer::Failed { kind, in_doubt },
                }
            }
        }
    }
}

/// POSTs `body`; answers the created object's id (empty when the answer has none).
async fn created(http: &Http, path: &str, body: serde_json::Value, ok: u16) -> Answer<String> {
    match http
        .send(reqwest::Method::POST, path, Some(body.to_string()))
        .await
    {
        Ok((status, bytes)) if status == ok => {
            Answer::Ok(serde_json::from_slice::<Created>(&bytes).map_or(String::new(), |c| c.id))
        }
        Ok((409, bytes)) => Answer::Refused(
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v["type"]
                        .as_str()
                        .map(|t| t.rsplit('/').next().unwrap_or("conflict").to_owned())
                })
                .unwrap_or_else(|| "conflict".into()),
        ),
        // A task listed a moment ago can be gone (its fulfilment was cancelled or re-sourced):
        // an answer, as the in-process `Refusal::NotFound` is.
        Ok((404, _)) => Answer::Refused("not-found".into()),
        Ok((status, _)) => Answer::Failed {
            kind: format!("http-{status}"),
            in_doubt: status >= 500 && status != 503,
        },
        Err(f) => f.into_answer(),
    }
}

/// What shoppers and workers share.
struct Shop {
    omni: Omni,
    skus: Vec<String>,
    /// Orders placed and not cancelled, to follow to shipped.
    orders: Mutex<Vec<(String, Lines)>>,
    cancelled: AtomicU64,
    placed: AtomicU64,
    short_picks: AtomicU64,
}

struct Shopper {
    shop: Arc<Shop>,
    rng: Rng,
    n: u64,
    id: usize,
}

impl Worker for Shopper {
    async fn step(&mut self, local: &mut Local, live: &Live, intended: Instant) -> Step {
        let shop = &self.shop;
        self.n += 1;
        let customer = format!("c{}-{}", self.id, self.n);
        let k = 1 + self.rng.below(2);
        let lines: Lines = (0..k)
            .map(|_| {
                (
                    shop.skus[self.rng.below(shop.skus.len() as u64) as usize].clone(),
                    1 + self.rng.below(2),
                )
            })
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let roll = self.rng.unit();
        // 60 % web orders shipped to an address, 25 % pickup in store, 15 % cancelled at once.
        let (op, pickup) = if roll < 0.60 {
            ("web-order", None)
        } else if roll < 0.85 {
            ("pickup-order", Some(STORES[self.rng.below(2) as usize]))
        } else {
            ("order-to-cancel", None)
        };
        let city = NETWORK[self.rng.below(2) as usize];
        let ship_to = pickup.is_none().then(|| {
            (
                city.2 + self.rng.unit() * 0.2,
                city.3 + self.rng.unit() * 0.2,
            )
        });
        match shop
            .omni
            .place_order(&lines, ship_to, pickup, &customer)
            .await
        {
            Answer::Ok(id) => {
                local.ok(live, op, intended.elapsed());
                shop.placed.fetch_add(1, Ordering::Relaxed);
                if op == "order-to-cancel" {
                    let t = Instant::now();
                    match shop.omni.cancel(&id).await {
                        Answer::Ok(()) => {
                            local.ok(live, "cancel", t.elapsed());
                            shop.cancelled.fetch_add(1, Ordering::Relaxed);
                            return Step::Go;
                        }
                        Answer::Refused(kind) => local.refused(live, "cancel", &kind),
                        Answer::Failed { kind, .. } => local.error(live, "cancel", &kind),
                    }
                }
                shop.orders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((id, lines));
            }
            Answer::Refused(kind) => local.refused(live, op, &kind),
            Answer::Failed { kind, .. } => local.error(live, op, &kind),
        }
        Step::Go
    }
}

/// Completes the open tasks of one stock point, in the order given; `share` of `of` picks it.
async fn work_once(
    shop: &Shop,
    sp: &str,
    rng: &mut Rng,
    local: &mut Local,
    live: &Live,
    slot: (usize, usize),
) -> usize {
    let Ok(tasks) = shop.omni.tasks(sp).await else {
        return 0;
    };
    let mut done = 0;
    for (i, task) in tasks.iter().enumerate() {
        if i % slot.1 != slot.0 {
            continue;
        }
        let short = task.kind == "pick" && rng.unit() < SHORT_PICK_SHARE;
        let qty = short.then(|| task.qty.saturating_sub(1));
        let op = if short { "short-pick" } else { "task" };
        let t = Instant::now();
        match shop.omni.complete(sp, &task.id, qty).await {
            Answer::Ok(()) => {
                local.ok(live, op, t.elapsed());
                if short {
                    shop.short_picks.fetch_add(1, Ordering::Relaxed);
                }
                done += 1;
            }
            Answer::Refused(kind) => local.refused(live, op, &kind),
            Answer::Failed { kind, .. } => local.error(live, op, &kind),
        }
    }
    done
}

pub async fn run(cmd: &OmniCmd) -> Result<RunReport, Error> {
    let pace = pace(&cmd.load)?;
    let seed = seed(&cmd.load);
    if cmd.skus == 0 || cmd.stock == 0 || cmd.pickers == 0 {
        return Err(err("--skus, --stock and --pickers must be at least 1"));
    }
    let system = System::open(&cmd.load, false).await?;
    let result = run_on(&system, cmd, pace, seed).await;
    system.close().await;
    result
}

async fn run_on(
    system: &System,
    cmd: &OmniCmd,
    pace: crate::load::Pace,
    seed: u64,
) -> Result<RunReport, Error> {
    let omni = match &system.target {
        Target::InProcess(c) => Omni::InProcess(c.clone(), Arc::new(OnceLock::new())),
        Target::Http(http) => Omni::Http(http.clone()),
        _ => return Err(err("omnichannel runs on Conductor only")),
    };
    let skus: Vec<String> = (0..cmd.skus)
        .map(|i| format!("OMNI{}-{i}", seed % 100_000))
        .collect();
    omni.setup(&skus, cmd.stock).await?;
    let shop = Arc::new(Shop {
        omni,
        skus: skus.clone(),
        orders: Mutex::new(Vec::new()),
        cancelled: AtomicU64::new(0),
        placed: AtomicU64::new(0),
        short_picks: AtomicU64::new(0),
    });
    let recorder = Arc::new(Recorder::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let bar = sampler(
        recorder.clone(),
        pace.duration,
        system.label.clone(),
        cmd.load.quiet,
        done.clone(),
    );
    // The workers run from the start, through the shoppers' load and the drain after it.
    let working = Arc::new(AtomicBool::new(true));
    let mut workers = Vec::new();
    let pickers = cmd.pickers;
    for (i, (sp, ..)) in NETWORK.iter().enumerate() {
        for k in 0..cmd.pickers {
            let (shop, recorder, working) = (shop.clone(), recorder.clone(), working.clone());
            let mut rng = Rng::new(seed ^ ((i * 97 + k) as u64 + 1));
            workers.push(tokio::spawn(async move {
                let mut local = Local::default();
                while working.load(Ordering::Relaxed) {
                    if work_once(
                        &shop,
                        sp,
                        &mut rng,
                        &mut local,
                        &recorder.live,
                        (k, pickers),
                    )
                    .await
                        == 0
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                recorder.merge(local);
            }));
        }
    }
    let shoppers: Vec<Shopper> = (0..pace.concurrency)
        .map(|id| Shopper {
            shop: shop.clone(),
            rng: Rng::new(seed.wrapping_add(id as u64 * 7919)),
            n: 0,
            id,
        })
        .collect();
    let elapsed = drive(shoppers, pace, recorder.clone(), stop).await;
    // Drain: follow every order to shipped (or cancelled: a short pick with nothing left to
    // re-source may cancel a line).
    let orders: Vec<(String, Lines)> = shop
        .orders
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let drain_start = Instant::now();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut shipped: Vec<(String, Lines)> = Vec::new();
    let mut pending = orders.clone();
    // Orders nobody asked to cancel that ended cancelled (named in the report, to look into).
    let mut cancelled_later: Vec<String> = Vec::new();
    while !pending.is_empty() && drain_start.elapsed() < DRAIN_TIMEOUT {
        let mut still = Vec::new();
        for (id, lines) in pending {
            match shop.omni.order_status(&id).await.as_deref() {
                Ok("shipped") | Ok("delivered") => shipped.push((id, lines)),
                Ok("cancelled") => {
                    *statuses.entry("cancelled".into()).or_default() += 1;
                    cancelled_later.push(id);
                }
                _ => still.push((id, lines)),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let drained = drain_start.elapsed();
    // Returns of a share of the shipped orders, received at a store.
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut local = Local::default();
    let mut restocked: BTreeMap<String, u64> = BTreeMap::new();
    for (id, lines) in &shipped {
        if rng.unit() >= RETURN_SHARE {
            continue;
        }
        let sku = &lines[0].0;
        let store = STORES[rng.below(2) as usize];
        let t = Instant::now();
        match shop.omni.open_return(id, sku, store).await {
            Answer::Ok(ret) => {
                local.ok(&recorder.live, "return", t.elapsed());
                let t = Instant::now();
                match shop.omni.receive_return(&ret).await {
                    Answer::Ok(()) => {
                        local.ok(&recorder.live, "receive-return", t.elapsed());
                        *restocked.entry(sku.clone()).or_default() += 1;
                    }
                    Answer::Refused(kind) => local.refused(&recorder.live, "receive-return", &kind),
                    Answer::Failed { kind, .. } => {
                        local.error(&recorder.live, "receive-return", &kind)
                    }
                }
            }
            Answer::Refused(kind) => local.refused(&recorder.live, "return", &kind),
            Answer::Failed { kind, .. } => local.error(&recorder.live, "return", &kind),
        }
    }
    recorder.merge(local);
    // Let the workers put the restocked units away, then stop them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    working.store(false, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = bar.await;

    let levels = system.target.levels(&skus).await?;
    let mut verdict = Verdict {
        passed: true,
        rule: Some(
            "every order shipped or cancelled, no oversell, no stray hold, no unit from nowhere"
                .into(),
        ),
        ..Verdict::default()
    };
    if !pending.is_empty() {
        verdict.passed = false;
        verdict.problems.push(format!(
            "{} orders not shipped after {} s of drain, e.g. {}",
            pending.len(),
            DRAIN_TIMEOUT.as_secs(),
            pending[0].0
        ));
    }
    let initial = cmd.stock * NETWORK.len() as u64;
    for level in &levels {
        let promised = level.held + level.allocated;
        let back = restocked.get(&level.sku).copied().unwrap_or(0);
        let problem = if promised > level.on_hand {
            Some(format!(
                "oversold: held+allocated {promised} > on_hand {}",
                level.on_hand
            ))
        } else if level.available + promised != level.on_hand {
            Some(format!(
                "available {} + held+allocated {promised} ≠ on_hand {}",
                level.available, level.on_hand
            ))
        } else if level.held > 0 {
            Some(format!(
                "{} units still held after every order was placed or cancelled",
                level.held
            ))
        } else if level.on_hand > initial + back {
            Some(format!(
                "on_hand {} > initial {initial} + restocked {back}",
                level.on_hand
            ))
        } else {
            None
        };
        if let Some(p) = &problem {
            verdict.passed = false;
            verdict.problems.push(format!("{}: {p}", level.sku));
        }
        verdict.skus.push(SkuCheck {
            sku: level.sku.clone(),
            initial,
            acknowledged: 0,
            in_doubt: 0,
            on_hand: level.on_hand,
            held_and_allocated: promised,
            available: level.available,
            ok: problem.is_none(),
            problem,
        });
    }
    let (local, timeline) = recorder.take();
    let mut report = RunReport::new(
        "omnichannel",
        &system.label,
        true,
        &pace,
        elapsed,
        "web-order",
        local,
        timeline,
        verdict,
        seed,
    );
    *statuses.entry("shipped".into()).or_default() += shipped.len() as u64;
    report.notes.push(format!(
        "{} orders placed, {} cancelled at once, {} shipped, {} cancelled later, {} short picks, {} returns restocked; drained in {:.1} s",
        shop.placed.load(Ordering::Relaxed),
        shop.cancelled.load(Ordering::Relaxed),
        shipped.len(),
        statuses.get("cancelled").copied().unwrap_or(0),
        shop.short_picks.load(Ordering::Relaxed),
        restocked.values().sum::<u64>(),
        drained.as_secs_f64()
    ));
    if !cancelled_later.is_empty() {
        report.notes.push(format!(
            "cancelled without a cancel request, e.g.: {}",
            cancelled_later[..cancelled_later.len().min(5)].join(", ")
        ));
    }
    Ok(report)
}
