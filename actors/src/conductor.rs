//! The in-process handle on the whole live system, and its start (recovery) and stop.
//!
//! Start: open the log, restore the last snapshot and replay the rest into one engine
//! [`State`], settle what a crash left half done ([`State::reconcile`]), save a fresh snapshot
//! and compact, then hand each actor its piece. While running: restart a failed actor from a
//! replay of the log through a barrier, and fold the log into a snapshot every
//! [`Config::checkpoint_every`]. Stop: refuse new work, let the actors drain, flush the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conductor_engine::checkout::ReserveRequest;
use conductor_engine::hash::{FxHashMap, FxHashSet};
use conductor_engine::idempotency::{
    IdempotencyEntry, IdempotencyEvent, IdempotencyKey, IdempotencyTable, Lookup, StoredResponse,
};
use conductor_engine::ids::{
    Code, IncomingId, OrderId, Qty, ReservationId, ReturnId, SkuId, StockPointId,
};
use conductor_engine::inventory::{
    AdjustReason, Adjustment, Incoming, StockEvent, StockPointInventory,
};
use conductor_engine::network::{Network, StockPoint};
use conductor_engine::order::{FulfilmentStatus, Order};
use conductor_engine::reservation::Reservation;
use conductor_engine::returns::{ReturnLine, ReturnPolicy, ReturnRecord};
use conductor_engine::sourcing::{Rule, RuleSet};
use conductor_engine::state::{Event, State};
use conductor_engine::time::Timestamp;
use conductor_persistence::{Recover, Seq, SnapshotView, Wal, WalConfig, WalError, WalStats};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{error, info, warn};

use crate::board::Board;
use crate::call::{ask, CALL_TIMEOUT};
use crate::clock::{Clock, SystemClock};
use crate::directory::{Directory, Handle};
use crate::error::{Answer, CommandError, Refusal};
use crate::intake::{Intake, Ring};
use crate::mailbox::Gate;
use crate::orchestrator::{Downstream, OrchestratorArgs, OrchestratorMsg, StockPointSpec};
use crate::orders::{
    released_at, DeskArgs, DeskMsg, OrderContext, OrderCounts, OrderDesk, OrderMsg,
};
use crate::stock_point::{StockCommand, StockPointActor, StockPointArgs, StockPointMsg};
use crate::warehouse::{
    OnHandCause, Replenishment, StockView, Task, WarehouseActor, WarehouseArgs, WarehouseMsg,
    WmsConfig, WorkerConfig,
};
use crate::Log;

/// Restarts allowed per actor (stock point, warehouse, order, orchestrator, order desk) within
/// [`RESTART_WINDOW`] before it is left down.
pub const RESTARTS_MAX: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How often a running system takes a snapshot by default.
pub const CHECKPOINT_EVERY_DEFAULT: Duration = Duration::from_secs(300);
/// Durable orders that may wait for a restarting order desk.
const UNSTARTED_MAX: usize = crate::mailbox::MAILBOX_DEPTH_MAX;
/// The key the whole state is saved under in the log's snapshots.
const STATE_SNAPSHOT: &str = "state";

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub wal: WalConfig,
    /// How long a confirmed order waits before its fulfilments are released (the wave).
    pub wave_window: Duration,
    /// How long an order's actor waits without a message before it is passivated.
    pub order_idle: Duration,
    /// Simulated warehouse workers; `None` means tasks wait for staff.
    pub workers: Option<WorkerConfig>,
    /// How the warehouses release, batch, cartonize, ship and forecast.
    pub wms: WmsConfig,
    pub clock: Arc<dyn Clock>,
    /// How often the running system folds the log into a snapshot and compacts it, so that
    /// the next start and any actor's restart replay at most this much; `None`: only at start.
    pub checkpoint_every: Option<Duration>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            wal: WalConfig::default(),
            wave_window: Duration::from_millis(500),
            order_idle: crate::orders::ORDER_IDLE_DEFAULT,
            workers: None,
            wms: WmsConfig::default(),
            clock: Arc::new(SystemClock),
            checkpoint_every: Some(CHECKPOINT_EVERY_DEFAULT),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("write-ahead log: {0}")]
    Log(#[from] WalError),
    #[error("actor failed to start: {0}")]
    Spawn(String),
}

/// Recovery's target: the whole state, from a snapshot and the records after it.
#[derive(Default)]
pub struct Rebuild {
    pub state: State,
    /// The seq the restored snapshot covers: records up to it are in the state already.
    pub covered: Seq,
}

impl Recover<Event> for Rebuild {
    fn restore(&mut self, snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        if snapshot.key() == STATE_SNAPSHOT {
            self.state = snapshot.decode()?;
            self.state.after_decode();
            self.covered = snapshot.covered();
        }
        Ok(())
    }

    fn replay(&mut self, seq: Seq, event: Event) {
        if seq > self.covered {
            self.state.apply(&event);
        }
    }
}

/// What the actors share with the handle.
struct Shared {
    board: Arc<Board>,
    stock_points: Arc<Directory<StockPointMsg>>,
    warehouses: Arc<Directory<WarehouseMsg>>,
    /// The orchestrator of the moment, shared with the order actors: a restart replaces it.
    orchestrator: Arc<Mutex<Option<ActorRef<OrchestratorMsg>>>>,
    orchestrator_gate: Gate,
    intake: Arc<Intake>,
    /// The order desk of the moment, shared with the warehouses: a restart replaces it.
    desk: Arc<Mutex<Option<ActorRef<DeskMsg>>>>,
    wave_window: Duration,
    order_idle: Duration,
    /// Order actors whose task has not ended (see `OrderContext::actors`).
    order_actors: Arc<AtomicUsize>,
    /// Durable orders that no desk could take (it had failed): for the restarted one. At most
    /// [`UNSTARTED_MAX`]; the log has them all for the next start.
    unstarted: Mutex<Vec<Order>>,
    log: Log,
    clock: Arc<dyn Clock>,
    workers: Option<WorkerConfig>,
    wms: WmsConfig,
    supervisor: Mutex<Option<ActorRef<SupervisorMsg>>>,
    /// Every actor failure the supervisor or the desk handled, for the metrics.
    restarts: Arc<AtomicU64>,
    /// Snapshots taken while running, for the metrics.
    checkpoints: AtomicU64,
    /// A copy of the network for readers that must not wait on the orchestrator's mailbox.
    network: RwLock<Arc<Network>>,
    /// Responses remembered per idempotency key, and the keys whose first request is still
    /// running (a concurrent retry of those is refused rather than run twice).
    idempotency: Mutex<(IdempotencyTable, FxHashSet<IdempotencyKey>)>,
    /// The log itself (not an appender), for the replays that restart actors. Weak: the
    /// handle owns the log, which closes at shutdown or when the last handle is dropped, and
    /// never on a thread of its own (the syncer thread may hold the last `Shared`).
    wal: std::sync::Weak<RwLock<Option<Wal<Event>>>>,
    /// The seq the last snapshot covers: a checkpoint with nothing new to fold is skipped.
    covered: AtomicU64,
}

