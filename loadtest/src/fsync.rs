//! The disk's fsync latency: every durable system here waits for it on each acknowledgement
//! (or each group of them), so the comparison records it beside the figures.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::target::Error;

/// Bytes written before each fsync: one small log record.
const RECORD_BYTES: usize = 4096;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FsyncFigures {
    pub dir: String,
    pub samples: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl FsyncFigures {
    pub fn summary(&self) -> String {
        format!(
            "fsync latency under {} ({} × {} B append + fdatasync): p50 {} µs, p99 {} µs, max {} µs",
            self.dir, self.samples, RECORD_BYTES, self.p50_us, self.p99_us, self.max_us
        )
    }
}

/// Appends a record and fdatasyncs it, `samples` times, in a temp file under `dir`.
pub fn measure(dir: &Path, samples: usize) -> Result<FsyncFigures, Error> {
    let mut file = tempfile::tempfile_in(dir)?;
    let record = vec![0x5au8; RECORD_BYTES];
    let mut h = crate::stats::histogram();
    for _ in 0..samples.max(1) {
        file.write_all(&record)?;
        let t = Instant::now();
        file.sync_data()?;
        h.saturating_record((t.elapsed().as_micros() as u64).max(1));
    }
    Ok(FsyncFigures {
        dir: dir.display().to_string(),
        samples: samples.max(1),
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    })
}
