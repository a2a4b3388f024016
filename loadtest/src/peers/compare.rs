//! `compare`: Conductor (in-process and over HTTP) and the peers, from the same workload (one
//! hot SKU, the same stock, C buyers), the same generator, clock and histograms; every
//! configuration run `--runs` times, interleaved (A B C A B C, so drift hits all alike); the
//! invariant checked after every run, a violation voiding that figure; non-durable modes in
//! their own table; the disk's fsync latency recorded; ratios in one table.

use std::sync::Arc;

use serde::Serialize;

use crate::cli::{CompareCmd, SaleArgs};
use crate::fsync::{measure, FsyncFigures};
use crate::peers::postgres::{PgServer, PgStore};
use crate::peers::redis::{RedisServer, RedisStore};
use crate::peers::service::ServiceProcess;
use crate::report::{plot, write_json, RunReport};
use crate::run::{flash_sale, pace, seed, System};
use crate::server::find_binary;
use crate::target::{err, Error, Http, Target};

/// Samples of the fsync probe before the runs.
const FSYNC_SAMPLES: usize = 200;

/// One configuration of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    ConductorInProcess,
    ConductorHttp,
    RedisLua { durable: bool },
    RedisService { durable: bool },
    Postgres,
    PostgresService,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::ConductorInProcess => "conductor in-process",
            Config::ConductorHttp => "conductor http",
            Config::RedisLua { durable: true } => "redis-lua (appendfsync always)",
            Config::RedisLua { durable: false } => "redis-lua (appendfsync everysec)",
            Config::RedisService { durable: true } => "redis service http (always)",
            Config::RedisService { durable: false } => "redis service http (everysec)",
            Config::Postgres => "postgres (synchronous_commit=on)",
            Config::PostgresService => "postgres service http",
        }
    }

    fn durable(self) -> bool {
        !matches!(
            self,
            Config::RedisLua { durable: false } | Config::RedisService { durable: false }
        )
    }
}

/// The peers' servers and services, started once for all runs.
#[derive(Default)]
struct Peers {
    redis_always: Option<(RedisServer, ServiceProcess)>,
    redis_everysec: Option<(RedisServer, ServiceProcess)>,
    postgres: Option<(PgServer, ServiceProcess)>,
}

/// A configuration's runs, summarized.
#[derive(Serialize)]
struct Row {
    system: String,
    durable: bool,
    runs: usize,
    /// Mean holds/s of the valid runs; `None` when every run was voided.
    holds_per_s: Option<f64>,
    holds_per_s_min: f64,
    holds_per_s_max: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    voided: usize,
}

#[derive(Serialize)]
struct Ratio {
    what: String,
    goal: Option<f64>,
    ratio: Option<f64>,
    p99_lower: Option<bool>,
    met: Option<bool>,
}

#[derive(Serialize)]
struct Comparison {
    machine: String,
    fsync: FsyncFigures,
    concurrency: usize,
    stock: u64,
    duration_s: f64,
    model: String,
    rows: Vec<Row>,
    ratios: Vec<Ratio>,
    runs: Vec<RunReport>,
}

