//! `--demo`: a small French network with stock, seeded into an empty store, and a background
//! shopper so that the dashboard shows flow. Simulated warehouse workers are switched on by the
//! config (see [`crate::config`]).

use std::time::Duration;

use conductor_actors::orchestrator::StockPointSpec;
use conductor_actors::Conductor;
use conductor_engine::checkout::ReserveRequest;
use conductor_engine::ids::{Code, Qty, SkuId, StockPointId};
use conductor_engine::inventory::{AdjustReason, Adjustment};
use conductor_engine::network::{Capability, Channel, Location, StockPointKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::{count, METRICS};

/// The demo's SKUs: 20 codes.
pub const SKUS: [&str; 20] = [
    "TSHIRT-BLK-M",
    "TSHIRT-WHT-M",
    "HOODIE-GRY-L",
    "JEANS-32-32",
    "SNEAKER-42",
    "SNEAKER-43",
    "CAP-RED",
    "SOCKS-3PK",
    "JACKET-RAIN-M",
    "SCARF-WOOL",
    "BAG-TOTE",
    "BELT-BRN-90",
    "WATCH-STEEL",
    "SUNGLASS-AV",
    "BOTTLE-750",
    "MUG-ENAMEL",
    "LAMP-DESK",
    "BOOK-ATLAS",
    "HEADPHONE-BT",
    "CHARGER-65W",
];

struct Site {
    code: &'static str,
    kind: StockPointKind,
    name: &'static str,
    lat: f64,
    lon: f64,
    priority: u32,
}

const SITES: [Site; 8] = [
    Site {
        code: "WH-PAR",
        kind: StockPointKind::Warehouse,
        name: "Paris Nord DC",
        lat: 49.00,
        lon: 2.52,
        priority: 1,
    },
    Site {
        code: "WH-LYS",
        kind: StockPointKind::Warehouse,
        name: "Lyon Saint-Exupéry DC",
        lat: 45.72,
        lon: 5.08,
        priority: 2,
    },
    Site {
        code: "WH-LIL",
        kind: StockPointKind::Warehouse,
        name: "Lille Lesquin DC",
        lat: 50.57,
        lon: 3.10,
        priority: 3,
    },
    Site {
        code: "ST-PAR-OPERA",
        kind: StockPointKind::Store,
        name: "Paris Opéra store",
        lat: 48.87,
        lon: 2.33,
        priority: 5,
    },
    Site {
        code: "ST-MRS",
        kind: StockPointKind::Store,
        name: "Marseille Vieux-Port store",
        lat: 43.30,
        lon: 5.37,
        priority: 5,
    },
    Site {
        code: "ST-BOD",
        kind: StockPointKind::Store,
        name: "Bordeaux Sainte-Catherine store",
        lat: 44.84,
        lon: -0.57,
        priority: 5,
    },
    Site {
        code: "ST-NTE",
        kind: StockPointKind::Store,
        name: "Nantes Commerce store",
        lat: 47.21,
        lon: -1.56,
        priority: 5,
    },
    Site {
        code: "DS-ACME",
        kind: StockPointKind::Dropship,
        name: "Acme drop-ship (Strasbourg)",
        lat: 48.58,
        lon: 7.75,
        priority: 9,
    },
];

/// A tiny deterministic generator; the demo needs variety, not cryptography.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn code(text: &str) -> Option<Code> {
    Code::parse(text).ok()
}

/// Seeds (when the store is empty) and starts the shopper.
pub async fn start(c: Conductor, stop: watch::Receiver<bool>) {
    if c.network().is_empty() {
        if let Err(e) = seed(&c).await {
            warn!(error = %e, "demo seed failed");
            return;
        }
        info!(
            stock_points = SITES.len(),
            skus = SKUS.len(),
            "demo network seeded"
        );
    }
    tokio::spawn(shopper(c, stop));
}

