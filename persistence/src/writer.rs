//! Group commit, pipelined: the "wal-writer" thread writes, the "wal-syncer" thread syncs and
//! answers; the [`Appender`] handles producers use to feed them, and the [`WalStats`] counters
//! they keep.
//!
//! The writer blocks for the first queued append, drains whatever else is queued (up to
//! `batch_events_max` events, waiting at most `batch_wait` for more), packs the batch into
//! records, writes them through [`Storage`] (not yet durable) and hands the batch to the syncer.
//! The syncer takes every batch written so far (waiting up to `write_wait` for one more if the
//! writer has appends in hand or queued), syncs once, and runs the appends' callbacks in log
//! order before it starts the next sync. So while one sync is in progress the writer is already
//! writing the next batches, and the next sync starts as soon as the previous one ends: a sync
//! covers everything that arrived during the one before it, and an append waits for at most the
//! rest of one sync and then its own (plus, before each sync, at most `write_wait` for a write
//! in progress). (Written and synced on one thread, each cycle was write then sync, and appends
//! that arrived during the sync waited for the write as well.) The callbacks run on the syncer,
//! not on a thread of their own: a hand-off to a third thread was one more wake-up on every
//! sync's way to its callers (hot SKU ×1.14 holds/s and 13 % less CPU per hold without it), and
//! callbacks are hand-offs themselves (a message, a oneshot, one task for a batch of answers).
//! The price: a slow callback holds up the next sync, as it held up every later answer before.
//! A failed write or sync poisons the log: the appends waiting on it get [`WalError::Failed`],
//! everything after gets [`WalError::Poisoned`], and the sync is never retried.
//!
//! Every queued append carries an [`Ack`], a guard that runs the callback with
//! [`WalError::Closed`] if it is dropped unanswered, so an accepted append is always answered
//! exactly once, even if a thread dies or the log closes with appends still queued.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::handoff::{self, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};
use serde::Serialize;
use tracing::{debug, error};

use crate::config::{WalConfig, APPEND_EVENTS_MAX};
use crate::error::WalError;
use crate::record::{EncodedEvents, RecordPacker, Seq};
use crate::storage::{Storage, Syncer};

/// The callback an append carries: runs once, on the syncer thread.
type Callback = Box<dyn FnOnce(Result<Seq, WalError>) + Send + 'static>;

/// State shared by the writer thread, the appenders and the [`crate::Wal`].
#[derive(Default)]
pub(crate) struct Shared {
    /// Set by the first failed write or sync, never cleared.
    pub(crate) poisoned: AtomicBool,
    /// Set when the writer thread has stopped taking appends.
    pub(crate) closed: AtomicBool,
    /// Appends queued for the writer or in its hands, not yet handed to the syncer.
    unwritten: AtomicUsize,
    /// The highest seq known to be durable.
    pub(crate) durable_seq: AtomicU64,
    records_written: AtomicU64,
    events_written: AtomicU64,
    appends_acknowledged: AtomicU64,
    flushes: AtomicU64,
    last_batch_events: AtomicU64,
    last_batch_records: AtomicU64,
    sync_nanos_total: AtomicU64,
    appends_rejected_busy: AtomicU64,
}

impl Shared {
    pub(crate) fn new(durable_seq: Seq) -> Shared {
        let shared = Shared::default();
        shared
            .durable_seq
            .store(durable_seq.get(), Ordering::SeqCst);
        shared
    }

    pub(crate) fn stats(&self) -> WalStats {
        WalStats {
            records_written: self.records_written.load(Ordering::Relaxed),
            events_written: self.events_written.load(Ordering::Relaxed),
            appends_acknowledged: self.appends_acknowledged.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            last_batch_events: self.last_batch_events.load(Ordering::Relaxed),
            last_batch_records: self.last_batch_records.load(Ordering::Relaxed),
            sync_nanos_total: self.sync_nanos_total.load(Ordering::Relaxed),
            appends_rejected_busy: self.appends_rejected_busy.load(Ordering::Relaxed),
            durable_seq: Seq::new(self.durable_seq.load(Ordering::SeqCst)),
            poisoned: self.poisoned.load(Ordering::SeqCst),
        }
    }
}

