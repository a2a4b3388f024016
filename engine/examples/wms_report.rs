//! The WMS algorithms' report: routing, batching, cartonization and forecasting on generated
//! instances, printed as markdown. Deterministic: a fixed seed drives a splitmix64 generator,
//! so two runs print the same tables (except the timing column).
//!
//! `cargo run --release -p conductor-engine --example wms_report > engine/src/fulfilment/REPORT.md`

use std::time::Instant;

use conductor_engine::fulfilment::batching::{
    batch_orders, insert_order, savings_batching, seed_batching, single_order_picking, BatchOrder,
    OpenTour, PickLine, ToteCapacity,
};
use conductor_engine::fulfilment::cartonization::{cartonize, BoxType, Dims, PackItem};
use conductor_engine::fulfilment::forecast::{
    forecast, mase, mean_error, sba, ses, DemandClass, ForecastOptions,
};
use conductor_engine::fulfilment::layout::{Layout, Location};
use conductor_engine::fulfilment::putaway::bins_by_depot_distance;
use conductor_engine::fulfilment::routing::{route, RoutingMethod};
use conductor_engine::ids::{FulfilmentId, SkuId};
use conductor_engine::time::Timestamp;

const SEED: u64 = 0x5EED_2024;
const ROUTING_INSTANCES: usize = 200;

/// splitmix64: tiny, fast, and good enough for generating test instances.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0); the modulo bias is negligible for the small n used here.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi - lo + 1) as usize) as u32
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller.
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slotting {
    Random,
    Abc,
}

impl Slotting {
    fn name(self) -> &'static str {
        match self {
            Slotting::Random => "random",
            Slotting::Abc => "ABC",
        }
    }
}

/// Draws a pick location. ABC: 80% of picks from the nearest 20% of bins, 15% from the next 30%,
/// 5% from the farthest half.
fn draw_location(rng: &mut SplitMix64, ranked: &[Location], slotting: Slotting) -> Location {
    let n = ranked.len();
    match slotting {
        Slotting::Random => ranked[rng.below(n)],
        Slotting::Abc => {
            let (a, b) = (n / 5, n / 2);
            let roll = rng.below(100);
            let (lo, hi) = if roll < 80 {
                (0, a)
            } else if roll < 95 {
                (a, b)
            } else {
                (b, n)
            };
            ranked[lo + rng.below(hi - lo)]
        }
    }
}

fn metres(cm: f64) -> String {
    format!("{:.1}", cm / 100.0)
}

fn routing_table(rng: &mut SplitMix64) {
    let layout = Layout::standard_grid();
    let ranked = bins_by_depot_distance(&layout);
    let methods = [
        RoutingMethod::SShape,
        RoutingMethod::LargestGap,
        RoutingMethod::Combined,
        RoutingMethod::Optimal,
    ];
    println!("## 1. Routing\n");
    println!(
        "Standard grid: {} aisles × {} slots × 2 sides, 3 m between aisles, 1 m slots, 2 m cross \
         aisles, depot in front of aisle 0. {ROUTING_INSTANCES} pick lists per row. Mean tour \
         length in metres; in brackets, the excess over optimal. ABC slotting draws 80% of picks \
         from the nearest 20% of bins.\n",
        layout.aisles(),
        layout.slots_per_aisle()
    );
    println!("| slotting | lines | S-shape | largest gap | combined | optimal (R&R) | optimal µs/route |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for slotting in [Slotting::Random, Slotting::Abc] {
        for lines in [5, 10, 20, 30] {
            let mut totals = [0u64; 4];
            let mut optimal_ns = 0u128;
            for _ in 0..ROUTING_INSTANCES {
                let picks: Vec<Location> = (0..lines)
                    .map(|_| draw_location(rng, &ranked, slotting))
                    .collect();
                for (m, &method) in methods.iter().enumerate() {
                    let started = Instant::now();
                    let r =
                        route(&layout, &picks, method).expect("generated picks are in the layout");
                    if method == RoutingMethod::Optimal {
                        optimal_ns += started.elapsed().as_nanos();
                    }
                    totals[m] += r.distance_cm;
                }
            }
            let mean = |t: u64| t as f64 / ROUTING_INSTANCES as f64;
            let optimal = mean(totals[3]);
            let cell = |t: u64| {
                format!(
                    "{} (+{:.1}%)",
                    metres(mean(t)),
                    (mean(t) / optimal - 1.0) * 100.0
                )
            };
            println!(
                "| {} | {lines} | {} | {} | {} | {} | {:.1} |",
                slotting.name(),
                cell(totals[0]),
                cell(totals[1]),
                cell(totals[2]),
                metres(optimal),
                optimal_ns as f64 / ROUTING_INSTANCES as f64 / 1000.0,
            );
        }
    }
    println!();
}

