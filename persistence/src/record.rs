//! The byte format of one stored record, and the one bincode configuration of the crate.
//!
//! A record is a header followed by a payload:
//!
//! | bytes | field | |
//! | --- | --- | --- |
//! | 0 | format version | [`FORMAT_VERSION`] = 1 |
//! | 1 | record kind | [`RecordKind`] |
//! | 2..6 | payload length | u32, little-endian |
//! | 6..10 | crc32c of the payload | u32, little-endian |
//! | 10.. | payload | |
//!
//! An events payload is exactly the bincode encoding of a `Vec<E>` (see [`bincode_config`]):
//! the event count as a varint, then each event. A compressed events record
//! ([`RecordKind::EventsLz4`]) holds the same payload as an LZ4 block, after its length (u32,
//! little-endian); the writer stores it compressed only when that saves an eighth, and the
//! decompressed payload is never longer than [`PAYLOAD_BYTES_MAX`]. The writer builds it from events encoded one by
//! one on the producers' threads, which yields the same bytes; a unit test and the golden-file
//! test (`tests/golden.rs`) hold both facts in place.
//!
//! In sled the key of a log record is its [`Seq`] as a big-endian u64, so that sled's byte
//! order is log order.

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{RecordError, WalError};

/// The on-disk format version written into every header. Bump it, and keep reading the old one,
/// whenever the header or the payload encoding changes.
pub const FORMAT_VERSION: u8 = 1;

/// Header size: version u8, kind u8, payload length u32, crc32c u32.
pub const HEADER_BYTES: usize = 10;

/// The largest record stored in sled, header included.
///
/// sled 0.34 writes any log message larger than a quarter of a segment as a separate blob file
/// and never fsyncs blob files, so a blob would not survive a power loss even after a
/// successful `flush`. A leaf node is rewritten whole on consolidation and holds up to
/// [`crate::storage::SLED_LEAF_ENTRIES_MAX`] values, so the segment size is chosen from this
/// limit (see [`crate::storage::SLED_SEGMENT_BYTES`]); `tests/blobs.rs` checks the outcome.
pub const RECORD_BYTES_MAX: usize = 64 * 1024;

/// The largest payload of one record.
pub const PAYLOAD_BYTES_MAX: usize = RECORD_BYTES_MAX - HEADER_BYTES;

/// The most bytes the varint event count at the start of an events payload can take (a u64
/// varint is a tag byte plus eight bytes).
pub const EVENT_COUNT_BYTES_MAX: usize = 9;

/// The largest single encoded event: it has to fit into one record next to the count.
pub const EVENT_BYTES_MAX: usize = PAYLOAD_BYTES_MAX - EVENT_COUNT_BYTES_MAX;

/// The most memory decoding one record may claim. bincode counts a sequence's claim as
/// `count * size_of::<T>()` in memory, not in encoded bytes, so a 64 KiB record of small events
/// whose in-memory type is large (a few `String`s and `Option`s) legitimately claims megabytes:
/// this allows 64 Ki events of 4 KiB each, and still stops a length that slipped past the
/// checksum from allocating without bound.
pub const RECORD_DECODE_CLAIM_BYTES_MAX: usize = 256 << 20;

/// The crate's one bincode configuration, fixed explicitly rather than taken from bincode's
/// defaults so that a dependency bump cannot change what replay reads. `LIMIT` bounds how much
/// memory a decode may claim (it does not affect encoding): callers pass
/// [`RECORD_DECODE_CLAIM_BYTES_MAX`] for records and [`crate::SNAPSHOT_BYTES_MAX`] for
/// snapshots.
pub fn bincode_config<const LIMIT: usize>() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
> {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<LIMIT>()
}