/// A snapshot of the writer's counters, for metrics. Counters only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    pub records_written: u64,
    pub events_written: u64,
    pub appends_acknowledged: u64,
    /// Successful syncs (sled flush plus fdatasync); one covers every batch written before it.
    pub flushes: u64,
    /// Events and records the latest sync made durable.
    pub last_batch_events: u64,
    pub last_batch_records: u64,
    /// Time spent in sync, summed over all flushes.
    pub sync_nanos_total: u64,
    /// Appends refused with [`WalError::Busy`] because the queue was full.
    pub appends_rejected_busy: u64,
    /// The highest seq known to be durable.
    pub durable_seq: Seq,
    pub poisoned: bool,
}

/// Answers an append exactly once: explicitly through [`Ack::complete`], or with
/// [`WalError::Closed`] when dropped unanswered.
struct Ack {
    callback: Option<Callback>,
}

impl Ack {
    fn complete(mut self, result: Result<Seq, WalError>) {
        if let Some(callback) = self.callback.take() {
            run_callback(callback, result);
        }
    }

    /// Forgets the callback without running it: the append was refused synchronously, and the
    /// caller learns that from `append`'s return value instead.
    fn defuse(mut self) {
        self.callback = None;
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            run_callback(callback, Err(WalError::Closed));
        }
    }
}

/// Runs a producer's callback. A panicking callback must not take the writer thread, and with
/// it every other producer's acknowledgement, down with it.
fn run_callback(callback: Callback, result: Result<Seq, WalError>) {
    if catch_unwind(AssertUnwindSafe(move || callback(result))).is_err() {
        error!("wal ack callback panicked; the panic was contained");
    }
}

struct Append {
    events: EncodedEvents,
    ack: Ack,
}

enum Message {
    Append(Append),
    /// Write and flush everything queued before this message, then stop.
    Shutdown,
}

/// A producer's handle on the log. Cheap to clone; every clone feeds the same writer thread.
pub struct Appender<E> {
    tx: Sender<Message>,
    shared: Arc<Shared>,
    enqueue_timeout: Duration,
    /// `fn(E)`: the appender consumes events but stores none, so it is Send and Sync whatever
    /// `E` is.
    _events: PhantomData<fn(E)>,
}

impl<E> Clone for Appender<E> {
    fn clone(&self) -> Self {
        Appender {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            enqueue_timeout: self.enqueue_timeout,
            _events: PhantomData,
        }
    }
}

