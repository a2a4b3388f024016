//! The systems under test, behind one shape: set up stock, open a session per worker, reserve,
//! confirm, read availability, and read the levels back for the invariant check.
//!
//! - [`Target::InProcess`]: Conductor's actors through their handle, no HTTP.
//! - [`Target::Http`]: a Conductor server over its HTTP API (API.md).
//! - [`Target::Redis`], [`Target::Postgres`]: the peers over their own protocols.
//! - [`Target::Service`]: a peer behind the thin checkout service ([`crate::peers::service`]),
//!   driven by the same HTTP client as Conductor; its levels are read from the store behind it.

use std::sync::Arc;
use std::time::Duration;

use conductor_actors::error::{CommandError, Refusal};
use conductor_actors::orchestrator::StockPointSpec;
use conductor_actors::Conductor;
use conductor_engine::checkout::ReserveRequest;
use conductor_engine::ids::{Code, Qty, ReservationId, StockPointId};
use conductor_engine::inventory::{AdjustReason, Adjustment};
use conductor_engine::network::{Capability, Channel, Location, StockPointKind};
use serde::Deserialize;

use crate::peers::{postgres::PgStore, redis::RedisStore};

/// How long one HTTP request may take before it counts as a timeout (its outcome unknown).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The stock point every flash-sale SKU is stocked at.
pub const FLASH_STOCK_POINT: &str = "WH1";

/// The answer to one operation: a success, a business refusal, or a failure.
#[derive(Debug)]
pub enum Answer<T> {
    Ok(T),
    /// The system's considered "no" (`insufficient-stock`): nothing changed.
    Refused(String),
    /// The system failed to answer. `in_doubt` when the request may have taken effect (a
    /// timeout after sending), so that the invariant check allows for it.
    Failed {
        kind: String,
        in_doubt: bool,
    },
}

impl<T> Answer<T> {
    fn failed(kind: impl Into<String>, in_doubt: bool) -> Answer<T> {
        Answer::Failed {
            kind: kind.into(),
            in_doubt,
        }
    }
}

/// One SKU as the system reports it after a run.
#[derive(Clone, Debug, Default, serde::Serialize, Deserialize)]
pub struct Level {
    pub sku: String,
    pub on_hand: u64,
    pub held: u64,
    pub allocated: u64,
    pub available: u64,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub fn err(message: impl Into<String>) -> Error {
    message.into().into()
}

#[derive(Clone)]
pub enum Target {
    InProcess(Conductor),
    Http(Arc<Http>),
    Redis(Arc<RedisStore>),
    Postgres(Arc<PgStore>),
    Service { http: Arc<Http>, store: Box<Target> },
}

impl Target {
    /// Defines the flash-sale stock point (for Conductor) and sets every SKU's stock.
    pub async fn setup(&self, skus: &[String], stock: u64) -> Result<(), Error> {
        match self {
            Target::InProcess(c) => setup_in_process(c, skus, stock).await,
            Target::Http(http) => http.setup_flash(skus, stock).await,
            Target::Redis(r) => r.setup(skus, stock).await,
            Target::Postgres(p) => p.setup(skus, stock).await,
            Target::Service { store, .. } => Box::pin(store.setup(skus, stock)).await,
        }
    }

    pub async fn session(&self, skus: &Arc<Vec<String>>) -> Result<Session, Error> {
        Ok(match self {
            Target::InProcess(c) => Session::InProcess {
                c: c.clone(),
                codes: skus
                    .iter()
                    .map(|s| Code::parse(s).map_err(|e| err(format!("SKU {s}: {e:?}"))))
                    .collect::<Result<_, _>>()?,
            },
            Target::Http(http) | Target::Service { http, .. } => Session::Http {
                http: http.clone(),
                skus: skus.clone(),
            },
            Target::Redis(r) => Session::Redis(r.session(skus.clone()).await?),
            Target::Postgres(p) => Session::Postgres(p.session(skus.clone()).await?),
        })
    }

    /// The levels of `skus` as the system itself reports them.
    pub async fn levels(&self, skus: &[String]) -> Result<Vec<Level>, Error> {
        match self {
            Target::InProcess(c) => levels_in_process(c, skus).await,
            Target::Http(http) => http.levels(skus).await,
            Target::Redis(r) => r.levels(skus).await,
            Target::Postgres(p) => p.levels(skus).await,
            Target::Service { store, .. } => Box::pin(store.levels(skus)).await,
        }
    }