/// The sequence number of a record: the first record is 1, and [`Seq::ZERO`] means "before the
/// first record" (for example, a snapshot that covers nothing).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Seq(u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    pub const fn new(value: u64) -> Seq {
        Seq(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next sequence number. Overflow would take 584 years at a billion records a second,
    /// so it is treated as a bug.
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("sequence number overflow"))
    }

    /// The sled key: big-endian so that byte order is log order.
    pub fn to_key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads a stored key. `u64::MAX` is refused: no log reaches it, and refusing it here
    /// means [`Seq::next`] cannot overflow on a value read from disk.
    pub fn from_key(key: &[u8]) -> Result<Seq, RecordError> {
        let bytes: [u8; 8] = key
            .try_into()
            .map_err(|_| RecordError::BadKey { bytes: key.len() })?;
        match u64::from_be_bytes(bytes) {
            u64::MAX => Err(RecordError::BadKey { bytes: 8 }),
            value => Ok(Seq(value)),
        }
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a record's payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// A bincode `Vec<E>`, in the log tree.
    Events = 1,
    /// A [`crate::snapshot`] manifest: which seq it covers, how many chunks, their checksum.
    SnapshotManifest = 2,
    /// A slice of a snapshot's encoded state.
    SnapshotChunk = 3,
    /// An [`RecordKind::Events`] payload compressed: its length (u32, little-endian, at most
    /// [`PAYLOAD_BYTES_MAX`]), then an LZ4 block.
    EventsLz4 = 4,
}

impl RecordKind {
    pub fn from_byte(byte: u8) -> Result<RecordKind, RecordError> {
        match byte {
            1 => Ok(RecordKind::Events),
            2 => Ok(RecordKind::SnapshotManifest),
            3 => Ok(RecordKind::SnapshotChunk),
            4 => Ok(RecordKind::EventsLz4),
            other => Err(RecordError::UnknownKind(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Events => "events",
            RecordKind::SnapshotManifest => "snapshot-manifest",
            RecordKind::SnapshotChunk => "snapshot-chunk",
            RecordKind::EventsLz4 => "events-lz4",
        }
    }
}

/// A stored record whose header and checksum were checked.
#[derive(Debug, Clone, Copy)]
pub struct CheckedRecord<'a> {
    pub kind: RecordKind,
    pub payload: &'a [u8],
    pub crc: u32,
}

/// Checks a stored record's header and checksum and returns its payload.
pub fn check_record(bytes: &[u8]) -> Result<CheckedRecord<'_>, RecordError> {
    if bytes.len() < HEADER_BYTES {
        return Err(RecordError::TooShort { bytes: bytes.len() });
    }
    let version = bytes[0];
    if version != FORMAT_VERSION {
        return Err(RecordError::UnsupportedVersion(version));
    }
    let kind = RecordKind::from_byte(bytes[1])?;
    let header_len = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
    let stored = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let payload = &bytes[HEADER_BYTES..];
    if header_len != payload.len() {
        return Err(RecordError::LengthMismatch {
            header: header_len,
            actual: payload.len(),
        });
    }
    let computed = crc32c::crc32c(payload);
    if computed != stored {
        return Err(RecordError::ChecksumMismatch { stored, computed });
    }
    Ok(CheckedRecord {
        kind,
        payload,
        crc: stored,
    })
}

/// Like [`check_record`], and also requires a kind.
pub fn check_record_kind(bytes: &[u8], expected: RecordKind) -> Result<&[u8], RecordError> {
    let record = check_record(bytes)?;
    if record.kind != expected {
        return Err(RecordError::UnexpectedKind {
            expected,
            found: record.kind,
        });
    }
    Ok(record.payload)
}

/// Checks a stored events record, plain or compressed, and returns its events payload (the
/// bincode `Vec<E>`), decompressed if it was compressed.
pub fn check_events_record(bytes: &[u8]) -> Result<Cow<'_, [u8]>, RecordError> {
    check_record(bytes)?.events_payload()
}

impl<'a> CheckedRecord<'a> {
    /// The events payload of a checked events record, plain or compressed.
    pub fn events_payload(&self) -> Result<Cow<'a, [u8]>, RecordError> {
        match self.kind {
            RecordKind::Events => Ok(Cow::Borrowed(self.payload)),
            RecordKind::EventsLz4 => decompress_events(self.payload).map(Cow::Owned),
            found => Err(RecordError::UnexpectedKind {
                expected: RecordKind::Events,
                found,
            }),
        }
    }
}