/// The in-process API: every operation of the HTTP contract, for the gateway and the harness.
#[derive(Clone)]
pub struct Conductor {
    shared: Arc<Shared>,
    /// Read-locked by replays (several may run at once), write-locked by a checkpoint's save
    /// and compaction and by shutdown, which takes the log out to close it.
    wal: Arc<RwLock<Option<Wal<Event>>>>,
    /// The background checkpoints, stopped at shutdown.
    checkpointer: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    accepting: Arc<AtomicBool>,
    root: ActorCell,
}

/// What to do with a request that carries an idempotency key.
#[derive(Debug)]
pub enum IdempotencyBegin {
    /// First time: run it, then record the response.
    New,
    /// Answer this, do nothing else.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    Running,
}

pub struct Recovered {
    pub events: u64,
    pub records: u64,
    pub settled: usize,
    pub elapsed: Duration,
}

impl Conductor {
    pub async fn start(config: Config) -> Result<(Conductor, Recovered), StartError> {
        let started = Instant::now();
        let dir = config.data_dir.clone();
        let wal_config = config.wal.clone();
        // Opening and replaying read the disk: off the runtime's worker threads.
        let (wal, mut rebuild, report) =
            tokio::task::spawn_blocking(move || -> Result<_, WalError> {
                let wal = Wal::<Event>::open(&dir, wal_config)?;
                let mut rebuild = Rebuild::default();
                let report = wal.recover(&mut rebuild)?;
                Ok((wal, rebuild, report))
            })
            .await
            .map_err(|e| StartError::Spawn(e.to_string()))??;
        let log = wal.appender();
        let now = config.clock.now();
        let settle = rebuild.state.reconcile(now);
        let settled = settle.len();
        if !settle.is_empty() {
            warn!(
                events = settled,
                "settling operations a crash left half done"
            );
            let events = settle.clone();
            let appender = log.clone();
            tokio::task::spawn_blocking(move || appender.append_and_wait(events))
                .await
                .map_err(|e| StartError::Spawn(e.to_string()))??;
            for event in &settle {
                rebuild.state.apply(event);
            }
        }
        let state = rebuild.state;
        if let Err(problem) = state.audit() {
            error!(%problem, "recovered state fails its audit");
        }
        // A fresh snapshot bounds the next recovery to what happens from now on.
        let last = log.stats().durable_seq;
        let snapshot_state = state.clone();
        let wal = tokio::task::spawn_blocking(move || -> Result<Wal<Event>, WalError> {
            wal.save_snapshot(STATE_SNAPSHOT, last, &snapshot_state)?;
            wal.compact()?;
            Ok(wal)
        })
        .await
        .map_err(|e| StartError::Spawn(e.to_string()))??;
        let wal = Arc::new(RwLock::new(Some(wal)));
        info!(
            records = report.records,
            events = report.events,
            settled,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovered"
        );

        let board = Arc::new(Board::default());
        for (id, code) in state.skus.iter() {
            board.define_sku(SkuId(id), code.clone());
        }
        let shared = Arc::new(Shared {
            board: board.clone(),
            stock_points: Arc::new(Directory::default()),
            warehouses: Arc::new(Directory::default()),
            orchestrator: Arc::default(),
            orchestrator_gate: Gate::default(),
            intake: Arc::default(),
            desk: Arc::default(),
            wave_window: config.wave_window,
            order_idle: config.order_idle,
            order_actors: Arc::default(),
            unstarted: Mutex::default(),
            log: log.clone(),
            clock: config.clock.clone(),
            workers: config.workers,
            wms: config.wms.clone(),
            supervisor: Mutex::new(None),
            restarts: Arc::new(AtomicU64::new(0)),
            checkpoints: AtomicU64::new(0),
            covered: AtomicU64::new(last.get()),
            network: RwLock::new(Arc::new(state.network.clone())),
            idempotency: Mutex::new((state.idempotency.clone(), FxHashSet::default())),
            wal: Arc::downgrade(&wal),
        });
        let (supervisor, _) = Actor::spawn(None, Supervisor, shared.clone())
            .await
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        *lock(&shared.supervisor) = Some(supervisor.clone());
        for inventory in &state.inventories {
            start_stock_point(&shared, &supervisor, inventory.clone())
                .await
                .map_err(|e| StartError::Spawn(e.to_string()))?;
        }
        start_orchestrator(&shared, &supervisor, &state)
            .await
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        let desk = start_desk(&shared, &supervisor, &state)
            .await
            .map_err(|e| StartError::Spawn(e.to_string()))?;
        for sp in state.network.iter() {
            let released = released_at(state.orders.values(), sp.id);
            start_warehouse(&shared, &supervisor, sp.id, released)
                .await
                .map_err(|e| StartError::Spawn(e.to_string()))?;
        }
        release_allocated(&desk, &state);
        // A zero interval would fold the log back to back.
        let checkpointer = config
            .checkpoint_every
            .filter(|every| !every.is_zero())
            .map(|every| tokio::spawn(checkpoints(Arc::downgrade(&shared), every)));
        let conductor = Conductor {
            shared,
            wal,
            checkpointer: Arc::new(Mutex::new(checkpointer)),
            accepting: Arc::new(AtomicBool::new(true)),
            root: supervisor.get_cell(),
        };
        Ok((
            conductor,
            Recovered {
                events: report.events,
                records: report.records,
                settled,
                elapsed: started.elapsed(),
            },
        ))
    }