    /// The status of a reservation (`held`, `confirmed`, ...), `None` when unknown.
    pub async fn reservation_status(&self, id: &str) -> Result<Option<String>, Error> {
        match self {
            Target::InProcess(c) => {
                let Some(rid) = ReservationId::parse_external(id) else {
                    return Ok(None);
                };
                let found = c.reservation(rid).await.map_err(|e| err(e.to_string()))?;
                Ok(found.map(|r| format!("{:?}", r.status_at(c.now())).to_lowercase()))
            }
            Target::Http(http) | Target::Service { http, .. } => http.reservation_status(id).await,
            Target::Redis(_) | Target::Postgres(_) => Err(err("not supported by this peer")),
        }
    }
}

/// The worker's side of a target: its own connection where the system has connections.
pub enum Session {
    InProcess {
        c: Conductor,
        codes: Vec<Code>,
    },
    Http {
        http: Arc<Http>,
        skus: Arc<Vec<String>>,
    },
    Redis(crate::peers::redis::RedisSession),
    Postgres(crate::peers::postgres::PgSession),
}

/// Returns a hold id.
impl Session {
    pub async fn reserve(&mut self, sku: usize, qty: u64, ttl_s: u64) -> Answer<String> {
        match self {
            Session::InProcess { c, codes } => {
                let request = flash_request(codes[sku].clone(), qty, ttl_s);
                match c.reserve(request).await {
                    Ok(Ok(r)) => Answer::Ok(r.id.external()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Session::Http { http, skus } => http.reserve(&skus[sku], qty, ttl_s).await,
            Session::Redis(r) => r.reserve(sku, qty, ttl_s).await,
            Session::Postgres(p) => p.reserve(sku, qty, ttl_s).await,
        }
    }

    /// Confirms a hold into an order (Conductor only: the peers model the hold alone).
    pub async fn confirm(&mut self, id: &str) -> Answer<()> {
        match self {
            Session::InProcess { c, .. } => {
                let Some(rid) = ReservationId::parse_external(id) else {
                    return Answer::failed("bad-id", false);
                };
                match c.confirm(rid, None).await {
                    Ok(Ok(_)) => Answer::Ok(()),
                    Ok(Err(refusal)) => Answer::Refused(refusal_kind(&refusal).into()),
                    Err(e) => command_failure(&e),
                }
            }
            Session::Http { http, .. } => http.confirm(id).await,
            _ => Answer::failed("unsupported", false),
        }
    }

    /// Reads the availability of `skus` in one call; answers the sum of what is available.
    pub async fn availability(&mut self, skus: &[usize]) -> Answer<u64> {
        match self {
            Session::InProcess { c, codes } => {
                let board = c.board();
                let mut total = 0;
                for &i in skus {
                    if let Some(id) = board.sku_id(codes[i].as_str()) {
                        total += board
                            .with_figures(id, |f| f.iter().map(|x| x.available.0).sum::<u64>());
                    }
                }
                Answer::Ok(total)
            }
            Session::Http { http, skus: names } => {
                let wanted: Vec<&str> = skus.iter().map(|&i| names[i].as_str()).collect();
                match http.availability(&wanted).await {
                    Ok(items) => Answer::Ok(items.iter().map(|l| l.available).sum()),
                    Err(failure) => failure.into_answer(),
                }
            }
            _ => Answer::failed("unsupported", false),
        }
    }
}

fn flash_request(code: Code, qty: u64, ttl_s: u64) -> ReserveRequest {
    ReserveRequest::web(vec![(code, Qty(qty))], ttl_s)
}

pub fn refusal_kind(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Insufficient(_) => "insufficient-stock",
        Refusal::NotFound(_) => "not-found",
        Refusal::Conflict(_) => "conflict",
        Refusal::Invalid { .. } => "invalid",
        Refusal::LimitExceeded(_) => "limit-exceeded",
    }
}

pub fn command_failure<T>(e: &CommandError) -> Answer<T> {
    match e {
        CommandError::Busy(_) => Answer::failed("busy", false),
        // No answer in time: the hold may or may not be in the log.
        CommandError::Timeout => Answer::failed("timeout", true),
        CommandError::LogFailed(_) => Answer::failed("log-failed", true),
        CommandError::Unavailable(_) => Answer::failed("unavailable", false),
    }
}

/// Defines a warehouse (if missing) and sets the stock of `skus` at it.
async fn setup_in_process(c: &Conductor, skus: &[String], stock: u64) -> Result<(), Error> {
    let sp = match c
        .stock_point_id(FLASH_STOCK_POINT)
        .await
        .map_err(|e| err(e.to_string()))?
    {
        Some(sp) => sp,
        None => {
            let spec = StockPointSpec {
                code: Code::parse(FLASH_STOCK_POINT).map_err(|e| err(format!("{e:?}")))?,
                kind: StockPointKind::Warehouse,
                name: "flash sale warehouse".into(),
                location: Location {
                    lat: 48.85,
                    lon: 2.35,
                },
                priority: 1,
                channels: vec![Channel::Web, Channel::Store],
                capabilities: vec![Capability::Ship, Capability::Pickup, Capability::Returns],
                cost_per_shipment: 500,
                tags: vec![],
            };
            c.put_stock_point(spec)
                .await
                .map_err(|e| err(e.to_string()))?
                .map_err(|e| err(e.to_string()))?
                .id
        }
    };
    set_stock_in_process(c, sp, skus, stock).await
}

pub async fn set_stock_in_process(
    c: &Conductor,
    sp: StockPointId,
    skus: &[String],
    stock: u64,
) -> Result<(), Error> {
    let codes = skus
        .iter()
        .map(|s| Code::parse(s).map_err(|e| err(format!("SKU {s}: {e:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let ids = c
        .define_skus(codes)
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))?;
    for id in ids {
        // The stock point actor starts just after its definition is durable: retry briefly.
        let mut tries = 0;
        loop {
            match c
                .adjust(
                    sp,
                    id,
                    Adjustment::Set(Qty(stock)),
                    AdjustReason::Adjustment,
                )
                .await
            {
                Ok(Ok(())) => break,
                outcome if tries >= 100 => return Err(err(format!("stock not set: {outcome:?}"))),
                _ => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    Ok(())
}

async fn levels_in_process(c: &Conductor, skus: &[String]) -> Result<Vec<Level>, Error> {
    let mut levels: Vec<Level> = skus
        .iter()
        .map(|s| Level {
            sku: s.clone(),
            ..Level::default()
        })
        .collect();
    let stock_points = c.stock_points().await.map_err(|e| err(e.to_string()))?;
    for sp in stock_points {
        let inventory = c.inventory(sp.id).await.map_err(|e| err(e.to_string()))?;
        for level in &mut levels {
            let Some(id) = c.board().sku_id(&level.sku) else {
                continue;
            };
            if let Some(p) = inventory.position(id) {
                level.on_hand += p.on_hand.0;
                level.held += p.held.0;
                level.allocated += p.allocated.0;
                level.available += p.available().0;
            }
        }
    }
    Ok(levels)
}

/// A failed HTTP exchange: a transport error or an unexpected status.
#[derive(Debug)]
pub struct Failure {
    pub kind: String,
    pub in_doubt: bool,
    pub detail: String,
}

impl Failure {
    pub fn into_answer<T>(self) -> Answer<T> {
        Answer::Failed {
            kind: self.kind,
            in_doubt: self.in_doubt,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Failure {}

/// An HTTP client on a Conductor-shaped API: one keep-alive pool shared by every worker.
pub struct Http {
    pub client: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// `Bearer <key>`, when the server wants one.
    pub auth: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct StatusOnly {
    status: String,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct ProblemType {
    #[serde(rename = "type", default)]
    kind: String,
}

impl Http {
    pub fn new(base: &str, key: Option<&str>) -> Result<Http, Error> {
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .tcp_nodelay(true)
            // Every worker keeps its connection alive between requests (wrk does the same).
            .pool_max_idle_per_host(usize::MAX)
            .build()?;
        Ok(Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            auth: key.map(|k| format!("Bearer {k}")),
        })
    }

    /// Sends one request; answers the status and body, or a failure for transport errors.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(auth) = &self.auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, bytes.to_vec()))
    }

    /// Sends and expects `ok`; any other status is a failure (with the problem's type).
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        ok: u16,
    ) -> Result<Vec<u8>, Failure> {
        let (status, bytes) = self.send(method, path, body).await?;
        if status == ok {
            Ok(bytes)
        } else {
            Err(status_failure(status, &bytes))
        }
    }

    pub async fn reserve(&self, sku: &str, qty: u64, ttl_s: u64) -> Answer<String> {
        let body = format!(
            r#"{{"channel":"web","lines":[{{"sku":"{sku}","qty":{qty}}}],"ttl_seconds":{ttl_s},"allow_split":true,"allow_partial":false}}"#
        );
        match self
            .send(reqwest::Method::POST, "/v1/reservations", Some(body))
            .await
        {
            Ok((201, bytes)) => match serde_json::from_slice::<IdOnly>(&bytes) {
                Ok(r) => Answer::Ok(r.id),
                Err(_) => Answer::failed("bad-response", true),
            },
            Ok((409, bytes)) => Answer::Refused(problem_name(&bytes)),
            Ok((status, bytes)) => status_failure(status, &bytes).into_answer(),
            Err(failure) => failure.into_answer(),
        }
    }

    pub async fn confirm(&self, id: &str) -> Answer<()> {
        match self
            .send(
                reqwest::Method::POST,
                &format!("/v1/reservations/{id}/confirm"),
                Some("{}".into()),
            )
            .await
        {
            Ok((201, _)) => Answer::Ok(()),
            Ok((409, bytes)) => Answer::Refused(problem_name(&bytes)),
            Ok((status, bytes)) => status_failure(status, &bytes).into_answer(),
            Err(failure) => failure.into_answer(),
        }
    }

    pub async fn availability(&self, skus: &[&str]) -> Result<Vec<Level>, Failure> {
        let query: Vec<String> = skus.iter().map(|s| format!("sku={s}")).collect();
        let path = format!("/v1/availability?{}", query.join("&"));
        let bytes = self.expect(reqwest::Method::GET, &path, None, 200).await?;
        serde_json::from_slice::<Items<Level>>(&bytes)
            .map(|i| i.items)
            .map_err(|e| Failure {
                kind: "bad-response".into(),
                in_doubt: false,
                detail: e.to_string(),
            })
    }

    pub async fn levels(&self, skus: &[String]) -> Result<Vec<Level>, Error> {
        let mut levels = Vec::new();
        // API.md: at most 1,000 SKUs per call.
        for chunk in skus.chunks(1_000) {
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            levels.extend(self.availability(&names).await?);
        }
        Ok(levels)
    }

    pub async fn reservation_status(&self, id: &str) -> Result<Option<String>, Error> {
        let (status, bytes) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/reservations/{id}"),
                None,
            )
            .await?;
        match status {
            200 => Ok(Some(serde_json::from_slice::<StatusOnly>(&bytes)?.status)),
            404 => Ok(None),
            other => Err(status_failure(other, &bytes).into()),
        }
    }

    pub async fn put_stock_point(&self, code: &str, body: serde_json::Value) -> Result<(), Error> {
        self.expect(
            reqwest::Method::PUT,
            &format!("/v1/stock-points/{code}"),
            Some(body.to_string()),
            200,
        )
        .await?;
        Ok(())
    }

    /// Sets on_hand of `(stock point, sku, qty)` triples, retrying briefly while a stock point
    /// that was just defined starts.
    pub async fn set_stock(&self, lines: &[(&str, &str, u64)]) -> Result<(), Error> {
        for chunk in lines.chunks(500) {
            let adjustments: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(sp, sku, qty)| {
                    serde_json::json!({"stock_point": sp, "sku": sku, "set_on_hand": qty})
                })
                .collect();
            let body = serde_json::json!({"adjustments": adjustments, "reason": "cycle-count"})
                .to_string();
            let mut tries = 0;
            loop {
                match self
                    .expect(
                        reqwest::Method::POST,
                        "/v1/inventory/adjustments",
                        Some(body.clone()),
                        200,
                    )
                    .await
                {
                    Ok(_) => break,
                    Err(e) if tries >= 100 => return Err(e.into()),
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn setup_flash(&self, skus: &[String], stock: u64) -> Result<(), Error> {
        self.put_stock_point(
            FLASH_STOCK_POINT,
            serde_json::json!({
                "kind": "warehouse", "name": "flash sale warehouse",
                "location": {"lat": 48.85, "lon": 2.35}, "priority": 1,
                "channels": ["web", "store"], "capabilities": ["ship", "pickup", "returns"]
            }),
        )
        .await?;
        let lines: Vec<(&str, &str, u64)> = skus
            .iter()
            .map(|s| (FLASH_STOCK_POINT, s.as_str(), stock))
            .collect();
        self.set_stock(&lines).await
    }
}

fn transport(e: reqwest::Error) -> Failure {
    // A refused connection never reached the server; anything later may have.
    let (kind, in_doubt) = if e.is_connect() {
        ("connect", false)
    } else if e.is_timeout() {
        ("timeout", true)
    } else {
        ("transport", true)
    };
    Failure {
        kind: kind.into(),
        in_doubt,
        detail: e.to_string(),
    }
}

fn problem_name(bytes: &[u8]) -> String {
    let kind = serde_json::from_slice::<ProblemType>(bytes)
        .map(|p| p.kind)
        .unwrap_or_default();
    match kind.rsplit('/').next() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => "conflict".into(),
    }
}

fn status_failure(status: u16, bytes: &[u8]) -> Failure {
    // 429 and 503 are refusals to start; a 500 may hide a timeout whose outcome is unknown.
    let in_doubt = status >= 500 && status != 503;
    Failure {
        kind: format!("http-{status}"),
        in_doubt,
        detail: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
    }
}
