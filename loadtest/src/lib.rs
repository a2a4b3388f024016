//! Conductor's bundled load-test harness: proves that a flash sale holds before the day, and
//! measures Conductor side by side with what shops use today.
//!
//! Modules, and what each owns:
//!
//! - [`cli`]: the command line (one subcommand per scenario, `compare`, `fsync`).
//! - [`run`]: resolving `--target` (in-process, embedded server, or a URL) into a [`run::System`],
//!   and the flash-sale run from setup to report.
//! - [`scenario`]: the workloads: `flash` (flash-sale, availability), `omnichannel`, `crash`.
//! - [`load`]: the generator: closed model (C workers back to back) and open model (a fixed
//!   rate, latency from the intended send time, coordinated omission corrected as in wrk2);
//!   the progress bar and the throughput sampler; the seeded random generator.
//! - [`stats`]: HdrHistograms per operation, refusals and errors by kind, the timeline.
//! - [`invariant`]: the check after every run: acknowledged + available = initial stock.
//! - [`report`]: the human table, the JSON file and the SVG plot.
//! - [`target`]: the systems under test behind one shape (Conductor in-process and over HTTP,
//!   Redis, PostgreSQL, the peer checkout service).
//! - [`server`]: `conductor serve` as a child process (embedded target, crash victim).
//! - [`peers`]: Redis-Lua and PostgreSQL (servers started on loopback, store adapters), the
//!   thin axum checkout service in front of either, and the `compare` table.
//! - [`fsync`]: the disk's fsync latency, recorded in every comparison.
//!
//! **Architecture invariant:** every system is driven by the same generator, clock and
//! histograms, and every figure is voided when its invariant check fails.

pub mod cli;
pub mod fsync;
pub mod invariant;
pub mod load;
pub mod peers;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod stats;
pub mod target;

use cli::{Cli, Command};
use target::Error;

/// Runs a parsed command line; answers whether every check passed.
pub async fn main_with(cli: Cli) -> Result<bool, Error> {
    match cli.command {
        Command::FlashSale(cmd) => {
            let pace = run::pace(&cmd.load)?;
            let seed = run::seed(&cmd.load);
            let system = run::System::open(&cmd.load, false).await?;
            let report = run::flash_sale(
                &system,
                "flash-sale",
                &cmd.sale,
                pace,
                seed,
                None,
                cmd.load.quiet,
            )
            .await;
            system.close().await;
            run::finish(&cmd.load, &report?, "reserve")
        }
        Command::Availability(cmd) => {
            let pace = run::pace(&cmd.load)?;
            let seed = run::seed(&cmd.load);
            if !(cmd.read_rate.is_finite() && cmd.read_rate > 0.0) {
                return Err(target::err("--read-rate must be positive"));
            }
            let system = run::System::open(&cmd.load, false).await?;
            let readers = run::Readers {
                rate: cmd.read_rate,
                count: cmd.readers,
                batch_share: cmd.batch_share,
            };
            let report = run::flash_sale(
                &system,
                "availability",
                &cmd.sale,
                pace,
                seed,
                Some(readers),
                cmd.load.quiet,
            )
            .await;
            system.close().await;
            run::finish(&cmd.load, &report?, "availability")
        }
        Command::Omnichannel(cmd) => {
            let report = scenario::omnichannel::run(&cmd).await?;
            run::finish(&cmd.load, &report, "order")
        }
        Command::Crash(cmd) => {
            let report = scenario::crash::run(&cmd).await?;
            run::finish(&cmd.load, &report, "reserve")
        }
        Command::Compare(cmd) => peers::compare::run(&cmd).await,
        Command::Fsync { dir, samples } => {
            let f = fsync::measure(&dir, samples)?;
            println!("{}", f.summary());
            Ok(true)
        }
        Command::PeerService {
            backend,
            url,
            listen,
            pool,
        } => {
            peers::service::serve(&backend, &url, &listen, pool).await?;
            Ok(true)
        }
    }
}