pub async fn run(cmd: &CompareCmd) -> Result<bool, Error> {
    let pace = pace(&cmd.load)?;
    let seed = seed(&cmd.load);
    let runs = cmd.runs.max(1);
    let tmp = std::env::temp_dir();
    let fsync = measure(&tmp, FSYNC_SAMPLES)?;
    println!(
        "compare: seed {seed}, {} buyers, 1 hot SKU, {} units, {runs} runs each, interleaved",
        pace.concurrency, cmd.stock
    );
    println!("{}", fsync.summary());

    let mut configs = vec![Config::ConductorInProcess, Config::ConductorHttp];
    let mut peers = Peers::default();
    let wants = |name: &str| cmd.peers.iter().any(|p| p == name);
    if wants("redis") {
        let server = RedisServer::start("always", None).await?;
        let service = ServiceProcess::start("redis", &server.url(), cmd.redis_pool).await?;
        peers.redis_always = Some((server, service));
        configs.push(Config::RedisLua { durable: true });
        configs.push(Config::RedisService { durable: true });
        if !cmd.durable_only {
            let server = RedisServer::start("everysec", None).await?;
            let service = ServiceProcess::start("redis", &server.url(), cmd.redis_pool).await?;
            peers.redis_everysec = Some((server, service));
            configs.push(Config::RedisLua { durable: false });
            configs.push(Config::RedisService { durable: false });
        }
    }
    if wants("postgres") {
        let server = PgServer::start(None).await?;
        // The schema must exist before the service prepares its statement.
        PgStore {
            conn_str: server.conn_str(),
        }
        .setup(&[], 0)
        .await?;
        let service = ServiceProcess::start("postgres", &server.conn_str(), cmd.pg_pool).await?;
        peers.postgres = Some((server, service));
        configs.push(Config::Postgres);
        configs.push(Config::PostgresService);
    }
    if let Some(unknown) = cmd
        .peers
        .iter()
        .find(|p| !matches!(p.as_str(), "redis" | "postgres" | "none" | ""))
    {
        return Err(err(format!("unknown peer {unknown}: redis, postgres")));
    }
    if !cmd.only.is_empty() {
        configs.retain(|c| cmd.only.iter().any(|o| c.label().contains(o.as_str())));
    }
    let sale = SaleArgs {
        skus: 1,
        stock: cmd.stock,
        max_qty: 1,
        confirm_share: 0.0,
        ttl: 3_600,
        wait_expiry: false,
    };
    let mut reports: Vec<RunReport> = Vec::new();
    for round in 0..runs {
        for &config in &configs {
            let system = open(config, &peers, cmd).await?;
            // Same seed for every system in a round: the same sequence of choices.
            let result = flash_sale(
                &system,
                "compare",
                &sale,
                pace,
                seed.wrapping_add(round as u64),
                None,
                cmd.load.quiet,
            )
            .await;
            system.close().await;
            let mut report = result?;
            report.durable = config.durable();
            report.notes.push(format!("run {} of {runs}", round + 1));
            println!(
                "  run {}/{runs} {:<34} {:>9.0} holds/s  p99 {:>7} µs  invariant {}",
                round + 1,
                config.label(),
                report.throughput_per_s,
                report.op("reserve").map_or(0, |o| o.p99_us),
                if report.invariant.passed {
                    "ok"
                } else {
                    "VIOLATED: figure void"
                }
            );
            reports.push(report);
        }
    }
    drop(peers);

    let rows: Vec<Row> = configs.iter().map(|c| row(*c, &reports)).collect();
    let find = |c: Config| rows.iter().find(|r| r.system == c.label());
    let ratio = |what: &str, a: Config, b: Config, goal: Option<f64>| {
        let (ra, rb) = (find(a), find(b));
        let r = match (
            ra.and_then(|r| r.holds_per_s),
            rb.and_then(|r| r.holds_per_s),
        ) {
            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
            _ => None,
        };
        let p99_lower = match (ra, rb) {
            (Some(x), Some(y)) if x.holds_per_s.is_some() && y.holds_per_s.is_some() => {
                Some(x.p99_us < y.p99_us)
            }
            _ => None,
        };
        Ratio {
            what: what.into(),
            goal,
            ratio: r,
            p99_lower,
            met: goal.and_then(|g| r.map(|r| r >= g && p99_lower != Some(false))),
        }
    };
    let redis = Config::RedisLua { durable: true };
    let redis_service = Config::RedisService { durable: true };
    let ratios = vec![
        ratio(
            "conductor in-process / redis-lua",
            Config::ConductorInProcess,
            redis,
            Some(6.0),
        ),
        ratio(
            "conductor http / redis service",
            Config::ConductorHttp,
            redis_service,
            Some(1.5),
        ),
        ratio(
            "conductor http / postgres service",
            Config::ConductorHttp,
            Config::PostgresService,
            Some(30.0),
        ),
        ratio(
            "conductor http / redis-lua (own protocol)",
            Config::ConductorHttp,
            redis,
            None,
        ),
        ratio(
            "conductor in-process / postgres",
            Config::ConductorInProcess,
            Config::Postgres,
            None,
        ),
        ratio(
            "conductor http / conductor in-process",
            Config::ConductorHttp,
            Config::ConductorInProcess,
            None,
        ),
    ];
    print_tables(&rows, &ratios, pace.concurrency, cmd.stock);
    let passed = reports.iter().all(|r| r.invariant.passed);
    let comparison = Comparison {
        machine: machine(),
        fsync,
        concurrency: pace.concurrency,
        stock: cmd.stock,
        duration_s: pace.duration.as_secs_f64(),
        model: pace.model().into(),
        rows,
        ratios,
        runs: reports,
    };
    if let Some(path) = &cmd.load.json {
        write_json(path, &comparison)?;
        println!("figures written to {}", path.display());
    }
    if let Some(path) = &cmd.load.plot {
        // The first run of every configuration: the curves of one interleaved round.
        let first: Vec<&RunReport> = configs
            .iter()
            .filter_map(|c| comparison.runs.iter().find(|r| r.system == c.label()))
            .collect();
        plot(path, &first, "reserve")?;
        println!("plot written to {}", path.display());
    }
    Ok(passed)
}