/// The events payload of a compressed record's payload. The stated length is checked against
/// [`PAYLOAD_BYTES_MAX`] before anything is allocated, and the block must fill exactly that.
fn decompress_events(payload: &[u8]) -> Result<Vec<u8>, RecordError> {
    let bad = |why: String| RecordError::BadCompression(why);
    let (length, block) = payload
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("shorter than its length".into()))?;
    let length = u32::from_le_bytes(*length) as usize;
    if length > PAYLOAD_BYTES_MAX {
        return Err(bad(format!(
            "states {length} bytes, over {PAYLOAD_BYTES_MAX}"
        )));
    }
    let mut events = vec![0; length];
    let written = lz4_flex::block::decompress_into(block, &mut events)
        .map_err(|error| bad(error.to_string()))?;
    if written != length {
        return Err(bad(format!("{written} bytes where {length} were stated")));
    }
    Ok(events)
}

/// Builds one record in place: reserves the header, lets the caller append the payload, then
/// fills in length and checksum. Writing in place avoids copying each 64 KiB payload again.
pub(crate) struct RecordBuilder {
    bytes: Vec<u8>,
    kind: RecordKind,
}

impl RecordBuilder {
    pub(crate) fn new(kind: RecordKind, payload_bytes_hint: usize) -> RecordBuilder {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + payload_bytes_hint);
        bytes.resize(HEADER_BYTES, 0);
        RecordBuilder { bytes, kind }
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.bytes.len() - HEADER_BYTES
    }

    /// The record buffer, positioned after the header: what is appended to it is the payload.
    pub(crate) fn payload_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let payload_len = self.payload_len();
        assert!(
            payload_len <= PAYLOAD_BYTES_MAX,
            "record payload over the limit"
        );
        let crc = crc32c::crc32c(&self.bytes[HEADER_BYTES..]);
        self.bytes[0] = FORMAT_VERSION;
        self.bytes[1] = self.kind as u8;
        // The assert above bounds the length far below u32::MAX.
        self.bytes[2..6].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.bytes[6..10].copy_from_slice(&crc.to_le_bytes());
        // Pair the checks: what we write must pass what replay checks.
        debug_assert!(matches!(
            check_record(&self.bytes),
            Ok(CheckedRecord { kind, crc: c, .. }) if kind == self.kind && c == crc
        ));
        self.bytes
    }
}

/// Builds a record of `kind` around an already encoded payload.
pub(crate) fn encode_record(kind: RecordKind, payload: &[u8]) -> Vec<u8> {
    let mut builder = RecordBuilder::new(kind, payload.len());
    builder.payload_mut().extend_from_slice(payload);
    builder.finish()
}

/// A compressed events record of `payload`, if compressing saves at least an eighth of it.
///
/// Why compress: sled rewrites a log record several times (its leaf on every consolidation and
/// split), and a sync's time grows with its bytes, while consecutive events share most of
/// theirs (a sale's reservations differ in their ids and little else). LZ4 because it costs
/// far less CPU than the bytes it saves cost sled and the disk.
fn compress_events(payload: &[u8]) -> Option<Vec<u8>> {
    let block_max = lz4_flex::block::get_maximum_output_size(payload.len());
    let mut builder = RecordBuilder::new(RecordKind::EventsLz4, 4 + block_max);
    let out = builder.payload_mut();
    // The payload is at most PAYLOAD_BYTES_MAX, far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let start = out.len();
    out.resize(start + block_max, 0);
    let compressed = lz4_flex::block::compress_into(payload, &mut out[start..]).ok()?;
    out.truncate(start + compressed);
    // Below an eighth saved, the bytes saved are not worth a decompression at every replay.
    (4 + compressed <= payload.len() - payload.len() / 8).then(|| builder.finish())
}

/// Events of one append, each encoded on the producer's thread: `bytes` holds them back to
/// back and `ends[i]` is where event `i` ends. One buffer instead of a `Vec` per event keeps
/// allocations per append constant.
#[derive(Debug, Default)]
pub(crate) struct EncodedEvents {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ends: Vec<usize>,
}

