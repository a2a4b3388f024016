//! `crash`: a flash sale against a `conductor` child process that is SIGKILLed at random
//! moments (from the printed seed, so a failure can be replayed), restarted on the same data
//! dir each time, and checked: every acknowledged hold is still there
//! (`GET /v1/reservations/{id}`), and held + available = initial stock (nothing oversold).
//! Holds in flight at the kill may or may not have been logged; they are counted "in doubt".
//! The server takes a snapshot of itself every `--checkpoint-every-s` (1 s by default), so the
//! kills land before, during and after snapshots and compactions of the running system.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::CrashCmd;
use crate::invariant::check;
use crate::load::{sampler, Pace, Rng};
use crate::report::RunReport;
use crate::run::{flash_options, seed};
use crate::scenario::flash::Flash;
use crate::server::{find_binary, Server};
use crate::stats::{Local, Recorder};
use crate::target::{err, Error, Http, Target};

/// Concurrent `GET /v1/reservations/{id}` while verifying.
const VERIFY_CONCURRENCY: usize = 32;

pub async fn run(cmd: &CrashCmd) -> Result<RunReport, Error> {
    if cmd.load.target != "embedded" {
        return Err(err(
            "crash starts its own server: use the default --target embedded",
        ));
    }
    if !(cmd.max_uptime.is_finite() && cmd.max_uptime > 0.0) {
        return Err(err("--max-uptime must be positive"));
    }
    let seed = seed(&cmd.load);
    println!("crash: seed {seed} (rerun with --seed {seed})");
    let mut rng = Rng::new(seed);
    let binary = find_binary(cmd.load.server_bin.as_deref())?;
    let mut server = Server::start_temp(binary, false, Some(cmd.checkpoint_every_s)).await?;
    let target = |server: &Server| -> Result<Target, Error> {
        Ok(Target::Http(Arc::new(Http::new(
            &server.url(),
            Some(&server.key),
        )?)))
    };
    let mut opts = flash_options(&cmd.sale, &format!("CRASH{}-", seed % 100_000))?;
    opts.keep_ids = true;
    let flash = Flash::setup(&target(&server)?, opts).await?;
    let recorder = Arc::new(Recorder::default());
    let mut extra = Local::default();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let mut load_time = Duration::ZERO;
    let done = Arc::new(AtomicBool::new(false));
    let bar = sampler(
        recorder.clone(),
        Duration::from_secs_f64(cmd.max_uptime * cmd.kills as f64),
        "crash".into(),
        cmd.load.quiet,
        done.clone(),
    );
    let pace = Pace {
        concurrency: cmd.load.concurrency.max(1),
        // The kill ends each round; the duration is only a bound.
        duration: Duration::from_secs(3_600),
        rate: cmd.load.rate,
    };
    let mut last_verdict = None;
    for round in 0..cmd.kills {
        let uptime = Duration::from_secs_f64(rng.unit() * cmd.max_uptime);
        let stop = Arc::new(AtomicBool::new(false));
        let system = target(&server)?;
        let buying = {
            let (flash, recorder, stop) = (flash.clone(), recorder.clone(), stop.clone());
            let round_seed = rng.next_u64();
            tokio::spawn(async move { flash.buy(&system, pace, round_seed, recorder, stop).await })
        };
        tokio::time::sleep(uptime).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        let ran = buying.await.map_err(|e| err(e.to_string()))??;
        load_time += ran;
        acknowledged.extend(flash.take_ids());
        let restarted = server.restart().await?;
        extra.ok(&recorder.live, "restart", restarted);
        // Every hold acknowledged so far, through every crash so far, must still be there.
        let system = target(&server)?;
        let t = Instant::now();
        let missing = verify(&system, &acknowledged).await?;
        extra.ok(&recorder.live, "verify", t.elapsed());
        let verdict = check(&flash.expected(false), &system.levels(&flash.skus).await?);
        notes.push(format!(
            "kill {} after {:.3} s: {} holds acknowledged so far, {} missing, restart {:.0} ms, {}",
            round + 1,
            uptime.as_secs_f64(),
            acknowledged.len(),
            missing.len(),
            restarted.as_secs_f64() * 1000.0,
            verdict.summary()
        ));
        if !missing.is_empty() {
            problems.push(format!(
                "kill {}: {} acknowledged holds lost, e.g. {}",
                round + 1,
                missing.len(),
                missing[..missing.len().min(5)].join(", ")
            ));
        }
        if !verdict.passed {
            problems.extend(verdict.problems.iter().cloned());
        }
        last_verdict = Some(verdict);
    }
    done.store(true, Ordering::Relaxed);
    let _ = bar.await;
    server.stop().await;
    // How many snapshots of the running server the kills fell around, and whether any
    // failed (its log says).
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    let checkpoints = log.matches("checkpoint: snapshot saved").count();
    let failed = log.matches("checkpoint failed").count();
    notes.push(format!(
        "{checkpoints} snapshots of the running server taken across the lives (every {} s, 0 = off), {failed} failed",
        cmd.checkpoint_every_s
    ));
    if failed > 0 {
        problems.push(format!(
            "{failed} checkpoints failed (see {})",
            server.log.display()
        ));
    }
    recorder.merge(extra);
    let (local, timeline) = recorder.take();
    let mut verdict = last_verdict.unwrap_or_default();
    verdict.passed = problems.is_empty() && cmd.kills > 0;
    verdict.problems = problems;
    let mut report = RunReport::new(
        "crash",
        "conductor http (killed and restarted)",
        true,
        &Pace {
            duration: load_time,
            ..pace
        },
        load_time,
        "reserve",
        local,
        timeline,
        verdict,
        seed,
    );
    report.notes = notes;
    Ok(report)
}

/// The acknowledged holds that the server does not know as held or confirmed.
async fn verify(system: &Target, ids: &[String]) -> Result<Vec<String>, Error> {
    let chunk = ids.len().div_ceil(VERIFY_CONCURRENCY).max(1);
    let mut tasks = Vec::new();
    for part in ids.chunks(chunk) {
        let (system, part) = (system.clone(), part.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut missing = Vec::new();
            for id in part {
                match system.reservation_status(&id).await? {
                    Some(s) if s == "held" || s == "confirmed" => {}
                    other => missing.push(format!("{id} ({})", other.unwrap_or("404".into()))),
                }
            }
            Ok::<_, Error>(missing)
        }));
    }
    let mut missing = Vec::new();
    for task in tasks {
        missing.extend(task.await.map_err(|e| err(e.to_string()))??);
    }
    Ok(missing)
}