impl<E: Serialize> Appender<E> {
    /// Queues `events` to be written as one atomic unit, waiting at most the configured
    /// `enqueue_timeout` for room in the queue.
    ///
    /// Events are encoded here, on the caller's thread, so an event that cannot be stored is
    /// refused at once. On `Ok(())`, `on_durable` runs exactly once, on the syncer thread,
    /// after the events are durable (with the seq of the last record holding them), or with the
    /// error that prevented it. Callbacks run one at a time, in log order. On `Err`, nothing was
    /// queued and `on_durable` never runs.
    ///
    /// Keep callbacks cheap (send on a channel, complete a reply port): they run one after the
    /// other before the next sync starts, so their time adds to every later producer's latency.
    /// A callback must never block, and never wait for another append, which would deadlock the
    /// syncer.
    pub fn append(
        &self,
        events: Vec<E>,
        on_durable: impl FnOnce(Result<Seq, WalError>) + Send + 'static,
    ) -> Result<(), WalError> {
        let message = self.prepare(&events, Box::new(on_durable))?;
        match self.counted(|| self.tx.send_timeout(message, self.enqueue_timeout)) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(message)) => {
                self.refused(message);
                self.shared
                    .appends_rejected_busy
                    .fetch_add(1, Ordering::Relaxed);
                Err(WalError::Busy {
                    waited: self.enqueue_timeout,
                })
            }
            Err(SendTimeoutError::Disconnected(message)) => {
                self.refused(message);
                Err(WalError::Closed)
            }
        }
    }

    /// Like [`Appender::append`] but never blocks: a full queue is [`WalError::Busy`] at once.
    /// For callers on an async runtime, where blocking a worker thread is not allowed.
    pub fn try_append(
        &self,
        events: Vec<E>,
        on_durable: impl FnOnce(Result<Seq, WalError>) + Send + 'static,
    ) -> Result<(), WalError> {
        let message = self.prepare(&events, Box::new(on_durable))?;
        match self.counted(|| self.tx.try_send(message)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                self.refused(message);
                self.shared
                    .appends_rejected_busy
                    .fetch_add(1, Ordering::Relaxed);
                Err(WalError::Busy {
                    waited: Duration::ZERO,
                })
            }
            Err(TrySendError::Disconnected(message)) => {
                self.refused(message);
                Err(WalError::Closed)
            }
        }
    }

    /// Appends and blocks until the events are durable; returns the seq of the last record
    /// holding them. Never call it from an ack callback.
    pub fn append_and_wait(&self, events: Vec<E>) -> Result<Seq, WalError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.append(events, move |result| {
            // The waiter may be gone (its thread panicked); nobody is left to tell.
            let _ = tx.send(result);
        })?;
        // The Ack guard answers every accepted append, so a missing answer means the callback
        // was dropped with the writer thread.
        rx.recv().unwrap_or(Err(WalError::Closed))
    }

    /// Runs `on_durable` once every append queued before this call is durable and its own
    /// callback has run, with the seq of the last record written before the barrier. A barrier
    /// writes nothing; it is how a restart learns that everything a failed producer handed to
    /// the log has settled. Never blocks: a full queue is [`WalError::Busy`] at once.
    pub fn try_barrier(
        &self,
        on_durable: impl FnOnce(Result<Seq, WalError>) + Send + 'static,
    ) -> Result<(), WalError> {
        self.open()?;
        let message = Message::Append(Append {
            events: EncodedEvents::encode::<E>(&[])?,
            ack: Ack {
                callback: Some(Box::new(on_durable)),
            },
        });
        match self.counted(|| self.tx.try_send(message)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                self.refused(message);
                Err(WalError::Busy {
                    waited: Duration::ZERO,
                })
            }
            Err(TrySendError::Disconnected(message)) => {
                self.refused(message);
                Err(WalError::Closed)
            }
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> WalStats {
        self.shared.stats()
    }

    fn open(&self) -> Result<(), WalError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(WalError::Poisoned);
        }
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    fn prepare(&self, events: &[E], callback: Callback) -> Result<Message, WalError> {
        self.open()?;
        if events.is_empty() {
            return Err(WalError::EmptyAppend);
        }
        if events.len() > APPEND_EVENTS_MAX {
            return Err(WalError::AppendTooLarge {
                events: events.len(),
                events_max: APPEND_EVENTS_MAX,
            });
        }
        let events = EncodedEvents::encode(events)?;
        Ok(Message::Append(Append {
            events,
            ack: Ack {
                callback: Some(callback),
            },
        }))
    }

    /// Queues an append with `send`, counted as unwritten from before it can reach the writer
    /// (see [`Shared`]'s `unwritten`); the count is taken back if it was not queued.
    fn counted<R>(&self, send: impl FnOnce() -> Result<(), R>) -> Result<(), R> {
        self.shared.unwritten.fetch_add(1, Ordering::SeqCst);
        let sent = send();
        if sent.is_err() {
            self.shared.unwritten.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    fn refused(&self, message: Message) {
        if let Message::Append(append) = message {
            append.ack.defuse();
        }
    }
}

/// Written batches that may wait for the syncer. When syncs fall this far behind, the writer
/// waits, its queue fills, and producers are told the log is busy.
pub const WRITTEN_BATCHES_QUEUED_MAX: usize = 64;

/// A batch the writer is done with, on its way to the syncer.
struct Written {
    /// Each append's answer-to-be: the seq of the last record holding it.
    acks: Vec<(Ack, Seq)>,
    /// What became of the write: counts to add once synced, or the error every append gets.
    outcome: Result<WriteCounts, Fault>,
}

/// Why a batch was not made durable; every append of the batch is answered with it.
#[derive(Clone)]
enum Fault {
    Failed(std::io::ErrorKind, String),
    Poisoned,
}

impl Fault {
    fn failed(error: &std::io::Error) -> Fault {
        Fault::Failed(error.kind(), error.to_string())
    }

    fn error(&self) -> WalError {
        match self {
            Fault::Failed(kind, message) => WalError::Failed {
                kind: *kind,
                message: message.clone(),
            },
            Fault::Poisoned => WalError::Poisoned,
        }
    }
}

#[derive(Clone, Copy)]
struct WriteCounts {
    last_seq: Seq,
    records: u64,
    events: u64,
}

/// The group-commit writer: its threads and a handle to feed them. [`crate::Wal`] runs one over
/// sled; tests run one over a fake [`Storage`].
pub struct GroupCommit<E> {
    appender: Appender<E>,
    /// Writer, syncer: joined in this order; the syncer ends after the writer.
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl<E: Serialize> GroupCommit<E> {
    /// Starts the threads over `storage`; the first record written gets `next_seq`.
    pub fn start<S: Storage>(
        storage: S,
        next_seq: Seq,
        config: &WalConfig,
    ) -> Result<GroupCommit<E>, WalError> {
        let durable = Seq::new(next_seq.get().saturating_sub(1));
        let (group_commit, go) =
            GroupCommit::spawn(storage, config, Arc::new(Shared::new(durable)))?;
        // The writer waits on this channel, so it cannot be gone yet.
        let _ = go.send(next_seq);
        Ok(group_commit)
    }

    /// Spawns the threads; the writer waits for its first seq on the returned channel before
    /// it takes any append. Dropping the channel unsent stops them.
    pub(crate) fn spawn<S: Storage>(
        storage: S,
        config: &WalConfig,
        shared: Arc<Shared>,
    ) -> Result<(GroupCommit<E>, crossbeam_channel::Sender<Seq>), WalError> {
        config.validate()?;
        let (tx, rx) = handoff::bounded(config.queue_appends_max);
        let (go_tx, go_rx) = crossbeam_channel::bounded(1);
        let (written_tx, written_rx) = handoff::bounded(WRITTEN_BATCHES_QUEUED_MAX);
        let syncer = SyncLoop {
            syncer: storage.syncer(),
            rx: written_rx,
            shared: shared.clone(),
            write_wait: config.write_wait,
        };
        let syncer_thread = std::thread::Builder::new()
            .name("wal-syncer".to_owned())
            .spawn(move || syncer.run())?;
        let writer = Writer {
            storage,
            rx,
            written: written_tx,
            next_seq: Seq::ZERO,
            batch_events_max: config.batch_events_max,
            batch_wait: config.batch_wait,
            shared: shared.clone(),
        };
        let writer_thread = std::thread::Builder::new()
            .name("wal-writer".to_owned())
            .spawn(move || writer.run(go_rx))?;
        let group_commit = GroupCommit {
            appender: Appender {
                tx,
                shared,
                enqueue_timeout: config.enqueue_timeout,
                _events: PhantomData,
            },
            threads: vec![("writer", writer_thread), ("syncer", syncer_thread)],
        };
        Ok((group_commit, go_tx))
    }
}

impl<E> GroupCommit<E> {
    pub fn appender(&self) -> Appender<E> {
        self.appender.clone()
    }

    pub fn stats(&self) -> WalStats {
        self.appender.shared.stats()
    }

    /// Writes and syncs everything queued so far, answers it, then stops the threads. Appends
    /// made after this get [`WalError::Closed`].
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        // A blocking send: the queue drains as the writer writes, and if the writer is gone the
        // send fails at once.
        let _ = self.appender.tx.send(Message::Shutdown);
        // The writer's end drops the sender the syncer reads from: the syncer syncs and answers
        // what it was handed, then stops.
        for (name, thread) in self.threads.drain(..) {
            if thread.join().is_err() {
                error!(thread = name, "wal thread panicked");
            }
        }
    }
}

impl<E> Drop for GroupCommit<E> {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Writer<S> {
    storage: S,
    rx: Receiver<Message>,
    written: Sender<Written>,
    next_seq: Seq,
    batch_events_max: usize,
    batch_wait: Duration,
    shared: Arc<Shared>,
}

impl<S: Storage> Writer<S> {
    fn run(mut self, go: crossbeam_channel::Receiver<Seq>) {
        // Wait for the first seq. The sender dropped unsent means the log closed before any
        // appender existed; nothing can be queued then.
        let Ok(next_seq) = go.recv() else {
            self.shared.closed.store(true, Ordering::SeqCst);
            return;
        };
        assert!(next_seq > Seq::ZERO, "the first seq is 1");
        self.next_seq = next_seq;
        debug!(next_seq = %self.next_seq, "wal writer started");
        let mut batch: Vec<Append> = Vec::new();
        loop {
            // Every appender dropped is as good as a shutdown: nothing more can arrive.
            let Ok(first) = self.rx.recv() else { break };
            let mut shutdown = false;
            match first {
                Message::Append(append) => batch.push(append),
                Message::Shutdown => shutdown = true,
            }
            if !shutdown {
                shutdown = self.collect(&mut batch);
            }
            if !batch.is_empty() {
                self.write(&mut batch);
            }
            if shutdown {
                break;
            }
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        // Appends queued after the shutdown message are answered with Closed by their guards.
        while let Ok(message) = self.rx.try_recv() {
            if matches!(message, Message::Append(_)) {
                self.shared.unwritten.fetch_sub(1, Ordering::SeqCst);
            }
            drop(message);
        }
        debug!(next_seq = %self.next_seq, "wal writer stopped");
    }

    /// Adds queued appends to `batch` until the queue is empty (after waiting `batch_wait` for
    /// more) or the batch is full. Returns whether a shutdown was requested.
    fn collect(&mut self, batch: &mut Vec<Append>) -> bool {
        let mut events: usize = batch.iter().map(|append| append.events.len()).sum();
        let deadline = Instant::now() + self.batch_wait;
        while events < self.batch_events_max {
            let message = match self.rx.try_recv() {
                Ok(message) => message,
                Err(_) if self.batch_wait.is_zero() => return false,
                Err(_) => match self.rx.recv_deadline(deadline) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                        return false
                    }
                },
            };
            match message {
                Message::Append(append) => {
                    events += append.events.len();
                    batch.push(append);
                }
                Message::Shutdown => return true,
            }
        }
        false
    }

    /// Writes a batch and hands it to the syncer, which answers it once it is durable.
    fn write(&mut self, batch: &mut Vec<Append>) {
        let mut packer = RecordPacker::new(self.next_seq);
        let mut acks = Vec::with_capacity(batch.len());
        for append in batch.drain(..) {
            if append.events.is_empty() {
                // A barrier: nothing after it may share a record with what came before it, or
                // a replay through its seq would read appends made after it.
                packer.seal();
            }
            for index in 0..append.events.len() {
                packer.push(append.events.event(index));
            }
            acks.push((append.ack, packer.last_seq()));
        }
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return self.hand_over(Written {
                acks,
                outcome: Err(Fault::Poisoned),
            });
        }
        let events = packer.events;
        let (records, next_seq) = packer.finish();
        if records.is_empty() {
            // Only barriers: nothing to write, and nothing for the syncer to sync. They are
            // answered in order, after every batch handed over before them.
            return self.hand_over(Written {
                acks,
                outcome: Ok(WriteCounts {
                    last_seq: Seq::new(next_seq.get() - 1),
                    records: 0,
                    events: 0,
                }),
            });
        }
        let outcome = match self.storage.write_records(&records) {
            Ok(()) => {
                self.next_seq = next_seq;
                Ok(WriteCounts {
                    last_seq: Seq::new(next_seq.get() - 1),
                    records: records.len() as u64,
                    events,
                })
            }
            Err(error) => {
                // Fail-stop, as for a failed sync: what the storage kept of this write is
                // unknown, so nothing more is written or acknowledged.
                error!(%error, first_seq = %self.next_seq, records = records.len(), "wal write failed, poisoning the log");
                self.shared.poisoned.store(true, Ordering::SeqCst);
                Err(Fault::failed(&error))
            }
        };
        self.hand_over(Written { acks, outcome });
    }

    /// Hands a written batch to the syncer; answers it here with `Closed` if the syncer is
    /// gone (it panicked), since then nothing will sync it.
    fn hand_over(&self, written: Written) {
        // Uncounted before the syncer can see the batch: still counted, the batch would have
        // the syncer holding it wait for it.
        self.shared
            .unwritten
            .fetch_sub(written.acks.len(), Ordering::SeqCst);
        if let Err(handoff::SendError(written)) = self.written.send(written) {
            error!("wal syncer thread is gone; answering a written batch as closed");
            for (ack, _) in written.acks {
                ack.complete(Err(WalError::Closed));
            }
        }
    }
}