impl EncodedEvents {
    pub(crate) fn encode<E: Serialize>(events: &[E]) -> Result<EncodedEvents, WalError> {
        let mut encoded = EncodedEvents {
            bytes: Vec::with_capacity(events.len() * 64),
            ends: Vec::with_capacity(events.len()),
        };
        for event in events {
            let start = encoded.bytes.len();
            bincode::serde::encode_into_std_write(
                event,
                &mut encoded.bytes,
                bincode_config::<PAYLOAD_BYTES_MAX>(),
            )?;
            let end = encoded.bytes.len();
            if end - start > EVENT_BYTES_MAX {
                return Err(WalError::EventTooLarge {
                    bytes: end - start,
                    bytes_max: EVENT_BYTES_MAX,
                });
            }
            encoded.ends.push(end);
        }
        Ok(encoded)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn event(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.bytes[start..self.ends[index]]
    }
}

/// Packs encoded events into events records of at most [`RECORD_BYTES_MAX`] bytes, assigning
/// sequence numbers from `next_seq` on.
pub(crate) struct RecordPacker {
    next_seq: Seq,
    /// Events of the record being filled, back to back, without the count prefix (the count is
    /// known only when the record is sealed).
    body: Vec<u8>,
    body_events: u64,
    /// Sealed records, in log order.
    pub(crate) records: Vec<(Seq, Vec<u8>)>,
    pub(crate) events: u64,
}

impl RecordPacker {
    pub(crate) fn new(next_seq: Seq) -> RecordPacker {
        RecordPacker {
            next_seq,
            body: Vec::new(),
            body_events: 0,
            records: Vec::new(),
            events: 0,
        }
    }

    /// Adds one encoded event (at most [`EVENT_BYTES_MAX`] bytes) to the open record, sealing
    /// the open record first if the event would not fit.
    pub(crate) fn push(&mut self, event: &[u8]) {
        assert!(event.len() <= EVENT_BYTES_MAX, "event over the limit");
        if self.body.len() + event.len() > EVENT_BYTES_MAX {
            self.seal();
        }
        self.body.extend_from_slice(event);
        self.body_events += 1;
        self.events += 1;
    }

    /// The sequence number of the last record holding an event pushed so far, or of the last
    /// record written before this packer when nothing was pushed: where a barrier stands.
    pub(crate) fn last_seq(&self) -> Seq {
        if self.body_events > 0 {
            self.next_seq
        } else {
            Seq::new(self.next_seq.get().saturating_sub(1))
        }
    }

    /// Seals the open record, if it holds any event.
    pub(crate) fn seal(&mut self) {
        if self.body_events == 0 {
            return;
        }
        let mut builder = RecordBuilder::new(RecordKind::Events, self.body.len() + 9);
        // The count encodes exactly as bincode encodes a sequence length (a u64 varint), so the
        // payload is the encoding of a Vec<E>.
        bincode::serde::encode_into_std_write(
            self.body_events,
            builder.payload_mut(),
            bincode_config::<PAYLOAD_BYTES_MAX>(),
        )
        .expect("encoding a u64 into a Vec cannot fail");
        builder.payload_mut().extend_from_slice(&self.body);
        let plain = builder.finish();
        let record = compress_events(&plain[HEADER_BYTES..]).unwrap_or(plain);
        let seq = self.next_seq;
        self.records.push((seq, record));
        self.next_seq = seq.next();
        self.body.clear();
        self.body_events = 0;
    }

