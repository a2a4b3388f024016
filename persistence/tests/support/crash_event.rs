//! The event the crash test writes and checks, shared by the writer binary
//! (`src/bin/wal-crash-writer.rs`) and the test (`tests/crash.rs`), which include this file.

use serde::{Deserialize, Serialize};

/// An event whose content follows from its id, so that a reader can tell it is intact.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct CrashEvent {
    pub id: u64,
    pub check: u64,
    pub body: String,
}

impl CrashEvent {
    pub fn new(id: u64) -> CrashEvent {
        CrashEvent {
            id,
            check: id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            body: format!("{id:016x}").repeat(3),
        }
    }
}