    fn accepting(&self) -> Result<(), CommandError> {
        if self.accepting.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(CommandError::Unavailable("shutting down".into()))
        }
    }

    /// The orchestrator, if it is running: a failed one (down, or not yet restarted) is
    /// "unavailable" at once, before anything is queued for it.
    fn orchestrator(&self) -> Result<ActorRef<OrchestratorMsg>, CommandError> {
        lock(&self.shared.orchestrator)
            .clone()
            .filter(running)
            .ok_or_else(|| CommandError::Unavailable("orchestrator stopped".into()))
    }

    /// Whether the actors every write goes through (the orchestrator and the order desk) are
    /// running: what readiness reports.
    pub fn takes_writes(&self) -> bool {
        self.desk().is_ok_and(|d| running(&d)) && self.orchestrator().is_ok()
    }

    fn desk(&self) -> Result<ActorRef<DeskMsg>, CommandError> {
        lock(&self.shared.desk)
            .clone()
            .ok_or_else(|| CommandError::Unavailable("order desk stopped".into()))
    }

    /// Sends to the orchestrator through its bounded mailbox (the checkout path).
    async fn to_orchestrator_gated<T: Send + 'static>(
        &self,
        message: impl FnOnce(
            crate::stock_point::Reply<Answer<T>>,
            crate::mailbox::Ticket,
        ) -> OrchestratorMsg,
    ) -> Answer<T> {
        self.accepting()?;
        let orchestrator = self.orchestrator()?;
        let gate = self.shared.orchestrator_gate.clone();
        ask(|answer| {
            let ticket = gate.ticket()?;
            orchestrator
                .send_message(message(answer, ticket))
                .map_err(|_| CommandError::Unavailable("orchestrator stopped".into()))
        })
        .await
    }

    async fn to_desk<T: Send + 'static>(
        &self,
        message: impl FnOnce(crate::stock_point::Reply<Answer<T>>) -> DeskMsg,
    ) -> Answer<T> {
        self.accepting()?;
        let desk = self.desk()?;
        ask(|answer| {
            desk.send_message(message(answer))
                .map_err(|_| CommandError::Unavailable("order desk stopped".into()))
        })
        .await
    }

    async fn to_orchestrator<T: Send + 'static>(
        &self,
        message: impl FnOnce(crate::stock_point::Reply<Answer<T>>) -> OrchestratorMsg,
    ) -> Answer<T> {
        self.accepting()?;
        let orchestrator = self.orchestrator()?;
        ask(|answer| {
            orchestrator
                .send_message(message(answer))
                .map_err(|_| CommandError::Unavailable("orchestrator stopped".into()))
        })
        .await
    }

    async fn orchestrator_query<T: Send + 'static>(
        &self,
        message: impl FnOnce(ractor::RpcReplyPort<T>) -> OrchestratorMsg,
    ) -> Result<T, CommandError> {
        let orchestrator = self.orchestrator()?;
        crate::call::query(&orchestrator, message, "orchestrator stopped").await
    }

    /// The network as last defined; cheap, never waits on an actor.
    pub fn network(&self) -> Arc<Network> {
        self.shared
            .network
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks up an idempotency key. `New` also marks the key as running until
    /// [`Conductor::idempotency_record`] or [`Conductor::idempotency_abandon`].
    pub fn idempotency_begin(&self, key: &IdempotencyKey, fingerprint: u64) -> IdempotencyBegin {
        let mut guard = lock(&self.shared.idempotency);
        let (table, running) = &mut *guard;
        if running.contains(key) {
            return IdempotencyBegin::Running;
        }
        match table.lookup(key, fingerprint, self.now()) {
            Lookup::New => {
                running.insert(key.clone());
                IdempotencyBegin::New
            }
            Lookup::Replay(response) => IdempotencyBegin::Replay(response.clone()),
            Lookup::Mismatch => IdempotencyBegin::Mismatch,
        }
    }

    /// Remembers the response for a key durably, so that a retry (also after a restart) gets it.
    pub async fn idempotency_record(
        &self,
        key: IdempotencyKey,
        fingerprint: u64,
        response: StoredResponse,
    ) -> Result<(), CommandError> {
        let event = IdempotencyEvent::Recorded {
            key: key.clone(),
            entry: IdempotencyEntry {
                fingerprint,
                response,
                at: self.now(),
            },
        };
        let logged =
            crate::call::log_durably(&self.shared.log, vec![Event::Idempotency(event.clone())])
                .await;
        let mut guard = lock(&self.shared.idempotency);
        guard.1.remove(&key);
        if logged.is_ok() {
            guard.0.apply(&event);
            guard.0.prune(self.now());
        }
        logged
    }

    /// Forgets that a key is running, without a response (the request failed before any effect).
    pub fn idempotency_abandon(&self, key: &IdempotencyKey) {
        lock(&self.shared.idempotency).1.remove(key);
    }

    pub fn board(&self) -> &Arc<Board> {
        &self.shared.board
    }

    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    // --- checkout ---------------------------------------------------------------------------

    pub async fn reserve(&self, request: ReserveRequest) -> Answer<Arc<Reservation>> {
        // Validated where it is planned (the orchestrator checks every request of a batch), not
        // twice on the hot path.
        self.accepting()?;
        let orchestrator = self.orchestrator()?;
        let intake = &self.shared.intake;
        ask(|answer| {
            if intake.push((request, answer))? == Ring::Ring {
                ring(&orchestrator, intake)?;
            }
            Ok(())
        })
        .await
    }

    /// Many reservations at once (the batch interface): each gets its own answer, in request
    /// order. They enter the intake together, so they reach the orchestrator in one collection
    /// (with whatever else is queued) and each stock point logs its share as one append.
    pub async fn reserve_batch(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<Answer<Arc<Reservation>>>, CommandError> {
        self.accepting()?;
        let orchestrator = self.orchestrator()?;
        let (answers, replies) = crate::call::Answers::new(requests.len());
        let items = requests.into_iter().zip(replies).collect();
        if self.shared.intake.push_all(items)? == Ring::Ring {
            ring(&orchestrator, &self.shared.intake)?;
        }
        Ok(answers.wait().await)
    }

    pub async fn reservation(
        &self,
        id: ReservationId,
    ) -> Result<Option<Reservation>, CommandError> {
        self.orchestrator_query(|reply| OrchestratorMsg::Get(id, reply))
            .await
    }

    pub async fn release(&self, id: ReservationId) -> Answer<()> {
        self.to_orchestrator_gated(|answer, ticket| OrchestratorMsg::Release { id, answer, ticket })
            .await
    }

    pub async fn confirm(&self, id: ReservationId, customer_ref: Option<String>) -> Answer<Order> {
        self.to_orchestrator_gated(|answer, ticket| OrchestratorMsg::Confirm {
            id,
            customer_ref,
            answer,
            ticket,
        })
        .await
    }

    /// Reserve and confirm in one step. If the confirmation fails, the hold is released.
    pub async fn place_order(&self, request: ReserveRequest) -> Answer<Order> {
        let customer_ref = request.customer_ref.clone();
        let reservation = match self.reserve(request).await? {
            Ok(r) => r,
            Err(refusal) => return Ok(Err(refusal)),
        };
        // A retry whose first attempt got as far as the order: answer that order.
        if let Some(order) = reservation.order {
            return match self.order(order).await? {
                Some(order) => Ok(Ok(order)),
                None => Ok(Err(Refusal::NotFound(order.to_string()))),
            };
        }
        let confirmed = self.confirm(reservation.id, customer_ref).await;
        if !matches!(confirmed, Ok(Ok(_))) {
            let _ = self.release(reservation.id).await;
        }
        confirmed
    }

    pub async fn order(&self, id: OrderId) -> Result<Option<Order>, CommandError> {
        let desk = self.desk()?;
        crate::call::query(&desk, |reply| DeskMsg::Get(id, reply), "order desk stopped").await
    }

    pub async fn cancel_order(&self, id: OrderId) -> Answer<Order> {
        self.to_desk(|answer| DeskMsg::ToOrder(id, OrderMsg::Cancel { answer }))
            .await
    }

    pub async fn open_return(
        &self,
        order: OrderId,
        lines: Vec<ReturnLine>,
        drop_off: Option<StockPointId>,
    ) -> Answer<ReturnRecord> {
        self.to_desk(|answer| DeskMsg::OpenReturn {
            order,
            lines,
            drop_off,
            answer,
        })
        .await
    }

    pub async fn receive_return(&self, ret: ReturnId) -> Answer<ReturnRecord> {
        let received = self
            .to_desk(|answer| DeskMsg::ReceiveReturn { ret, answer })
            .await;
        if let Ok(Ok(record)) = &received {
            let restocked = record
                .dispositions
                .iter()
                .filter(|d| d.action == conductor_engine::returns::Action::Restock);
            for d in restocked {
                self.on_hand_changed(d.stock_point, d.sku, OnHandCause::Receipt);
            }
        }
        received
    }

    pub async fn return_record(&self, ret: ReturnId) -> Result<Option<ReturnRecord>, CommandError> {
        let desk = self.desk()?;
        crate::call::query(
            &desk,
            |reply| DeskMsg::GetReturn(ret, reply),
            "order desk stopped",
        )
        .await
    }

    // --- network and inventory (admin) ------------------------------------------------------

    pub async fn put_stock_point(&self, spec: StockPointSpec) -> Answer<StockPoint> {
        self.to_orchestrator(|answer| OrchestratorMsg::PutStockPoint {
            stock_point: Box::new(spec),
            answer,
        })
        .await
    }

    pub async fn stock_points(&self) -> Result<Vec<StockPoint>, CommandError> {
        self.orchestrator_query(OrchestratorMsg::ListStockPoints)
            .await
    }

    pub async fn stock_point_id(&self, code: &str) -> Result<Option<StockPointId>, CommandError> {
        Ok(self
            .stock_points()
            .await?
            .into_iter()
            .find(|sp| sp.code.as_str() == code)
            .map(|sp| sp.id))
    }

    /// Interns SKU codes, defining new ones durably.
    pub async fn define_skus(&self, codes: Vec<Code>) -> Answer<Vec<SkuId>> {
        self.to_orchestrator(|answer| OrchestratorMsg::DefineSkus { codes, answer })
            .await
    }

    async fn stock(&self, sp: StockPointId, command: StockCommand) -> Answer<()> {
        self.accepting()?;
        let stock_points = self.shared.stock_points.clone();
        ask(|answer| {
            stock_points.send(sp, |ticket| StockPointMsg::Command {
                command,
                answer,
                ticket,
            })
        })
        .await
    }

    pub async fn adjust(
        &self,
        sp: StockPointId,
        sku: SkuId,
        adjustment: Adjustment,
        reason: AdjustReason,
    ) -> Answer<()> {
        let adjusted = self
            .stock(
                sp,
                StockCommand::Adjust {
                    sku,
                    adjustment,
                    reason,
                },
            )
            .await;
        if matches!(adjusted, Ok(Ok(()))) {
            self.on_hand_changed(sp, sku, OnHandCause::Adjustment);
        }
        adjusted
    }

    pub async fn set_safety_stock(&self, sp: StockPointId, sku: SkuId, qty: Qty) -> Answer<()> {
        self.stock(sp, StockCommand::SafetyStock { sku, qty }).await
    }

    pub async fn set_non_sellable(&self, sp: StockPointId, sku: SkuId, qty: Qty) -> Answer<()> {
        self.stock(sp, StockCommand::NonSellable { sku, qty }).await
    }

    pub async fn expect_incoming(
        &self,
        sp: StockPointId,
        sku: SkuId,
        qty: Qty,
        eta: Timestamp,
    ) -> Answer<Incoming> {
        self.to_orchestrator(|answer| OrchestratorMsg::ExpectIncoming {
            stock_point: sp,
            sku,
            qty,
            eta,
            answer,
        })
        .await
    }

    pub async fn receive(
        &self,
        sp: StockPointId,
        sku: SkuId,
        qty: Qty,
        incoming: Option<IncomingId>,
    ) -> Answer<()> {
        let received = self
            .stock(sp, StockCommand::Receive { sku, qty, incoming })
            .await;
        if matches!(received, Ok(Ok(()))) {
            self.on_hand_changed(sp, sku, OnHandCause::Receipt);
        }
        received
    }

    /// Tells the warehouse of `sp` that on_hand of `sku` changed, so that its bins follow
    /// (receipts become putaway tasks). Best effort: the warehouse reconciles by level, so a
    /// notice lost to a full mailbox is repaired by the next one for that SKU.
    fn on_hand_changed(&self, sp: StockPointId, sku: SkuId, cause: OnHandCause) {
        let sent = self
            .shared
            .warehouses
            .send(sp, |ticket| WarehouseMsg::OnHandChanged {
                sku,
                cause,
                ticket,
            });
        if let Err(error) = sent {
            warn!(stock_point = ?sp, ?sku, %error, "warehouse not told of an on_hand change");
        }
    }

    pub async fn set_customer_limit(
        &self,
        sku: SkuId,
        max_per_customer: Option<Qty>,
    ) -> Answer<()> {
        self.to_orchestrator(|answer| OrchestratorMsg::SetCustomerLimit {
            sku,
            max_per_customer,
            answer,
        })
        .await
    }

    pub async fn put_rules(&self, rules: Vec<Rule>) -> Answer<RuleSet> {
        self.to_orchestrator(|answer| OrchestratorMsg::PutRules { rules, answer })
            .await
    }

    pub async fn rules(&self) -> Result<RuleSet, CommandError> {
        self.orchestrator_query(OrchestratorMsg::GetRules).await
    }

    /// A copy of one stock point's live inventory (tests and diagnostics).
    pub async fn inventory(&self, sp: StockPointId) -> Result<StockPointInventory, CommandError> {
        let handle = self
            .shared
            .stock_points
            .get(sp)
            .ok_or_else(|| CommandError::Unavailable(format!("stock point {sp:?} is down")))?;
        crate::call::query(
            &handle.actor,
            StockPointMsg::Inspect,
            format!("stock point {sp:?} stopped"),
        )
        .await
    }

    // --- warehouse (fulfilment) -------------------------------------------------------------

    pub async fn tasks(
        &self,
        sp: StockPointId,
        open_only: bool,
    ) -> Result<Vec<Task>, CommandError> {
        let handle = self
            .shared
            .warehouses
            .get(sp)
            .ok_or_else(|| CommandError::Unavailable(format!("warehouse {sp:?} is down")))?;
        crate::call::query(
            &handle.actor,
            |reply| WarehouseMsg::Tasks { open_only, reply },
            format!("warehouse {sp:?} stopped"),
        )
        .await
    }

    /// Completes a task at stock point `sp` (the caller's key must be bound to it).
    pub async fn complete_task(
        &self,
        sp: StockPointId,
        task: String,
        qty: Option<Qty>,
    ) -> Answer<Task> {
        self.accepting()?;
        let warehouses = self.shared.warehouses.clone();
        ask(|answer| {
            warehouses.send(sp, |ticket| WarehouseMsg::Complete {
                task,
                qty,
                answer,
                ticket,
            })
        })
        .await
    }

    async fn warehouse_query<T: Send + 'static>(
        &self,
        sp: StockPointId,
        message: impl FnOnce(ractor::RpcReplyPort<T>) -> WarehouseMsg,
    ) -> Result<T, CommandError> {
        let handle = self
            .shared
            .warehouses
            .get(sp)
            .ok_or_else(|| CommandError::Unavailable(format!("warehouse {sp:?} is down")))?;
        crate::call::query(&handle.actor, message, format!("warehouse {sp:?} stopped")).await
    }

    /// Suggested reorder points per SKU at `sp`, from the demand its warehouse has shipped.
    pub async fn replenishment(
        &self,
        sp: StockPointId,
    ) -> Result<Vec<Replenishment>, CommandError> {
        self.warehouse_query(sp, WarehouseMsg::Replenishment).await
    }

    /// Where every unit of `sp` is: bins, dock, overflow, outbound, unfound.
    pub async fn bin_stock(&self, sp: StockPointId) -> Result<StockView, CommandError> {
        self.warehouse_query(sp, WarehouseMsg::Stock).await
    }

    // --- operations -------------------------------------------------------------------------

    pub fn log_stats(&self) -> WalStats {
        self.shared.log.stats()
    }

    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Snapshots taken while running (see [`Config::checkpoint_every`]).
    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// The seq the latest snapshot covers: a start replays only the log after it.
    pub fn snapshot_covered(&self) -> Seq {
        Seq::new(self.shared.covered.load(Ordering::Acquire))
    }

    pub fn deepest_mailbox(&self) -> usize {
        self.shared
            .stock_points
            .deepest_mailbox()
            .max(self.shared.orchestrator_gate.depth())
            .max(self.shared.intake.depth())
    }

    /// Test hook: makes a stock point actor panic, to exercise supervision.
    pub fn crash_stock_point(&self, sp: StockPointId) {
        if let Some(handle) = self.shared.stock_points.get(sp) {
            let _ = handle.actor.send_message(StockPointMsg::Crash);
        }
    }

    /// Test hook: makes the orchestrator panic, to exercise supervision.
    pub fn crash_orchestrator(&self) -> Result<(), CommandError> {
        self.orchestrator()?
            .send_message(OrchestratorMsg::Crash)
            .map_err(|_| CommandError::Unavailable("orchestrator stopped".into()))
    }

    /// Test hook: makes a warehouse actor panic, to exercise supervision.
    pub fn crash_warehouse(&self, sp: StockPointId) {
        if let Some(handle) = self.shared.warehouses.get(sp) {
            let _ = handle.actor.send_message(WarehouseMsg::Crash);
        }
    }

    /// Test hook: reports a warehouse step to its order, as a warehouse does (to repeat a
    /// report whose first answer was lost).
    pub async fn report_step(&self, order: OrderId, step: crate::orders::Step) -> Answer<()> {
        self.to_desk(|answer| DeskMsg::ToOrder(order, OrderMsg::Step { step, answer }))
            .await
    }

    /// Test hook: makes the order desk panic, to exercise supervision.
    pub fn crash_desk(&self) -> Result<(), CommandError> {
        self.desk()?
            .send_message(DeskMsg::Crash)
            .map_err(|_| CommandError::Unavailable("order desk stopped".into()))
    }

    /// Test hook: makes a live order's actor panic, to exercise supervision.
    pub fn crash_order(&self, id: OrderId) -> Result<(), CommandError> {
        self.desk()?
            .send_message(DeskMsg::CrashOrder(id))
            .map_err(|_| CommandError::Unavailable("order desk stopped".into()))
    }

    /// How many orders have a live actor, are passivated, or are down after failing too often.
    pub async fn order_counts(&self) -> Result<OrderCounts, CommandError> {
        let desk = self.desk()?;
        crate::call::query(&desk, DeskMsg::Counts, "order desk stopped").await
    }

    /// Refuses new work, lets in-flight work finish, stops the actors and closes the log (which
    /// writes and flushes everything queued).
    pub async fn shutdown(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        // In-flight commands finish within a call timeout; most within one fsync.
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.deepest_mailbox() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.root
            .stop_children_and_wait(None, Some(CALL_TIMEOUT))
            .await;
        self.root.stop(None);
        // No checkpoint starts from here on (one in progress finishes before the log closes).
        if let Some(checkpointer) = lock(&self.checkpointer).take() {
            checkpointer.abort();
        }
        // Off the runtime: a replay may hold the log for a while, and close() joins the writer
        // thread after its final flush.
        let wal = self.wal.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(wal) = write(&wal).take() {
                wal.close();
            }
        })
        .await;
        info!("stopped");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    // A panic while holding it cannot leave the Option half set.
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Tells the orchestrator that the intake has work. If it failed since it was looked up, nobody
/// will take what is queued (a restarted one would, for callers already told "unavailable"):
/// refuse it all.
fn ring(orchestrator: &ActorRef<OrchestratorMsg>, intake: &Intake) -> Result<(), CommandError> {
    if orchestrator.send_message(OrchestratorMsg::Collect).is_ok() {
        return Ok(());
    }
    let stopped = CommandError::Unavailable("orchestrator stopped".into());
    intake.refuse_all(&stopped);
    Err(stopped)
}