    /// Seals the open record and returns the records and the next free sequence number.
    pub(crate) fn finish(mut self) -> (Vec<(Seq, Vec<u8>)>, Seq) {
        self.seal();
        (self.records, self.next_seq)
    }
}

/// Encodes `events` into events records starting at `first`, exactly as the writer thread does.
/// Used by the golden-file test and by tools; the writer itself packs events that producers
/// encoded.
pub fn encode_events<E: Serialize>(
    first: Seq,
    events: &[E],
) -> Result<Vec<(Seq, Vec<u8>)>, WalError> {
    let encoded = EncodedEvents::encode(events)?;
    let mut packer = RecordPacker::new(first);
    for index in 0..encoded.len() {
        packer.push(encoded.event(index));
    }
    Ok(packer.finish().0)
}

/// Checks an events record stored under `seq` and decodes its events.
pub fn decode_events<E: DeserializeOwned>(seq: Seq, bytes: &[u8]) -> Result<Vec<E>, WalError> {
    let payload = check_events_record(bytes).map_err(|reason| WalError::Corrupt { seq, reason })?;
    decode_events_payload(seq, &payload)
}

/// Decodes a checked events payload. Trailing bytes mean the payload is not what the writer
/// wrote, so they are an error rather than ignored.
pub(crate) fn decode_events_payload<E: DeserializeOwned>(
    seq: Seq,
    payload: &[u8],
) -> Result<Vec<E>, WalError> {
    let (events, used): (Vec<E>, usize) = bincode::serde::decode_from_slice(
        payload,
        bincode_config::<RECORD_DECODE_CLAIM_BYTES_MAX>(),
    )
    .map_err(|source| WalError::Decode { seq, source })?;
    if used != payload.len() {
        return Err(WalError::Decode {
            seq,
            source: bincode::error::DecodeError::OtherString(format!(
                "{} trailing bytes after the events",
                payload.len() - used
            )),
        });
    }
    Ok(events)
}

/// Reads the event count at the start of a checked events payload, without knowing the event
/// type (for `verify` and `inspect`).
pub fn event_count(payload: &[u8]) -> Result<u64, RecordError> {
    bincode::serde::decode_from_slice::<u64, _>(
        payload,
        bincode_config::<RECORD_DECODE_CLAIM_BYTES_MAX>(),
    )
    .map(|(count, _)| count)
    .map_err(|_| RecordError::BadEventCount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Event {
        Small(u64),
        Text { id: u64, text: String },
    }

    fn sample(n: usize, text_len: usize) -> Vec<Event> {
        (0..n as u64)
            .map(|i| {
                if i % 3 == 0 {
                    Event::Small(i * 1_000_003)
                } else {
                    Event::Text {
                        id: i,
                        text: "x".repeat(text_len),
                    }
                }
            })
            .collect()
    }

    #[test]
    fn packed_payload_is_the_bincode_encoding_of_the_vec() {
        // Covers the varint widths of the count: 1 byte (< 251), 3 bytes (u16) and 5 bytes (u32).
        for n in [1usize, 250, 251, 300, 65_535, 65_536, 70_000] {
            let events = sample(n, 0);
            let direct =
                bincode::serde::encode_to_vec(&events, bincode_config::<PAYLOAD_BYTES_MAX>())
                    .unwrap();
            if direct.len() > PAYLOAD_BYTES_MAX {
                // Too big for one record: check that the split decodes to the same events.
                let records = encode_events(Seq::new(1), &events).unwrap();
                assert!(records.len() > 1);
                let mut decoded = Vec::new();
                for (seq, bytes) in &records {
                    assert!(bytes.len() <= RECORD_BYTES_MAX);
                    decoded.extend(decode_events::<Event>(*seq, bytes).unwrap());
                }
                assert_eq!(decoded, events);
                continue;
            }
            let records = encode_events(Seq::new(7), &events).unwrap();
            assert_eq!(records.len(), 1, "n = {n}");
            assert_eq!(records[0].0, Seq::new(7));
            assert_eq!(
                &check_events_record(&records[0].1).unwrap()[..],
                &direct[..],
                "n = {n}"
            );
        }
    }

    #[test]
    fn records_split_at_the_limit_and_keep_order() {
        let events = sample(5_000, 100);
        let records = encode_events(Seq::new(1), &events).unwrap();
        assert!(records.len() > 5);
        let mut decoded = Vec::new();
        for (index, (seq, bytes)) in records.iter().enumerate() {
            assert_eq!(seq.get(), index as u64 + 1);
            assert!(bytes.len() <= RECORD_BYTES_MAX);
            decoded.extend(decode_events::<Event>(*seq, bytes).unwrap());
        }
        assert_eq!(decoded, events);
    }

    #[test]
    fn a_repetitive_record_is_stored_compressed_and_reads_back_the_same() {
        let events = sample(300, 40);
        let plain =
            bincode::serde::encode_to_vec(&events, bincode_config::<PAYLOAD_BYTES_MAX>()).unwrap();
        let (seq, bytes) = encode_events(Seq::new(5), &events).unwrap().remove(0);
        assert_eq!(check_record(&bytes).unwrap().kind, RecordKind::EventsLz4);
        assert!(
            bytes.len() * 4 < plain.len(),
            "{} vs {}",
            bytes.len(),
            plain.len()
        );
        assert_eq!(decode_events::<Event>(seq, &bytes).unwrap(), events);
    }

    #[test]
    fn a_record_compression_would_not_shorten_is_stored_plain() {
        let events: Vec<Event> = (0..20)
            .map(|i| Event::Text {
                id: i,
                text: crate::testsuite::incompressible_text(200, i + 1),
            })
            .collect();
        let (seq, bytes) = encode_events(Seq::new(1), &events).unwrap().remove(0);
        assert_eq!(check_record(&bytes).unwrap().kind, RecordKind::Events);
        assert_eq!(decode_events::<Event>(seq, &bytes).unwrap(), events);
    }

    #[test]
    fn a_compressed_record_stating_too_much_or_the_wrong_length_is_refused() {
        let payload =
            bincode::serde::encode_to_vec(sample(50, 40), bincode_config::<PAYLOAD_BYTES_MAX>())
                .unwrap();
        let block = lz4_flex::block::compress(&payload);
        let stating = |length: usize| {
            let mut stated = (length as u32).to_le_bytes().to_vec();
            stated.extend_from_slice(&block);
            encode_record(RecordKind::EventsLz4, &stated)
        };
        assert_eq!(
            check_events_record(&stating(payload.len())).unwrap()[..],
            payload[..]
        );
        for length in [payload.len() - 1, payload.len() + 1, PAYLOAD_BYTES_MAX + 1] {
            assert!(
                matches!(
                    check_events_record(&stating(length)),
                    Err(RecordError::BadCompression(_))
                ),
                "stated {length} of {}",
                payload.len()
            );
        }
        assert!(matches!(
            check_events_record(&encode_record(RecordKind::EventsLz4, &[1, 0])),
            Err(RecordError::BadCompression(_))
        ));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let events = sample(20, 10);
        let (seq, bytes) = encode_events(Seq::new(3), &events).unwrap().remove(0);
        for index in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= 0x40;
            assert!(
                check_events_record(&corrupt).is_err(),
                "flip at byte {index} went unnoticed"
            );
        }
        let truncated = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode_events::<Event>(seq, truncated),
            Err(WalError::Corrupt {
                reason: RecordError::LengthMismatch { .. },
                ..
            })
        ));
    }

    #[test]
    fn oversized_event_is_rejected_before_it_reaches_the_writer() {
        let big = vec![Event::Text {
            id: 1,
            text: "y".repeat(RECORD_BYTES_MAX),
        }];
        assert!(matches!(
            EncodedEvents::encode(&big),
            Err(WalError::EventTooLarge { .. })
        ));
        let just_fits = vec![Event::Text {
            id: 1,
            text: "y".repeat(EVENT_BYTES_MAX - 16),
        }];
        let records = encode_events(Seq::new(1), &just_fits).unwrap();
        assert_eq!(records.len(), 1);
        assert!(records[0].1.len() <= RECORD_BYTES_MAX);
    }

    #[test]
    fn event_count_reads_the_prefix() {
        let events = sample(300, 1);
        let (_, bytes) = encode_events(Seq::new(1), &events).unwrap().remove(0);
        assert_eq!(
            event_count(&check_events_record(&bytes).unwrap()).unwrap(),
            300
        );
    }

    #[test]
    fn seq_keys_sort_in_log_order() {
        let a = Seq::new(255).to_key();
        let b = Seq::new(256).to_key();
        assert!(a < b);
        assert_eq!(Seq::from_key(&b).unwrap(), Seq::new(256));
        assert!(Seq::from_key(&[1, 2, 3]).is_err());
        assert!(Seq::from_key(&u64::MAX.to_be_bytes()).is_err());
    }
}