fn generate_orders(rng: &mut SplitMix64, ranked: &[Location], count: usize) -> Vec<BatchOrder> {
    (0..count)
        .map(|i| {
            // 1–4 lines, skewed to small orders as in e-commerce.
            let lines = [1, 1, 1, 2, 2, 3, 4][rng.below(7)];
            BatchOrder {
                id: FulfilmentId(i as u64 + 1),
                lines: (0..lines)
                    .map(|_| PickLine {
                        location: draw_location(rng, ranked, Slotting::Abc),
                        volume_cm3: u64::from(rng.range(500, 4_000)),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn batching_table(rng: &mut SplitMix64) {
    const INSTANCES: usize = 20;
    const ORDERS: usize = 60;
    const ARRIVAL_MS: u64 = 20_000;
    const TOUR_OPEN_MS: u64 = 300_000;
    let layout = Layout::standard_grid();
    let ranked = bins_by_depot_distance(&layout);
    let tote = ToteCapacity {
        volume_cm3_max: Some(30_000),
        lines_max: Some(12),
    };
    // (name, total distance, tours)
    let mut rows: Vec<(&str, u64, usize)> = vec![
        ("single-order picking, first come first served", 0, 0),
        ("FCFS batching (fill the tote in arrival order)", 0, 0),
        ("seed batching", 0, 0),
        ("Clarke–Wright savings", 0, 0),
        ("best of seed and savings", 0, 0),
        ("waveless insertion (20 s arrivals, 5 min cut-off)", 0, 0),
    ];
    for _ in 0..INSTANCES {
        let orders = generate_orders(rng, &ranked, ORDERS);
        let mut add = |row: usize, distance: u64, tours: usize| {
            rows[row].1 += distance;
            rows[row].2 += tours;
        };
        let single = single_order_picking(&layout, &orders, &tote).expect("valid orders");
        add(0, single.distance_cm, single.batches.len());
        // FCFS batching: the baseline most WMSs start from.
        let mut tours: Vec<Vec<Location>> = Vec::new();
        let (mut volume, mut lines) = (u64::MAX, usize::MAX);
        for order in &orders {
            let v: u64 = order.lines.iter().map(|l| l.volume_cm3).sum();
            let fits_volume = volume.saturating_add(v) <= tote.volume_cm3_max.unwrap_or(u64::MAX);
            let fits_lines =
                lines.saturating_add(order.lines.len()) <= tote.lines_max.unwrap_or(usize::MAX);
            if !(fits_volume && fits_lines) {
                tours.push(Vec::new());
                volume = 0;
                lines = 0;
            }
            volume += v;
            lines += order.lines.len();
            tours
                .last_mut()
                .expect("a tour was opened")
                .extend(order.lines.iter().map(|l| l.location));
        }
        let fcfs: u64 = tours
            .iter()
            .map(|t| {
                route(&layout, t, RoutingMethod::Optimal)
                    .expect("valid")
                    .distance_cm
            })
            .sum();
        add(1, fcfs, tours.len());
        let seed = seed_batching(&layout, &orders, &tote).expect("valid orders");
        add(2, seed.distance_cm, seed.batches.len());
        let savings = savings_batching(&layout, &orders, &tote).expect("valid orders");
        add(3, savings.distance_cm, savings.batches.len());
        let best = batch_orders(&layout, &orders, &tote).expect("valid orders");
        add(4, best.distance_cm, best.batches.len());
        // Waveless: orders arrive one at a time and join an open tour or open their own.
        let mut open: Vec<OpenTour> = Vec::new();
        for (i, order) in orders.iter().enumerate() {
            let now = Timestamp(i as u64 * ARRIVAL_MS);
            match insert_order(&layout, &open, order, &tote, now).expect("valid order") {
                conductor_engine::fulfilment::batching::Insertion::Existing { tour, .. } => {
                    open[tour].orders.push(order.clone())
                }
                conductor_engine::fulfilment::batching::Insertion::NewTour { .. } => {
                    open.push(OpenTour {
                        orders: vec![order.clone()],
                        closes_at: now.plus_ms(TOUR_OPEN_MS),
                    })
                }
            }
        }
        let waveless: u64 = open
            .iter()
            .map(|t| {
                let picks: Vec<Location> = t
                    .orders
                    .iter()
                    .flat_map(|o| o.lines.iter().map(|l| l.location))
                    .collect();
                route(&layout, &picks, RoutingMethod::Optimal)
                    .expect("valid")
                    .distance_cm
            })
            .sum();
        add(5, waveless, open.len());
    }
    println!("## 2. Batching\n");
    println!(
        "{INSTANCES} instances of {ORDERS} orders (1–4 lines, ABC slotting, 0.5–4 l per line) on \
         the standard grid; tote 30 l and 12 lines. Every tour is routed optimally. Saving is \
         against single-order picking.\n"
    );
    println!("| method | tours / instance | travel per order (m) | saving |");
    println!("| --- | ---: | ---: | ---: |");
    let single_total = rows[0].1 as f64;
    for (name, total, tours) in &rows {
        println!(
            "| {name} | {:.1} | {} | {:.1}% |",
            *tours as f64 / INSTANCES as f64,
            metres(*total as f64 / (INSTANCES * ORDERS) as f64),
            (1.0 - *total as f64 / single_total) * 100.0
        );
    }
    println!();
}

fn cartonization_table(rng: &mut SplitMix64) {
    const INSTANCES: usize = 200;
    const ITEMS: usize = 20;
    let spec = |name: &str, l, w, h, kg: u32| BoxType {
        name: name.into(),
        inner: Dims::new(l, w, h),
        max_weight_g: kg * 1000,
    };
    let boxes = vec![
        spec("XS", 200, 150, 100, 5),
        spec("S", 300, 200, 150, 10),
        spec("M", 400, 300, 200, 15),
        spec("L", 500, 400, 300, 20),
        spec("XL", 600, 400, 400, 25),
    ];
    let mut cartons = 0usize;
    let mut bound = 0usize;
    let mut volume_bound = 0usize;
    let mut at_bound = 0usize;
    let mut fill = 0.0;
    let mut times_us: Vec<f64> = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        let items: Vec<PackItem> = (0..ITEMS)
            .map(|i| PackItem {
                sku: SkuId(i as u32),
                dims: Dims::new(rng.range(50, 350), rng.range(40, 250), rng.range(30, 200)),
                weight_g: rng.range(50, 1_200),
                qty: 1,
                keep_upright: rng.below(5) == 0,
            })
            .collect();
        let started = Instant::now();
        let packing = cartonize(&boxes, &items).expect("every generated item fits the XL box");
        times_us.push(started.elapsed().as_secs_f64() * 1e6);
        cartons += packing.cartons.len();
        bound += packing.lower_bound;
        volume_bound += packing.volume_lower_bound;
        at_bound += usize::from(packing.cartons.len() == packing.lower_bound);
        fill += packing.fill_rate;
    }
    times_us.sort_by(f64::total_cmp);
    let p = |q: f64| times_us[((times_us.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!("## 3. Cartonization\n");
    println!(
        "{INSTANCES} shipments of {ITEMS} random items (50–350 × 40–250 × 30–200 mm, 0.05–1.2 kg, \
         one in five \"this side up\"), box set XS–XL (5 sizes, 5–25 kg, largest 600 × 400 × \
         400 mm). First-fit decreasing, extreme-point placement, downsizing. Volume bound: total \
         item volume over the largest box, rounded up; the combined bound also counts weight. \
         Fill rate: item volume over the volume of the cartons chosen. The volume bound ignores \
         geometry, so it is loose for bulky items.\n"
    );
    println!("| cartons / shipment | volume bound / shipment | combined bound / shipment | shipments at the combined bound | mean fill rate | p50 time | p99 time |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {:.2} | {:.2} | {:.2} | {:.0}% | {:.1}% | {:.0} µs | {:.0} µs |",
        cartons as f64 / INSTANCES as f64,
        volume_bound as f64 / INSTANCES as f64,
        bound as f64 / INSTANCES as f64,
        at_bound as f64 / INSTANCES as f64 * 100.0,
        fill / INSTANCES as f64 * 100.0,
        p(0.5),
        p(0.99),
    );
    println!();
}

/// Accuracy over many series: MASE and mean error averaged per series; relative bias pooled
/// (total error over total demand), because per-series ratios explode on series that happen to
/// have almost no demand in the test window.
#[derive(Default)]
struct Score {
    series: usize,
    mase: f64,
    mean_error: f64,
    total_error: f64,
    total_demand: f64,
}

impl Score {
    fn add(&mut self, actual: &[u64], predicted: &[f64], training: &[u64]) {
        if let (Some(m), Some(e)) = (
            mase(actual, predicted, training),
            mean_error(actual, predicted),
        ) {
            self.series += 1;
            self.mase += m;
            self.mean_error += e;
            self.total_error += e * actual.len() as f64;
            self.total_demand += actual.iter().sum::<u64>() as f64;
        }
    }

    fn row(&self, kind: &str, method: &str) {
        let n = self.series.max(1) as f64;
        println!(
            "| {kind} | {method} | {} | {:.3} | {:+.3} | {:+.1}% |",
            self.series,
            self.mase / n,
            self.mean_error / n,
            self.total_error / self.total_demand.max(1.0) * 100.0
        );
    }
}

/// Draws one period's demand.
type Draw = fn(&mut SplitMix64) -> u64;

fn forecast_table(rng: &mut SplitMix64) {
    const SERIES: usize = 200;
    const TRAIN: usize = 80;
    const TEST: usize = 24;
    let options = ForecastOptions { alpha: 0.1 };
    println!("## 4. Forecasting\n");
    println!(
        "{SERIES} series per kind, {TRAIN} training + {TEST} test periods. Forecasts are rolling \
         one step ahead (each test period is forecast from the periods before it). MASE scales \
         by the naive forecast's in-sample error, so naive scores about 1; mean error is \
         forecast − actual in units, relative bias is total error over total demand, pooled over the series. α = 0.1.\n"
    );
    println!("| series | method | series scored | MASE | mean error | relative bias |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let kinds: [(&str, Draw); 3] = [
        ("smooth (N(20, 4²))", |rng| {
            (20.0 + 4.0 * rng.normal()).round().max(0.0) as u64
        }),
        ("intermittent (p = 0.25, size 3–5)", |rng| {
            if rng.below(4) == 0 {
                u64::from(rng.range(3, 5))
            } else {
                0
            }
        }),
        ("lumpy (p = 0.25, size 1 or 10–60)", |rng| {
            // Mostly single units, sometimes a large order: CV² ≈ 2.4.
            match (rng.below(4), rng.below(10)) {
                (0, 0..=6) => 1,
                (0, _) => u64::from(rng.range(10, 60)),
                _ => 0,
            }
        }),
    ];
    for (kind, draw) in kinds {
        let (mut chosen, mut naive, mut with_ses, mut with_sba) = (
            Score::default(),
            Score::default(),
            Score::default(),
            Score::default(),
        );
        let mut classes = [0usize; 4];
        for _ in 0..SERIES {
            let history: Vec<u64> = (0..TRAIN + TEST).map(|_| draw(rng)).collect();
            let (training, actual) = history.split_at(TRAIN);
            let Ok(f) = forecast(&history[..TRAIN], &options) else {
                continue;
            };
            classes[match f.profile.class {
                DemandClass::Smooth => 0,
                DemandClass::Erratic => 1,
                DemandClass::Intermittent => 2,
                DemandClass::Lumpy => 3,
            }] += 1;
            // Refit on the whole series: fitted[t] only uses periods before t.
            let (ses_fit, _) = ses(&history, options.alpha).expect("valid history");
            let (sba_fit, _) = sba(&history, options.alpha).expect("valid history");
            let chosen_fit = match f.method {
                conductor_engine::fulfilment::forecast::ForecastMethod::Ses => &ses_fit,
                conductor_engine::fulfilment::forecast::ForecastMethod::Sba => &sba_fit,
            };
            let naive_fit: Vec<f64> = history[TRAIN - 1..TRAIN + TEST - 1]
                .iter()
                .map(|&d| d as f64)
                .collect();
            chosen.add(actual, &chosen_fit[TRAIN..], training);
            naive.add(actual, &naive_fit, training);
            with_ses.add(actual, &ses_fit[TRAIN..], training);
            with_sba.add(actual, &sba_fit[TRAIN..], training);
        }
        let label = format!(
            "{kind}; classified smooth/erratic/intermittent/lumpy {}/{}/{}/{}",
            classes[0], classes[1], classes[2], classes[3]
        );
        chosen.row(&label, "by class (SES or SBA)");
        naive.row(kind, "naive (last period)");
        with_ses.row(kind, "SES always");
        with_sba.row(kind, "SBA always");
    }
    println!();
}

fn main() {
    let mut rng = SplitMix64(SEED);
    println!("# WMS algorithms report\n");
    println!(
        "Generated by `cargo run --release -p conductor-engine --example wms_report` \
         (seed {SEED:#x}, splitmix64). Timings are wall-clock on the machine that ran it; \
         everything else is deterministic.\n"
    );
    routing_table(&mut rng);
    batching_table(&mut rng);
    cartonization_table(&mut rng);
    forecast_table(&mut rng);
}
