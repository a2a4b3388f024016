//! Settings for `conductor serve`: flags win over `CONDUCTOR_*` environment variables (clap
//! reads both), which win over the optional JSON config file, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use conductor_actors::warehouse::WorkerConfig;
use conductor_actors::Config;
use serde::Deserialize;

use crate::server::ServeOptions;

/// Simulated workers of `--demo`: walking at 60 m/s and quick hands.
const DEMO_WORKERS: WorkerConfig = WorkerConfig {
    pick_ms: 50,
    pack_ms: 80,
    ship_ms: 80,
    putaway_ms: 80,
    walk_ms_per_m: 16,
};

/// The config file, every field optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub demo: Option<bool>,
    /// How long a confirmed order waits before release (the wave window).
    pub wave_window_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    /// Seconds between snapshots of the running system (the log folded and compacted); 0 turns
    /// them off [default: 300].
    pub checkpoint_every_s: Option<u64>,
    /// Tokio worker threads [default: one fewer than the cores, at least one].
    pub runtime_threads: Option<usize>,
    /// Simulated warehouse workers; `--demo` turns them on with defaults.
    pub workers: Option<WorkersFile>,
    pub wal: Option<WalFile>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersFile {
    pub pick_ms: Option<u64>,
    pub pack_ms: Option<u64>,
    pub ship_ms: Option<u64>,
    pub putaway_ms: Option<u64>,
    pub walk_ms_per_m: Option<u64>,
}

#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct WalFile {
    pub queue_appends_max: Option<usize>,
    pub batch_events_max: Option<usize>,
    pub batch_wait_us: Option<u64>,
    pub write_wait_us: Option<u64>,
    pub enqueue_timeout_ms: Option<u64>,
}

/// The most runtime worker threads that may be configured.
const RUNTIME_THREADS_MAX: usize = 256;

/// The longest interval between snapshots that may be configured: a day.
const CHECKPOINT_EVERY_S_MAX: u64 = 86_400;

/// The longest a wave window may be configured.
const WAVE_WINDOW_MS_MAX: u64 = 60_000;

pub struct Flags {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub config: Option<PathBuf>,
    pub demo: bool,
    pub admin_key: Option<String>,
    pub runtime_threads: Option<usize>,
}

