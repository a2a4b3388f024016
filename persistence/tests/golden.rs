//! Locks the byte format: a fixed sample of events must encode to exactly the checked-in bytes,
//! and those bytes must decode back to the sample. A bincode or serde bump, or a change to the
//! record header, that alters what is on disk fails here instead of silently breaking replay of
//! existing logs.
//!
//! When a format change is intended, bump `record::FORMAT_VERSION`, keep a reader for the old
//! version, and regenerate the files with:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p conductor-persistence --test golden
//! ```

use std::path::PathBuf;

use conductor_persistence::record::{
    bincode_config, check_record, decode_events, encode_events, RecordKind, FORMAT_VERSION,
};
use conductor_persistence::{Seq, SNAPSHOT_BYTES_MAX};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Line {
    sku: String,
    qty: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Change {
    Received {
        on_hand: u64,
    },
    Held {
        hold_id: u64,
        lines: Vec<Line>,
        ttl_ms: Option<u64>,
    },
    Released(u64),
    Adjusted {
        delta: i64,
        reason: Option<String>,
    },
    Cancelled,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct GoldenEvent {
    stock_point: String,
    at_ms: u64,
    change: Change,
    tags: Vec<String>,
}

fn sample() -> Vec<GoldenEvent> {
    vec![
        GoldenEvent {
            stock_point: "DC-AMS-1".to_owned(),
            at_ms: 1_700_000_000_123,
            change: Change::Received { on_hand: 250 },
            tags: vec![],
        },
        GoldenEvent {
            stock_point: "store-0042".to_owned(),
            at_ms: 1_700_000_000_456,
            change: Change::Held {
                hold_id: u64::MAX - 1,
                lines: vec![
                    Line {
                        sku: "SKU-1".to_owned(),
                        qty: 1,
                    },
                    Line {
                        sku: "SKU-ÄÖ-2".to_owned(),
                        qty: 70_000,
                    },
                ],
                ttl_ms: Some(900_000),
            },
            tags: vec!["flash-sale".to_owned(), "web".to_owned()],
        },
        GoldenEvent {
            stock_point: "DC-AMS-1".to_owned(),
            at_ms: 1_700_000_000_789,
            change: Change::Released(7),
            tags: vec![],
        },
        GoldenEvent {
            stock_point: String::new(),
            at_ms: 0,
            change: Change::Adjusted {
                delta: -3,
                reason: None,
            },
            tags: vec!["cycle-count".to_owned()],
        },
        GoldenEvent {
            stock_point: "x".to_owned(),
            at_ms: 251,
            change: Change::Cancelled,
            tags: vec![],
        },
    ]
}

/// A snapshot-like state: maps and nested options go through the same configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct GoldenState {
    positions: std::collections::BTreeMap<String, (u64, u64)>,
    last: Option<GoldenEvent>,
}

fn sample_state() -> GoldenState {
    GoldenState {
        positions: [("SKU-1".to_owned(), (10, 2)), ("SKU-2".to_owned(), (0, 0))]
            .into_iter()
            .collect(),
        last: sample().pop(),
    }
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut text = String::new();
    for line in bytes.chunks(32) {
        for byte in line {
            text.push_str(&format!("{byte:02x}"));
        }
        text.push('\n');
    }
    text
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).expect("hex digit")
        })
        .collect()
}

/// Compares `bytes` with the golden file `name`, or rewrites it under `UPDATE_GOLDEN=1`, and
/// returns the golden bytes.
fn check_golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, to_hex(bytes)).expect("write golden file");
        eprintln!("rewrote {}", path.display());
    }
    let golden = from_hex(&std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    }));
    assert!(
        golden == bytes,
        "{name}: the encoding changed.\n golden: {}\n now:    {}\nIf this is intended, bump \
         FORMAT_VERSION, keep a reader for the old format, and run UPDATE_GOLDEN=1.",
        to_hex(&golden).replace('\n', ""),
        to_hex(bytes).replace('\n', "")
    );
    golden
}

#[test]
fn events_record_bytes_are_locked() {
    let records = encode_events(Seq::new(1), &sample()).unwrap();
    assert_eq!(records.len(), 1);
    let golden = check_golden("events-record-v1.hex", &records[0].1);
    // The stored bytes decode to the sample: replay of an old log reads what was written.
    let checked = check_record(&golden).unwrap();
    assert_eq!(golden[0], FORMAT_VERSION);
    assert_eq!(checked.kind, RecordKind::Events);
    assert_eq!(
        decode_events::<GoldenEvent>(Seq::new(1), &golden).unwrap(),
        sample()
    );
}

/// A compressed events record (kind `EventsLz4`): a sale's worth of near-identical events.
fn repetitive_sample() -> Vec<GoldenEvent> {
    (0..40).flat_map(|_| sample()).collect()
}

#[test]
fn compressed_events_records_stay_readable() {
    let records = encode_events(Seq::new(1), &repetitive_sample()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        check_record(&records[0].1).unwrap().kind,
        RecordKind::EventsLz4
    );
    // What a log of today holds reads back, whichever LZ4 encoder wrote it: the bytes of the
    // block may change with the compressor (any valid block of the payload is the format), so
    // the file is written once and then only read.
    let path = golden_path("events-lz4-record-v1.hex");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, to_hex(&records[0].1)).expect("write golden file");
    }
    let golden = from_hex(&std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    }));
    assert_eq!(golden[0], FORMAT_VERSION);
    assert_eq!(check_record(&golden).unwrap().kind, RecordKind::EventsLz4);
    assert_eq!(
        decode_events::<GoldenEvent>(Seq::new(1), &golden).unwrap(),
        repetitive_sample()
    );
    assert_eq!(
        decode_events::<GoldenEvent>(Seq::new(1), &records[0].1).unwrap(),
        repetitive_sample()
    );
}

#[test]
fn snapshot_state_bytes_are_locked() {
    let bytes =
        bincode::serde::encode_to_vec(sample_state(), bincode_config::<SNAPSHOT_BYTES_MAX>())
            .unwrap();
    let golden = check_golden("snapshot-state-v1.hex", &bytes);
    let (state, used): (GoldenState, usize) =
        bincode::serde::decode_from_slice(&golden, bincode_config::<SNAPSHOT_BYTES_MAX>()).unwrap();
    assert_eq!(used, golden.len());
    assert_eq!(state, sample_state());
}