async fn seed(c: &Conductor) -> Result<(), String> {
    let mut rng = XorShift(0x5eed_cafe);
    let mut ids: Vec<(StockPointId, StockPointKind)> = Vec::new();
    for site in &SITES {
        let store = site.kind == StockPointKind::Store;
        let spec = StockPointSpec {
            code: code(site.code).ok_or("bad site code")?,
            kind: site.kind,
            name: site.name.into(),
            location: Location {
                lat: site.lat,
                lon: site.lon,
            },
            priority: site.priority,
            channels: if store {
                vec![Channel::Web, Channel::Store]
            } else {
                vec![Channel::Web, Channel::Marketplace, Channel::B2b]
            },
            capabilities: if store {
                vec![Capability::Ship, Capability::Pickup, Capability::Returns]
            } else {
                vec![Capability::Ship, Capability::Returns]
            },
            cost_per_shipment: if store { 900 } else { 450 },
            tags: vec![],
        };
        let sp = c
            .put_stock_point(spec)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        ids.push((sp.id, site.kind));
    }
    // The actors of new stock points start asynchronously.
    for (sp, _) in &ids {
        for _ in 0..300 {
            if c.inventory(*sp).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let codes: Vec<Code> = SKUS.iter().filter_map(|s| code(s)).collect();
    let skus = c
        .define_skus(codes)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    for (sp, kind) in &ids {
        for sku in &skus {
            let qty = match kind {
                StockPointKind::Warehouse => 200 + rng.below(400),
                StockPointKind::Store => rng.below(25),
                StockPointKind::Dropship => 1000,
            };
            stock(c, *sp, *sku, qty).await?;
        }
    }
    let now = c.now();
    for (i, sku) in skus.iter().enumerate().step_by(4) {
        let (sp, _) = ids[i % 3];
        let eta = now.plus_seconds(86_400 * (2 + i as u64 % 5));
        let _ = c
            .expect_incoming(sp, *sku, Qty(100 + 10 * i as u64), eta)
            .await;
    }
    Ok(())
}

async fn stock(c: &Conductor, sp: StockPointId, sku: SkuId, qty: u64) -> Result<(), String> {
    c.adjust(sp, sku, Adjustment::Set(Qty(qty)), AdjustReason::Adjustment)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Places an order every few hundred milliseconds, holds and releases some carts, and restocks
/// warehouses that run low, until shutdown.
async fn shopper(c: Conductor, mut stop: watch::Receiver<bool>) {
    let mut rng = XorShift(0x0dd_ba11);
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        n += 1;
        let lines: Vec<(Code, Qty)> = (0..1 + rng.below(3))
            .filter_map(|_| {
                code(SKUS[rng.below(SKUS.len() as u64) as usize])
                    .map(|c| (c, Qty(1 + rng.below(2))))
            })
            .fold(Vec::new(), |mut acc, line| {
                if !acc.iter().any(|(c, _)| *c == line.0) {
                    acc.push(line);
                }
                acc
            });
        let request = ReserveRequest {
            channel: if rng.below(5) == 0 {
                Channel::Marketplace
            } else {
                Channel::Web
            },
            lines,
            ship_to: Some(Location {
                lat: 43.3 + rng.below(700) as f64 / 100.0,
                lon: -1.5 + rng.below(900) as f64 / 100.0,
            }),
            pickup_at: None,
            ttl_seconds: 30,
            allow_split: true,
            allow_partial: false,
            allow_backorder: false,
            customer_ref: Some(format!("demo-{}", rng.below(500))),
            tags: vec![],
            idempotency: None,
        };
        if n.is_multiple_of(4) {
            // An abandoned cart: held, then let go.
            if let Ok(Ok(r)) = c.reserve(request).await {
                count(&METRICS.reservations_created);
                let _ = c.release(r.id).await;
            }
        } else if let Ok(Ok(_)) = c.place_order(request).await {
            // Counted like API orders, so the dashboard's throughput shows the demo's flow.
            count(&METRICS.orders_created);
        }
        if n.is_multiple_of(50) {
            restock(&c).await;
        }
    }
}

async fn restock(c: &Conductor) {
    let network = c.network();
    for sp in network
        .iter()
        .filter(|sp| sp.kind == StockPointKind::Warehouse)
    {
        for sku in SKUS {
            let Some(id) = c.board().sku_id(sku) else {
                continue;
            };
            let low = c.board().with_figures(id, |f| {
                f.iter()
                    .find(|f| f.stock_point == sp.id)
                    .map(|f| f.available.0 < 50)
            });
            if low == Some(true) {
                let _ = c
                    .adjust(sp.id, id, Adjustment::Delta(300), AdjustReason::Adjustment)
                    .await;
            }
        }
    }
}