/// The syncer thread: syncs every batch written so far (after waiting up to `write_wait` for
/// one in progress), then answers them.
struct SyncLoop<Y> {
    syncer: Y,
    rx: Receiver<Written>,
    shared: Arc<Shared>,
    write_wait: Duration,
}

impl<Y: Syncer> SyncLoop<Y> {
    fn run(mut self) {
        let mut pending = Vec::new();
        // Ends when the writer drops its sender, after the last batch it handed over.
        while let Ok(first) = self.rx.recv() {
            pending.push(first);
            // Everything written by now goes into this sync; the channel's bound caps it.
            pending.extend(self.rx.try_iter().take(WRITTEN_BATCHES_QUEUED_MAX));
            // Appends the writer has in hand or queued would miss this sync and wait for all
            // of the next one; a write takes microseconds (and so, often, does the writer's
            // waking up to a queued append). Not a wait for more appends to arrive: only for
            // those already handed to the log. Hot SKU: ~91 → ~100 holds per sync.
            if !self.write_wait.is_zero() && self.shared.unwritten.load(Ordering::SeqCst) > 0 {
                if let Ok(next) = self.rx.recv_deadline(Instant::now() + self.write_wait) {
                    pending.push(next);
                    pending.extend(self.rx.try_iter().take(WRITTEN_BATCHES_QUEUED_MAX));
                }
            }
            self.sync(&mut pending);
        }
    }