async fn open(config: Config, peers: &Peers, cmd: &CompareCmd) -> Result<System, Error> {
    let missing = || err(format!("{} was not started", config.label()));
    let service_target = |service: &ServiceProcess, store: Target| -> Result<Target, Error> {
        Ok(Target::Service {
            http: Arc::new(Http::new(&service.url, None)?),
            store: Box::new(store),
        })
    };
    let redis_pair = |durable: bool| {
        if durable {
            peers.redis_always.as_ref()
        } else {
            peers.redis_everysec.as_ref()
        }
    };
    let target = match config {
        Config::ConductorInProcess => return System::in_process(None).await,
        Config::ConductorHttp => {
            let mut load = cmd.load.clone();
            load.target = "embedded".into();
            // Fail early with the build hint when the server binary is missing.
            find_binary(load.server_bin.as_deref())?;
            return System::open(&load, false).await;
        }
        Config::RedisLua { durable } => {
            let (server, _) = redis_pair(durable).ok_or_else(missing)?;
            server.flush().await?;
            Target::Redis(Arc::new(RedisStore::new(&server.url())?))
        }
        Config::RedisService { durable } => {
            let (server, service) = redis_pair(durable).ok_or_else(missing)?;
            server.flush().await?;
            service_target(
                service,
                Target::Redis(Arc::new(RedisStore::new(&server.url())?)),
            )?
        }
        Config::Postgres => {
            let (server, _) = peers.postgres.as_ref().ok_or_else(missing)?;
            Target::Postgres(Arc::new(PgStore {
                conn_str: server.conn_str(),
            }))
        }
        Config::PostgresService => {
            let (server, service) = peers.postgres.as_ref().ok_or_else(missing)?;
            let store = Target::Postgres(Arc::new(PgStore {
                conn_str: server.conn_str(),
            }));
            service_target(service, store)?
        }
    };
    Ok(System::from_target(target, config.label()))
}

fn row(config: Config, reports: &[RunReport]) -> Row {
    let mine: Vec<&RunReport> = reports
        .iter()
        .filter(|r| r.system == config.label())
        .collect();
    let valid: Vec<&&RunReport> = mine.iter().filter(|r| r.invariant.passed).collect();
    let rates: Vec<f64> = valid.iter().map(|r| r.throughput_per_s).collect();
    let mean = |f: &dyn Fn(&RunReport) -> u64| -> u64 {
        if valid.is_empty() {
            0
        } else {
            valid.iter().map(|r| f(r)).sum::<u64>() / valid.len() as u64
        }
    };
    Row {
        system: config.label().into(),
        durable: config.durable(),
        runs: mine.len(),
        holds_per_s: (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64),
        holds_per_s_min: rates
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(f64::MAX),
        holds_per_s_max: rates.iter().copied().fold(0.0, f64::max),
        p50_us: mean(&|r| r.op("reserve").map_or(0, |o| o.p50_us)),
        p99_us: mean(&|r| r.op("reserve").map_or(0, |o| o.p99_us)),
        p999_us: mean(&|r| r.op("reserve").map_or(0, |o| o.p999_us)),
        voided: mine.len() - valid.len(),
    }
}

fn print_tables(rows: &[Row], ratios: &[Ratio], concurrency: usize, stock: u64) {
    for durable in [true, false] {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.durable == durable).collect();
        if mine.is_empty() {
            continue;
        }
        println!();
        if durable {
            println!("Durable at the ack — 1 hot SKU, {concurrency} buyers, {stock} units (mean of runs; p-values in ms are means of the runs' percentiles)");
        } else {
            println!(
                "NON-DURABLE (acknowledged before fsync; not comparable with the table above)"
            );
        }
        println!("| system | holds/s | range | p50 ms | p99 ms | p99.9 ms | runs | voided |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in mine {
            let rate = r
                .holds_per_s
                .map_or("VOID".to_owned(), |x| format!("{x:.0}"));
            println!(
                "| {} | {} | {:.0}–{:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
                r.system,
                rate,
                if r.holds_per_s.is_some() {
                    r.holds_per_s_min
                } else {
                    0.0
                },
                r.holds_per_s_max,
                r.p50_us as f64 / 1000.0,
                r.p99_us as f64 / 1000.0,
                r.p999_us as f64 / 1000.0,
                r.runs,
                r.voided
            );
        }
    }
    println!();
    println!("| ratio (throughput) | goal | measured | lower p99 | met |");
    println!("|---|---:|---:|---:|---:|");
    for r in ratios {
        let show =
            |x: Option<f64>, unit: &str| x.map_or("–".to_owned(), |x| format!("{x:.1}{unit}"));
        let yes_no = |b: Option<bool>| b.map_or("–", |b| if b { "yes" } else { "no" });
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what,
            show(r.goal, "×"),
            show(r.ratio, "×"),
            yes_no(r.p99_lower),
            yes_no(r.met)
        );
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores, {model}")
}