pub fn read_file(path: &Path) -> Result<FileConfig, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn resolve(flags: Flags) -> Result<ServeOptions, String> {
    let file = match &flags.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let data_dir = flags
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./conductor-data"));
    let listen = flags
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let demo = flags.demo || file.demo.unwrap_or(false);
    let runtime_threads = flags
        .runtime_threads
        .or(file.runtime_threads)
        .unwrap_or_else(conductor_actors::process::default_runtime_threads);
    if !(1..=RUNTIME_THREADS_MAX).contains(&runtime_threads) {
        return Err(format!(
            "runtime_threads must be in 1..={RUNTIME_THREADS_MAX}"
        ));
    }
    let mut config = Config::new(data_dir);
    let wave = file.wave_window_ms.unwrap_or(500);
    if wave > WAVE_WINDOW_MS_MAX {
        return Err(format!(
            "wave_window_ms must be at most {WAVE_WINDOW_MS_MAX}"
        ));
    }
    config.wave_window = Duration::from_millis(wave);
    match file.checkpoint_every_s {
        Some(0) => config.checkpoint_every = None,
        Some(s) if s > CHECKPOINT_EVERY_S_MAX => {
            return Err(format!(
                "checkpoint_every_s must be at most {CHECKPOINT_EVERY_S_MAX}"
            ))
        }
        Some(s) => config.checkpoint_every = Some(Duration::from_secs(s)),
        None => {}
    }
    if let Some(w) = file.wal {
        if let Some(n) = w.queue_appends_max {
            config.wal.queue_appends_max = n;
        }
        if let Some(n) = w.batch_events_max {
            config.wal.batch_events_max = n;
        }
        if let Some(us) = w.batch_wait_us {
            config.wal.batch_wait = Duration::from_micros(us);
        }
        if let Some(us) = w.write_wait_us {
            config.wal.write_wait = Duration::from_micros(us);
        }
        if let Some(ms) = w.enqueue_timeout_ms {
            config.wal.enqueue_timeout = Duration::from_millis(ms);
        }
    }
    if file.workers.is_some() || demo {
        let explicit = file.workers.is_some();
        let w = file.workers.unwrap_or_default();
        // The demo runs the floor about fifty times faster than life, so that a newcomer sees
        // orders reach "shipped" within a minute; a config file's workers keep real defaults.
        let d = if demo && !explicit {
            DEMO_WORKERS
        } else {
            WorkerConfig::default()
        };
        config.workers = Some(WorkerConfig {
            pick_ms: w.pick_ms.unwrap_or(d.pick_ms),
            pack_ms: w.pack_ms.unwrap_or(d.pack_ms),
            ship_ms: w.ship_ms.unwrap_or(d.ship_ms),
            putaway_ms: w.putaway_ms.unwrap_or(d.putaway_ms),
            walk_ms_per_m: w.walk_ms_per_m.unwrap_or(d.walk_ms_per_m),
        });
    }
    Ok(ServeOptions {
        listen,
        config,
        admin_key: flags.admin_key,
        demo,
        runtime_threads,
        request_timeout: Duration::from_millis(
            file.request_timeout_ms
                .unwrap_or(30_000)
                .clamp(100, 600_000),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(runtime_threads: Option<usize>, config: Option<PathBuf>) -> Flags {
        Flags {
            data_dir: None,
            listen: None,
            config,
            demo: false,
            admin_key: None,
            runtime_threads,
        }
    }

    #[test]
    fn runtime_threads_come_from_the_flag_then_the_file_then_the_cores() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("conductor.json");
        std::fs::write(&file, r#"{"runtime_threads": 3}"#).expect("write config");
        let from_flag = resolve(flags(Some(2), Some(file.clone()))).expect("valid");
        assert_eq!(from_flag.runtime_threads, 2);
        let from_file = resolve(flags(None, Some(file))).expect("valid");
        assert_eq!(from_file.runtime_threads, 3);
        let default = resolve(flags(None, None)).expect("valid");
        assert_eq!(
            default.runtime_threads,
            conductor_actors::process::default_runtime_threads()
        );
    }

    #[test]
    fn checkpoints_default_to_five_minutes_and_zero_turns_them_off() {
        let dir = tempfile::tempdir().expect("temp dir");
        let every = |text: &str| {
            let file = dir.path().join("conductor.json");
            std::fs::write(&file, text).expect("write config");
            resolve(flags(None, Some(file))).map(|o| o.config.checkpoint_every)
        };
        assert_eq!(
            every("{}"),
            Ok(Some(conductor_actors::conductor::CHECKPOINT_EVERY_DEFAULT))
        );
        assert_eq!(every(r#"{"checkpoint_every_s": 0}"#), Ok(None));
        assert_eq!(
            every(r#"{"checkpoint_every_s": 60}"#),
            Ok(Some(Duration::from_secs(60)))
        );
        assert!(every(r#"{"checkpoint_every_s": 86401}"#).is_err());
    }

    #[test]
    fn the_log_settings_come_from_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("conductor.json");
        let text =
            r#"{"wal": {"queue_appends_max": 64, "batch_wait_us": 100, "write_wait_us": 20}}"#;
        std::fs::write(&file, text).expect("write config");
        let wal = resolve(flags(None, Some(file))).expect("valid").config.wal;
        assert_eq!(wal.queue_appends_max, 64);
        assert_eq!(wal.batch_wait, Duration::from_micros(100));
        assert_eq!(wal.write_wait, Duration::from_micros(20));
        let default = resolve(flags(None, None)).expect("valid").config.wal;
        assert_eq!(
            default.write_wait,
            conductor_persistence::WalConfig::default().write_wait
        );
    }

    #[test]
    fn zero_or_too_many_runtime_threads_are_refused() {
        assert!(resolve(flags(Some(0), None)).is_err());
        assert!(resolve(flags(Some(RUNTIME_THREADS_MAX + 1), None)).is_err());
    }
}