/// Whether an actor is starting or running, not stopping or stopped.
fn running<M: ractor::Message>(actor: &ActorRef<M>) -> bool {
    ractor::ACTIVE_STATES.contains(&actor.get_status())
}

/// Starts (or restarts) the orchestrator with its piece of `state` (catalogue, network, rules,
/// reservations, id counters), linked to the supervisor, and records it where the handle and
/// the order actors find it.
async fn start_orchestrator(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
    state: &State,
) -> Result<(), ractor::SpawnErr> {
    let args = OrchestratorArgs {
        skus: state.skus.clone(),
        network: state.network.clone(),
        rules: state.rules.clone(),
        book: state.reservations.clone(),
        next: state.next,
        board: shared.board.clone(),
        directory: shared.stock_points.clone(),
        log: shared.log.clone(),
        clock: shared.clock.clone(),
        downstream: Arc::new(Forward {
            shared: Arc::downgrade(shared),
        }),
        intake: shared.intake.clone(),
    };
    let (orchestrator, _) = Actor::spawn_linked(
        None,
        crate::orchestrator::Orchestrator,
        args,
        supervisor.get_cell(),
    )
    .await?;
    *lock(&shared.orchestrator) = Some(orchestrator);
    Ok(())
}

/// Starts (or restarts) the order desk with the orders and returns of `state`, linked to the
/// supervisor, and records it where the handle and the warehouses find it.
async fn start_desk(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
    state: &State,
) -> Result<ActorRef<DeskMsg>, ractor::SpawnErr> {
    let context = OrderContext {
        stock_points: shared.stock_points.clone(),
        warehouses: shared.warehouses.clone(),
        orchestrator: shared.orchestrator.clone(),
        log: shared.log.clone(),
        clock: shared.clock.clone(),
        wave_window: shared.wave_window,
        order_idle: shared.order_idle,
        failures: shared.restarts.clone(),
        actors: shared.order_actors.clone(),
    };
    let args = DeskArgs {
        context,
        orders: state.orders.clone(),
        returns: state.returns.clone(),
        next_return: state.next.ret,
        network: state.network.clone(),
        policy: ReturnPolicy::default(),
    };
    let (desk, _) = Actor::spawn_linked(None, OrderDesk, args, supervisor.get_cell()).await?;
    let mut slot = lock(&shared.desk);
    *slot = Some(desk.clone());
    // Orders confirmed while no desk could take them (a desk that knows one already ignores it).
    for order in std::mem::take(&mut *lock(&shared.unstarted)) {
        let _ = desk.send_message(DeskMsg::Start(order));
    }
    drop(slot);
    Ok(desk)
}

