//! The load generator: C workers, each running its scenario's step in a loop, either back to
//! back (closed model) or at a fixed total rate (open model).
//!
//! In the open model the i-th request is due at `start + i / rate`, whoever sends it; its
//! latency is measured from that intended time, not from when a worker got round to it, so a
//! stall counts against every request it delayed (coordinated omission corrected, as wrk2 does).
//! The workers take the due times from one shared counter, so the rate holds however the
//! latencies spread across workers.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::stats::{Live, Local, Recorder};

/// How often the throughput timeline (and the progress bar) is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// What a step tells the driver.
pub enum Step {
    Go,
    /// This worker is done (sold out, or the scenario ended).
    Done,
}

/// One virtual user of a scenario.
pub trait Worker: Send + 'static {
    /// Runs one iteration. `intended` is when it was due: latency of the iteration's first
    /// operation is measured from there.
    fn step(
        &mut self,
        local: &mut Local,
        live: &Live,
        intended: Instant,
    ) -> impl Future<Output = Step> + Send;
}

#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub concurrency: usize,
    pub duration: Duration,
    /// Requests per second in total (open model); `None` for the closed model.
    pub rate: Option<f64>,
}

impl Pace {
    pub fn model(&self) -> &'static str {
        if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }
}

/// Runs `workers` until the duration is up, `stop` is set, or every worker is done. Answers
/// how long the load ran.
pub async fn drive<W: Worker>(
    workers: Vec<W>,
    pace: Pace,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Duration {
    let start = Instant::now();
    let deadline = start + pace.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(workers.len());
    for mut worker in workers {
        let (recorder, stop, next) = (recorder.clone(), stop.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Local::default();
            let mut finished = start;
            while !stop.load(Ordering::Relaxed) {
                let intended = match pace.rate {
                    None => Instant::now(),
                    Some(rate) => {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                };
                if Instant::now() >= deadline {
                    break;
                }
                let step = worker.step(&mut local, &recorder.live, intended).await;
                finished = Instant::now();
                if let Step::Done = step {
                    break;
                }
            }
            recorder.merge(local);
            finished
        }));
    }
    let mut last = start;
    for task in tasks {
        if let Ok(finished) = task.await {
            last = last.max(finished);
        }
    }
    last.saturating_duration_since(start)
}

/// Samples throughput into the recorder's timeline and draws a progress bar, until `done`.
pub fn sampler(
    recorder: Arc<Recorder>,
    duration: Duration,
    label: String,
    quiet: bool,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(duration.as_millis() as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{prefix:>18} [{bar:30}] {elapsed_precise} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label);
            bar
        };
        let start = Instant::now();
        let mut before = 0u64;
        let mut at = start;
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let now = Instant::now();
            let ops = recorder.live.ops.load(Ordering::Relaxed);
            let per_s = (ops - before) as f64 / now.duration_since(at).as_secs_f64();
            recorder.sample(now.duration_since(start).as_secs_f64(), per_s);
            before = ops;
            at = now;
            bar.set_position(now.duration_since(start).as_millis() as u64);
            bar.set_message(format!(
                "{per_s:>9.0} ops/s  {} ok  {} refused  {} errors",
                ops,
                recorder.live.refusals.load(Ordering::Relaxed),
                recorder.live.errors.load(Ordering::Relaxed),
            ));
        }
        bar.finish_and_clear();
    })
}

/// A small seeded generator (SplitMix64): runs are repeatable from the printed seed, and the
/// harness needs nothing more than uniform integers.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
