//! Resolving `--target` into a running system, and running `flash-sale` and `availability`
//! end to end: set up, load, read back, check, report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conductor_actors::{Conductor, Config};

use crate::cli::{LoadArgs, SaleArgs};
use crate::invariant::{check, Verdict};
use crate::load::{drive, sampler, Pace};
use crate::report::{plot, write_json, RunReport};
use crate::scenario::flash::{Flash, FlashOptions, Reader};
use crate::server::{find_binary, Server};
use crate::stats::Recorder;
use crate::target::{err, Error, Http, Target};

/// A system under test and what keeps it alive.
pub struct System {
    pub target: Target,
    pub label: String,
    /// The embedded server, if the harness started one.
    pub server: Option<Server>,
    /// The in-process data dir.
    _dir: Option<tempfile::TempDir>,
}

impl System {
    pub async fn open(load: &LoadArgs, demo: bool) -> Result<System, Error> {
        match load.target.as_str() {
            "in-process" => System::in_process(None).await,
            "embedded" => {
                let binary = find_binary(load.server_bin.as_deref())?;
                let server = Server::start_temp(binary, demo, None).await?;
                let http = Http::new(&server.url(), Some(&server.key))?;
                Ok(System {
                    target: Target::Http(Arc::new(http)),
                    label: "conductor http".into(),
                    server: Some(server),
                    _dir: None,
                })
            }
            url if url.starts_with("http://") || url.starts_with("https://") => {
                let http = Http::new(url, load.key.as_deref())?;
                Ok(System {
                    target: Target::Http(Arc::new(http)),
                    label: format!("conductor at {url}"),
                    server: None,
                    _dir: None,
                })
            }
            other => Err(err(format!(
                "unknown --target {other}: in-process, embedded or http://host:port"
            ))),
        }
    }

    /// A system the caller started (the peers of `compare`).
    pub fn from_target(target: Target, label: &str) -> System {
        System {
            target,
            label: label.to_owned(),
            server: None,
            _dir: None,
        }
    }

    /// Conductor in-process on a fresh data dir under `parent` (the temp dir by default).
    pub async fn in_process(parent: Option<&std::path::Path>) -> Result<System, Error> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("conductor-lt-");
        let dir = match parent {
            Some(p) => builder.tempdir_in(p)?,
            None => builder.tempdir()?,
        };
        let mut config = Config::new(dir.path());
        config.wave_window = Duration::from_millis(50);
        let (c, _) = Conductor::start(config)
            .await
            .map_err(|e| err(format!("starting Conductor: {e}")))?;
        Ok(System {
            target: Target::InProcess(c),
            label: "conductor in-process".into(),
            server: None,
            _dir: Some(dir),
        })
    }

    pub async fn close(mut self) {
        if let Target::InProcess(c) = &self.target {
            c.shutdown().await;
        }
        if let Some(server) = self.server.as_mut() {
            server.stop().await;
        }
    }
}

pub fn seed(load: &LoadArgs) -> u64 {
    load.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

pub fn pace(load: &LoadArgs) -> Result<Pace, Error> {
    if !(load.duration.is_finite() && load.duration > 0.0) {
        return Err(err("--duration must be a positive number of seconds"));
    }
    if load.concurrency == 0 {
        return Err(err("--concurrency must be at least 1"));
    }
    if let Some(rate) = load.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(err("--rate must be positive"));
        }
    }
    Ok(Pace {
        concurrency: load.concurrency,
        duration: Duration::from_secs_f64(load.duration),
        rate: load.rate,
    })
}

pub fn flash_options(sale: &SaleArgs, prefix: &str) -> Result<FlashOptions, Error> {
    if sale.skus == 0 || sale.stock == 0 || sale.max_qty == 0 {
        return Err(err("--skus, --stock and --max-qty must be at least 1"));
    }
    if !(0.0..=1.0).contains(&sale.confirm_share) {
        return Err(err("--confirm-share is between 0 and 1"));
    }
    Ok(FlashOptions {
        skus: sale.skus,
        stock: sale.stock,
        max_qty: sale.max_qty,
        confirm_share: sale.confirm_share,
        ttl_s: sale.ttl,
        sku_prefix: prefix.to_owned(),
        keep_ids: false,
    })
}

/// Readers for the `availability` scenario.
pub struct Readers {
    pub rate: f64,
    pub count: usize,
    pub batch_share: f64,
}

/// One flash sale (with readers alongside, if any) on `system`, checked and reported.
pub async fn flash_sale(
    system: &System,
    scenario: &str,
    sale: &SaleArgs,
    pace: Pace,
    seed: u64,
    readers: Option<Readers>,
    quiet: bool,
) -> Result<RunReport, Error> {
    let opts = flash_options(sale, &format!("HOT{}-", seed % 100_000))?;
    let flash = Flash::setup(&system.target, opts).await?;
    let recorder = Arc::new(Recorder::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let bar = sampler(
        recorder.clone(),
        pace.duration,
        system.label.clone(),
        quiet,
        done.clone(),
    );
    let mut reader_workers = Vec::new();
    if let Some(r) = &readers {
        for i in 0..r.count.max(1) {
            reader_workers.push(
                Reader::open(
                    &system.target,
                    &flash,
                    seed ^ (0xA5A5 + i as u64),
                    r.batch_share,
                    stop.clone(),
                )
                .await?,
            );
        }
    }
    let read_pace = Pace {
        concurrency: reader_workers.len(),
        duration: pace.duration,
        rate: readers.as_ref().map(|r| r.rate),
    };
    let buying = flash.buy(&system.target, pace, seed, recorder.clone(), stop.clone());
    let reading = drive(reader_workers, read_pace, recorder.clone(), stop.clone());
    let (elapsed, _) = tokio::join!(buying, reading);
    let elapsed = elapsed?;
    done.store(true, Ordering::Relaxed);
    let _ = bar.await;
    let mut notes = Vec::new();
    if flash.all_sold_out() {
        notes.push(format!(
            "sold out after {:.2} s: {} units acknowledged",
            elapsed.as_secs_f64(),
            flash.acked_units()
        ));
    }
    if sale.wait_expiry {
        // API.md: an expired hold is released within 1 s of its expiry.
        let wait = Duration::from_secs(sale.ttl + 2);
        notes.push(format!(
            "waited {} s for the unconfirmed holds to expire",
            wait.as_secs()
        ));
        tokio::time::sleep(wait).await;
    }
    let verdict = match system.target.levels(&flash.skus).await {
        Ok(levels) => check(&flash.expected(sale.wait_expiry), &levels),
        Err(e) => Verdict::failed(format!("reading the levels back: {e}")),
    };
    let (local, timeline) = recorder.take();
    let mut report = RunReport::new(
        scenario,
        &system.label,
        true,
        &pace,
        elapsed,
        "reserve",
        local,
        timeline,
        verdict,
        seed,
    );
    report.notes = notes;
    Ok(report)
}

/// Prints, writes and plots one report per `--json`/`--plot`; answers whether it passed.
pub fn finish(load: &LoadArgs, report: &RunReport, main_op: &str) -> Result<bool, Error> {
    report.print();
    if let Some(path) = &load.json {
        write_json(path, report)?;
        println!("  figures written to {}", path.display());
    }
    if let Some(path) = &load.plot {
        plot(path, &[report], main_op)?;
        println!("  plot written to {}", path.display());
    }
    Ok(report.invariant.passed)
}