/// Orders confirmed but not yet released are released after the wave window.
fn release_allocated(desk: &ActorRef<DeskMsg>, state: &State) {
    for order in state.orders.values() {
        if order
            .fulfilments
            .iter()
            .any(|f| f.status == FulfilmentStatus::Allocated)
        {
            let _ = desk.send_message(DeskMsg::ToOrder(order.id, OrderMsg::Release));
        }
    }
}

/// Starts (or restarts) a stock point actor, linked to the supervisor, and records it.
async fn start_stock_point(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
    inventory: StockPointInventory,
) -> Result<(), ractor::SpawnErr> {
    let id = inventory.id;
    let args = StockPointArgs {
        inventory,
        board: shared.board.clone(),
        log: shared.log.clone(),
        clock: shared.clock.clone(),
    };
    let (actor, _) =
        Actor::spawn_linked(None, StockPointActor, args, supervisor.get_cell()).await?;
    shared.stock_points.set(
        id,
        Some(Handle {
            actor: actor.clone(),
            gate: Gate::default(),
        }),
    );
    // Failed before it was found in the directory: the supervisor could not tell it was this
    // stock point. Leave it empty and say so, so that a restart tries again.
    if !running(&actor) {
        shared.stock_points.set(id, None);
        return Err(ractor::SpawnErr::StartupFailed(
            "the stock point actor failed as it started".into(),
        ));
    }
    Ok(())
}