    /// Syncs once for every batch in `pending` that was written, then answers all of them in
    /// log order.
    fn sync(&mut self, pending: &mut Vec<Written>) {
        let written = pending
            .iter()
            .filter_map(|w| w.outcome.as_ref().ok().copied())
            .filter(|w| w.records > 0)
            .fold(None, |sum: Option<WriteCounts>, w| {
                Some(sum.map_or(w, |sum| WriteCounts {
                    last_seq: sum.last_seq.max(w.last_seq),
                    records: sum.records + w.records,
                    events: sum.events + w.events,
                }))
            });
        let synced: Result<(), Fault> = match written {
            // Only barriers, but an earlier sync failed after they were written: what they
            // stand behind is not durable.
            None if self.shared.poisoned.load(Ordering::SeqCst) => Err(Fault::Poisoned),
            None => Ok(()),
            // A write failed after these were written: their durability no longer matters,
            // since nothing after the failure may be acknowledged.
            Some(_) if self.shared.poisoned.load(Ordering::SeqCst) => Err(Fault::Poisoned),
            Some(counts) => {
                let started = Instant::now();
                match self.syncer.sync() {
                    Ok(()) => {
                        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        self.count(counts, pending, nanos);
                        Ok(())
                    }
                    Err(error) => {
                        // Fail-stop: the durability of these batches (and of anything the kernel
                        // dropped with them) is unknown, so nothing more is acknowledged, and the
                        // sync is never retried.
                        error!(%error, last_seq = %counts.last_seq, records = counts.records, "wal sync failed, poisoning the log");
                        self.shared.poisoned.store(true, Ordering::SeqCst);
                        Err(Fault::failed(&error))
                    }
                }
            }
        };
        // The callbacks, in log order, before the next sync.
        for batch in pending.drain(..) {
            let outcome = batch.outcome.map(|_| ()).and_then(|()| synced.clone());
            for (ack, seq) in batch.acks {
                ack.complete(outcome.as_ref().map(|()| seq).map_err(Fault::error));
            }
        }
    }

    fn count(&self, counts: WriteCounts, pending: &[Written], sync_nanos: u64) {
        let shared = &self.shared;
        debug_assert!(Seq::new(shared.durable_seq.load(Ordering::SeqCst)) < counts.last_seq);
        shared
            .durable_seq
            .store(counts.last_seq.get(), Ordering::SeqCst);
        shared
            .records_written
            .fetch_add(counts.records, Ordering::Relaxed);
        shared
            .events_written
            .fetch_add(counts.events, Ordering::Relaxed);
        let appends = pending
            .iter()
            .filter(|w| w.outcome.is_ok())
            .map(|w| w.acks.len() as u64)
            .sum();
        shared
            .appends_acknowledged
            .fetch_add(appends, Ordering::Relaxed);
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        shared
            .last_batch_events
            .store(counts.events, Ordering::Relaxed);
        shared
            .last_batch_records
            .store(counts.records, Ordering::Relaxed);
        shared
            .sync_nanos_total
            .fetch_add(sync_nanos, Ordering::Relaxed);
    }
}