async fn start_warehouse(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
    sp: StockPointId,
    released: Vec<(OrderId, conductor_engine::order::Fulfilment)>,
) -> Result<(), ractor::SpawnErr> {
    let desk = shared.desk.clone();
    // Stock points without a network entry yet default to the warehouse layout.
    let kind = shared
        .network
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(sp)
        .map_or(conductor_engine::network::StockPointKind::Warehouse, |s| {
            s.kind
        });
    let on_hand = shared.board.on_hand_at(sp);
    let args = WarehouseArgs {
        stock_point: sp,
        kind,
        desk,
        stock_points: shared.stock_points.clone(),
        released,
        on_hand,
        board: shared.board.clone(),
        clock: shared.clock.clone(),
        config: shared.wms.clone(),
        workers: shared.workers,
    };
    let (actor, _) = Actor::spawn_linked(None, WarehouseActor, args, supervisor.get_cell()).await?;
    shared.warehouses.set(
        sp,
        Some(Handle {
            actor,
            gate: Gate::default(),
        }),
    );
    Ok(())
}

/// Routes the orchestrator's news to the supervisor and the order desk.
struct Forward {
    shared: std::sync::Weak<Shared>,
}

impl Downstream for Forward {
    fn stock_point_added(&self, stock_point: &StockPoint) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        // The new warehouse reads its kind (its layout) from here when it starts.
        {
            let mut network = shared.network.write().unwrap_or_else(|e| e.into_inner());
            let mut updated = (**network).clone();
            updated.upsert(stock_point.clone());
            *network = Arc::new(updated);
        }
        let supervisor = lock(&shared.supervisor).clone();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.send_message(SupervisorMsg::Add(stock_point.id));
        }
        let desk = lock(&shared.desk).clone();
        if let Some(desk) = desk {
            let _ = desk.send_message(DeskMsg::StockPointAdded(Box::new(stock_point.clone())));
        }
    }

    fn network_changed(&self, network: &Network) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        *shared.network.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(network.clone());
    }

    fn order_confirmed(&self, order: Order) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        // Under the slot's lock, which a restarted desk takes to be put in place: an order
        // the failed desk could not take waits for the new one.
        let desk = lock(&shared.desk);
        let unsent = match desk.as_ref() {
            Some(desk) => match desk.send_message(DeskMsg::Start(order)) {
                Ok(()) => None,
                Err(ractor::MessagingErr::SendErr(DeskMsg::Start(order))) => Some(order),
                Err(_) => None,
            },
            None => Some(order),
        };
        if let Some(order) = unsent {
            let mut unstarted = lock(&shared.unstarted);
            if unstarted.len() < UNSTARTED_MAX {
                unstarted.push(order);
            } else {
                error!(order = %order.id, "no order desk takes orders and too many wait for one; this order reaches a desk at the next start");
            }
        }
    }
}

pub enum SupervisorMsg {
    Add(StockPointId),
}

/// The root of the tree. It restarts a failed stock point actor from the log,
/// a failed warehouse actor from the open fulfilments the order desk knows (its tasks are
/// derived state), and a failed orchestrator or order desk from the log, each at most
/// [`RESTARTS_MAX`] times in [`RESTART_WINDOW`], then leaves it down so that it takes no
/// writes; and logs and counts every failure.
struct Supervisor;

struct SupervisorState {
    shared: Arc<Shared>,
    restarts: FxHashMap<StockPointId, Vec<Instant>>,
    warehouse_restarts: FxHashMap<StockPointId, Vec<Instant>>,
    orchestrator_restarts: Vec<Instant>,
    desk_restarts: Vec<Instant>,
}

/// Records a failure in `recent`; false if there were already [`RESTARTS_MAX`] in the window.
pub(crate) fn may_restart(recent: &mut Vec<Instant>) -> bool {
    recent.retain(|at| at.elapsed() < RESTART_WINDOW);
    if recent.len() >= RESTARTS_MAX {
        return false;
    }
    recent.push(Instant::now());
    true
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _: ActorRef<SupervisorMsg>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            restarts: FxHashMap::default(),
            warehouse_restarts: FxHashMap::default(),
            orchestrator_restarts: Vec::new(),
            desk_restarts: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Add(id) => {
                start_stock_point(&state.shared, &myself, StockPointInventory::new(id)).await?;
                start_warehouse(&state.shared, &myself, id, Vec::new()).await?;
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // The default would stop the supervisor, and with it the whole system, when a child fails.
        let SupervisionEvent::ActorFailed(cell, reason) = event else {
            return Ok(());
        };
        state.shared.restarts.fetch_add(1, Ordering::Relaxed);
        let orchestrator = lock(&state.shared.orchestrator)
            .as_ref()
            .map(|o| o.get_id());
        if orchestrator == Some(cell.get_id()) {
            restart_orchestrator(&myself, &reason, state);
            return Ok(());
        }
        let desk = lock(&state.shared.desk).as_ref().map(|d| d.get_id());
        if desk == Some(cell.get_id()) {
            restart_desk(&myself, &reason, state);
            return Ok(());
        }
        let Some(id) = state.shared.stock_points.find(cell.get_id()) else {
            return restart_warehouse(&myself, &cell, &reason, state).await;
        };
        state.shared.stock_points.set(id, None);
        if !may_restart(state.restarts.entry(id).or_default()) {
            error!(stock_point = ?id, %reason, "stock point failed too often; it stays down and takes no writes");
            return Ok(());
        }
        error!(stock_point = ?id, %reason, "stock point failed; restarting it from the log");
        // Off the supervisor, which must stay free for other failures: the replay reads the disk.
        let shared = state.shared.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match with_retries("stock point", || revive_stock_point(&shared, &myself, id)).await {
                Ok(events) => info!(
                    stock_point = ?id,
                    events,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stock point restarted from the log"
                ),
                Err(error) => {
                    error!(stock_point = ?id, %error, "stock point did not restart; it stays down")
                }
            }
        });
        Ok(())
    }
}

/// Restarts a failed orchestrator from the log, off the supervisor (the replay reads the disk
/// and waits on the stock points). Reservations queued for the failed actor are refused with
/// "unavailable" at once; until the new one is in place every write through it is refused the
/// same way, since the handle sees no running orchestrator.
fn restart_orchestrator(
    supervisor: &ActorRef<SupervisorMsg>,
    reason: &ActorProcessingErr,
    state: &mut SupervisorState,
) {
    let failed = CommandError::Unavailable("the orchestrator failed; retry".into());
    let refused = state.shared.intake.refuse_all(&failed);
    if !may_restart(&mut state.orchestrator_restarts) {
        error!(%reason, refused, "orchestrator failed too often; it stays down and every write through it is refused");
        return;
    }
    error!(%reason, refused, "orchestrator failed; restarting it from the log");
    let shared = state.shared.clone();
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        match with_retries("orchestrator", || revive_orchestrator(&shared, &supervisor)).await {
            Ok((events, settled)) => info!(
                events,
                settled,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "orchestrator restarted from the log"
            ),
            Err(error) => error!(%error, "orchestrator did not restart; it stays down"),
        }
    });
}

/// Rebuilds the orchestrator's piece of the state from what is durable and starts it; returns
/// the events replayed and the events that settled what the failure left half done.
///
/// 1. Every stock point has handled what the failed actor sent it (`drain_stock_points`).
/// 2. A log barrier: everything appended before it is durable and its acknowledgement has run,
///    so the desk has heard of every durable order (the acknowledgement tells it).
/// 3. Snapshot plus log, through the barrier, replayed into a whole state.
/// 4. What the failure left half done is settled as at start-up ([`State::reconcile`]): holds
///    of reservations never recorded and allocations of orders never recorded are given back
///    through their stock points, a reservation missing a hold is released. Nothing here was
///    acknowledged: each acknowledgement waits for the last record of its operation.
/// 5. The orchestrator starts on the result and takes whatever reached the intake meanwhile.
async fn revive_orchestrator(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
) -> Result<(u64, usize), CommandError> {
    drain_stock_points(shared).await?;
    let (mut state, events, _) = replay_durable(shared).await?;
    let settle = state.reconcile(shared.clock.now());
    let settled = settle.len();
    let mut reservations = Vec::new();
    for event in settle {
        match event {
            Event::Stock {
                stock_point, event, ..
            } => {
                let command = match event {
                    StockEvent::HoldReleased {
                        reservation,
                        reason,
                    } => StockCommand::Release {
                        reservation,
                        reason,
                    },
                    StockEvent::AllocationReleased { order, .. } => {
                        StockCommand::ReleaseAllocation { order }
                    }
                    other => {
                        warn!(?other, "no command settles this; left alone");
                        continue;
                    }
                };
                let stock_points = shared.stock_points.clone();
                let answered = ask(|answer| {
                    stock_points.send(stock_point, |ticket| StockPointMsg::Command {
                        command,
                        answer,
                        ticket,
                    })
                })
                .await;
                // A refusal means it was settled meanwhile (a hold that expired on its own).
                if let Err(error) = answered {
                    warn!(stock_point = ?stock_point, %error, "could not settle at a stock point; expiry or the next start will");
                }
            }
            reservation => reservations.push(reservation),
        }
    }
    if !reservations.is_empty() {
        crate::call::log_durably(&shared.log, reservations.clone()).await?;
        for event in &reservations {
            state.apply(event);
        }
    }
    start_orchestrator(shared, supervisor, &state)
        .await
        .map_err(|e| CommandError::Unavailable(format!("the orchestrator did not start: {e}")))?;
    Ok((events, settled))
}

/// Rebuilds a failed stock point's inventory from what is durable and starts it; returns the
/// events replayed. Its directory entry is empty meanwhile, so nothing new reaches it: what the
/// failed actor handed the log is before the barrier, and the inventory the replay rebuilds is
/// exactly what was acknowledged. (Messages in the failed mailbox are lost: their callers hear
/// "unavailable" or time out, outcome unknown.)
async fn revive_stock_point(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
    id: StockPointId,
) -> Result<u64, CommandError> {
    let (state, events, _) = replay_durable(shared).await?;
    let inventory = state
        .inventory(id)
        .cloned()
        .unwrap_or_else(|| StockPointInventory::new(id));
    start_stock_point(shared, supervisor, inventory)
        .await
        .map_err(|e| CommandError::Unavailable(format!("the stock point did not start: {e}")))?;
    Ok(events)
}

/// Every `every`, folds the log into a snapshot and compacts it, until the system stops.
async fn checkpoints(shared: std::sync::Weak<Shared>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let started = Instant::now();
        match checkpoint(&shared).await {
            Ok(None) => {}
            Ok(Some((events, covered))) => info!(
                events,
                covered = %covered,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checkpoint: snapshot saved and log compacted"
            ),
            // The log was closed: the system is stopping.
            Err(_) if !log_open(&shared) => return,
            // The log only grows until the next one.
            Err(error) => warn!(%error, "checkpoint failed; the next one tries again"),
        }
    }
}

/// Whether the log is still open (shutdown takes it).
fn log_open(shared: &Shared) -> bool {
    // Without waiting: a replay may hold the lock for a while, and this runs on the runtime.
    shared
        .wal
        .upgrade()
        .is_some_and(|wal| match wal.try_read() {
            Ok(wal) => wal.is_some(),
            Err(std::sync::TryLockError::Poisoned(wal)) => wal.into_inner().is_some(),
            Err(std::sync::TryLockError::WouldBlock) => true,
        })
}

/// A snapshot of everything durable, taken from the log itself rather than from the actors:
/// the state the last snapshot and the log through a barrier replay to, saved as covering the
/// barrier's seq, then the records it covers removed. A consistent cut by construction: it is
/// exactly what a start-up would rebuild from that prefix of the log (which settles whatever
/// was half done at that seq, as it would after a crash there). Returns the events replayed
/// and the seq covered, or `None` when nothing was logged since the last snapshot.
async fn checkpoint(shared: &Arc<Shared>) -> Result<Option<(u64, Seq)>, CommandError> {
    let through = crate::call::log_barrier(&shared.log).await?;
    if through.get() <= shared.covered.load(Ordering::Acquire) {
        return Ok(None);
    }
    let (state, events, through) = replay_through(shared, through).await?;
    let saving = shared.clone();
    tokio::task::spawn_blocking(move || -> Result<(), WalError> {
        let wal = saving.wal.upgrade().ok_or(WalError::Closed)?;
        let wal = write(&wal);
        let wal = wal.as_ref().ok_or(WalError::Closed)?;
        wal.save_snapshot(STATE_SNAPSHOT, through, &state)?;
        wal.compact()?;
        Ok(())
    })
    .await
    .map_err(|e| CommandError::Unavailable(format!("the checkpoint stopped: {e}")))?
    .map_err(CommandError::from)?;
    shared.covered.fetch_max(through.get(), Ordering::AcqRel);
    shared.checkpoints.fetch_add(1, Ordering::Relaxed);
    Ok(Some((events, through)))
}

/// Asks every stock point a question, which it takes after everything sent to it before (a
/// mailbox is first in, first out): by the answer, what a failed actor sent it is in the log's
/// hands.
async fn drain_stock_points(shared: &Arc<Shared>) -> Result<(), CommandError> {
    for (sp, handle) in shared.stock_points.all() {
        let asked =
            crate::call::query(&handle.actor, StockPointMsg::Inspect, "stock point stopped").await;
        match asked {
            Ok(_) => {}
            // A stock point that stopped lost its mailbox, and the failed actor's messages in
            // it; it restarts from what the log acknowledged, which the replay reads too.
            Err(CommandError::Unavailable(_)) => {
                warn!(stock_point = ?sp, "stock point stopped; not drained before the replay")
            }
            // A running one that did not answer may still hold some of them: replaying now
            // would miss what it logs next.
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A restart that failed is tried again this many times, waiting twice as long each time from
/// [`REVIVE_BACKOFF`]: the moment an actor fails is when the log's queue is likeliest to be
/// full and the stock points' mailboxes deep.
const REVIVE_ATTEMPTS: usize = 8;
const REVIVE_BACKOFF: Duration = Duration::from_millis(50);

/// Runs `revive` until it succeeds or [`REVIVE_ATTEMPTS`] have failed. Every step of a revive
/// can be run again: draining and replaying change nothing, a second release of a hold is a
/// refusal, and what the first try logged is in the second try's replay.
async fn with_retries<T, Fut>(
    what: &str,
    mut revive: impl FnMut() -> Fut,
) -> Result<T, CommandError>
where
    Fut: std::future::Future<Output = Result<T, CommandError>>,
{
    let mut wait = REVIVE_BACKOFF;
    let mut attempt = 1;
    loop {
        match revive().await {
            Ok(done) => return Ok(done),
            Err(error) if attempt < REVIVE_ATTEMPTS => {
                warn!(what, attempt, %error, "restart failed; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Waits until everything appended to the log so far is durable and acknowledged (a barrier),
/// then replays the last snapshot and the log through the barrier into a whole state, off the
/// runtime's workers; returns it with the number of events replayed and the barrier's seq.
async fn replay_durable(shared: &Arc<Shared>) -> Result<(State, u64, Seq), CommandError> {
    let through = crate::call::log_barrier(&shared.log).await?;
    replay_through(shared, through).await
}

/// Replays the last snapshot and the log through `through` (durable) into a whole state, off
/// the runtime's workers.
async fn replay_through(
    shared: &Arc<Shared>,
    through: Seq,
) -> Result<(State, u64, Seq), CommandError> {
    let replaying = shared.clone();
    tokio::task::spawn_blocking(move || -> Result<_, WalError> {
        let wal = replaying.wal.upgrade().ok_or(WalError::Closed)?;
        let wal = wal.read().unwrap_or_else(|e| e.into_inner());
        let wal = wal.as_ref().ok_or(WalError::Closed)?;
        let mut rebuild = Rebuild::default();
        let report = wal.replay_through(through, &mut rebuild)?;
        Ok((rebuild.state, report.events, through))
    })
    .await
    .map_err(|e| CommandError::Unavailable(format!("the replay stopped: {e}")))?
    .map_err(CommandError::from)
}

/// Restarts a failed order desk from the log, off the supervisor. Its order actors were killed
/// with it (ractor stops a failed actor's children), and the messages in its mailbox and theirs
/// are lost: their callers hear "unavailable" or time out (outcome unknown), and a warehouse's
/// report goes back to open. Until the new desk is in place every order command is refused.
fn restart_desk(
    supervisor: &ActorRef<SupervisorMsg>,
    reason: &ActorProcessingErr,
    state: &mut SupervisorState,
) {
    if !may_restart(&mut state.desk_restarts) {
        error!(%reason, "order desk failed too often; it stays down and every order command is refused");
        return;
    }
    error!(%reason, "order desk failed; restarting it from the log");
    let shared = state.shared.clone();
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        match with_retries("order desk", || revive_desk(&shared, &supervisor)).await {
            Ok((events, orders)) => info!(
                events,
                orders,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "order desk restarted from the log"
            ),
            Err(error) => error!(%error, "order desk did not restart; it stays down"),
        }
    });
}

/// Rebuilds the orders and returns from what is durable and starts a desk on them; returns the
/// events replayed and the orders it took.
///
/// 1. Every order actor of the failed desk has ended (no append of theirs can follow), and every
///    stock point has handled what they sent it.
/// 2. A log barrier, then the last snapshot and the log through it, replayed.
/// 3. Each warehouse's work is matched to the fulfilments open there; the new desk starts on
///    the orders and returns of that state (passivated: each actor starts on its next
///    message), and orders still allocated are released after a wave window, as at start-up.
async fn revive_desk(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
) -> Result<(u64, usize), CommandError> {
    let ended = crate::call::poll_until(Instant::now() + CALL_TIMEOUT, || {
        shared.order_actors.load(Ordering::Acquire) == 0
    })
    .await;
    if !ended {
        return Err(CommandError::Timeout);
    }
    // Stock commands the ended actors sent are logged before the replay reads the log.
    drain_stock_points(shared).await?;
    let (state, events, _) = replay_durable(shared).await?;
    // Release and cancel notices a warehouse was down for are kept by the order actor, and
    // ended with it: each warehouse makes its work match what the orders have open there.
    // Before the new desk starts, so that any release it makes comes after.
    for (sp, _) in shared.warehouses.all() {
        let open = released_at(state.orders.values(), sp);
        if let Err(error) = shared
            .warehouses
            .send(sp, |ticket| WarehouseMsg::Open { open, ticket })
        {
            warn!(stock_point = ?sp, %error, "a warehouse's work was not matched to the orders");
        }
    }
    let desk = start_desk(shared, supervisor, &state)
        .await
        .map_err(|e| CommandError::Unavailable(format!("the order desk did not start: {e}")))?;
    release_allocated(&desk, &state);
    Ok((events, state.orders.len()))
}

/// Restarts a failed warehouse actor with tasks rebuilt from the fulfilments open there, as at
/// start-up; an actor the supervisor does not know is logged and left alone.
async fn restart_warehouse(
    supervisor: &ActorRef<SupervisorMsg>,
    cell: &ActorCell,
    reason: &ActorProcessingErr,
    state: &mut SupervisorState,
) -> Result<(), ActorProcessingErr> {
    let Some(sp) = state.shared.warehouses.find(cell.get_id()) else {
        error!(actor = ?cell.get_id(), %reason, "actor failed; it is not restarted");
        return Ok(());
    };
    state.shared.warehouses.set(sp, None);
    if !may_restart(state.warehouse_restarts.entry(sp).or_default()) {
        error!(stock_point = ?sp, %reason, "warehouse failed too often; it stays down and takes no tasks");
        return Ok(());
    }
    // Off the supervisor, which must stay free for other failures: the desk may take a while.
    let shared = state.shared.clone();
    let supervisor = supervisor.clone();
    error!(stock_point = ?sp, %reason, "warehouse failed; restarting it with its open fulfilments");
    tokio::spawn(async move {
        match with_retries("warehouse", || revive_warehouse(&shared, &supervisor, sp)).await {
            Ok(fulfilments) => {
                info!(stock_point = ?sp, fulfilments, "warehouse restarted with its open fulfilments")
            }
            Err(error) => {
                error!(stock_point = ?sp, %error, "warehouse did not restart; it stays down")
            }
        }
    });
    Ok(())
}

/// Starts a failed warehouse again on the fulfilments the order desk has open at `sp`; returns
/// how many. Fails while no desk answers (it may be restarting itself), for a retry.
async fn revive_warehouse(
    shared: &Arc<Shared>,
    supervisor: &ActorRef<SupervisorMsg>,
    sp: StockPointId,
) -> Result<usize, CommandError> {
    let desk = lock(&shared.desk)
        .clone()
        .ok_or_else(|| CommandError::Unavailable("no order desk".into()))?;
    let released = crate::call::query(
        &desk,
        |reply| DeskMsg::ReleasedAt(sp, reply),
        "order desk stopped",
    )
    .await?;
    let fulfilments = released.len();
    start_warehouse(shared, supervisor, sp, released)
        .await
        .map_err(|e| CommandError::Unavailable(format!("the warehouse did not start: {e}")))?;
    Ok(fulfilments)
}
