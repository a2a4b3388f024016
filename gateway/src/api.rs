//! The `/v1` handlers: parse and check the request, one call into the [`Conductor`], render the
//! answer. Each handler states its scope first; the auth middleware has already found the key.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Extension;
use conductor_actors::warehouse::{Task, TaskKind, TaskStatus};
use conductor_actors::Conductor;
use conductor_engine::checkout::ReserveRequest;
use conductor_engine::ids::{IncomingId, OrderId, Qty, ReservationId, ReturnId, StockPointId};
use conductor_engine::inventory::{AdjustReason, Adjustment};
use conductor_engine::limits::{LINE_QTY_MAX, REQUEST_LINES_MAX};
use conductor_engine::network::{Channel, Location, Network};
use conductor_engine::order::{Order, OrderEvent};
use conductor_engine::reservation::Reservation;
use conductor_engine::returns::{ReturnLine, ReturnRecord};
use conductor_engine::sourcing::{Rule, RuleSet};
use serde_json::{json, Value};

use crate::app::{
    code, sku_code, sku_defining, sku_known, sp_code, stock_point_in_body, stock_point_in_path,
    Caller, IdempotencyContext, Json, JsonBody, OptionalJson, Shared,
};
use crate::auth::{Scope, KEY_STOCK_POINTS_MAX, RATE_PER_S_MAX};
use crate::dto::*;
use crate::metrics::{count, METRICS};
use crate::problem::{answer, query, ApiResult, Problem};
use crate::time;

/// SKUs one availability call may ask for.
pub const AVAILABILITY_SKUS_MAX: usize = 1_000;
/// Tags one request may carry, and their length.
const TAGS_MAX: usize = 32;
const TAG_BYTES_MAX: usize = 64;
/// Longest stock point name.
const NAME_BYTES_MAX: usize = 256;
/// How long a PUT of a new stock point waits for its actors to start.
const STOCK_POINT_START_WAIT: Duration = Duration::from_secs(3);

type Created<T> = (StatusCode, Json<T>);

fn qty(field: impl std::fmt::Display, value: u64) -> ApiResult<Qty> {
    if value == 0 || value > LINE_QTY_MAX {
        return Err(Problem::invalid(
            field.to_string(),
            format!("1 to {LINE_QTY_MAX}"),
        ));
    }
    Ok(Qty(value))
}

fn parse_id<T>(parsed: Option<T>, what: &str, text: &str) -> ApiResult<T> {
    parsed.ok_or_else(|| Problem::not_found(format!("{what} {text} not found")))
}

// --- keys -----------------------------------------------------------------------------------

#[utoipa::path(post, path = "/v1/api-keys", tag = "auth", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 422, body = ProblemView)))]
pub async fn create_key(
    State(st): State<Shared>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateKey>,
) -> ApiResult<Created<CreatedKey>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    if body.scopes.is_empty() {
        return Err(Problem::invalid("scopes", "at least one scope"));
    }
    if body.stock_points.len() > KEY_STOCK_POINTS_MAX {
        return Err(Problem::invalid(
            "stock_points",
            format!("at most {KEY_STOCK_POINTS_MAX}"),
        ));
    }
    let network = c.network();
    let mut stock_points = Vec::with_capacity(body.stock_points.len());
    for (i, sp) in body.stock_points.iter().enumerate() {
        stock_points.push(
            stock_point_in_body(&network, &format!("stock_points[{i}]"), sp)?
                .code
                .clone(),
        );
    }
    if body.scopes.contains(&Scope::Fulfilment) && stock_points.is_empty() {
        return Err(Problem::invalid(
            "stock_points",
            "a fulfilment key must be bound to at least one stock point",
        ));
    }
    if let Some(rate) = body.rate_per_s {
        if rate == 0 || rate > RATE_PER_S_MAX {
            return Err(Problem::invalid(
                "rate_per_s",
                format!("1 to {RATE_PER_S_MAX}"),
            ));
        }
    }
    let created_at = time::format(c.now());
    let (record, secret) = tokio::task::spawn_blocking({
        let st = st.clone();
        let scopes = body.scopes.clone();
        move || {
            st.keys
                .create(scopes, stock_points, body.rate_per_s, created_at)
        }
    })
    .await
    .map_err(|_| Problem::internal())?
    .map_err(|e| {
        tracing::error!(error = %e, "key store write failed");
        Problem::unavailable("the key store could not be written")
    })?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: record.id,
            key: secret,
            scopes: record.scopes,
            stock_points: record.stock_points.iter().map(|c| c.to_string()).collect(),
            rate_per_s: record.rate_per_s,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "auth", responses((status = 200, body = Items<KeyView>)))]
pub async fn list_keys(
    State(st): State<Shared>,
    Caller(caller): Caller,
) -> ApiResult<Json<Items<KeyView>>> {
    caller.require(Scope::Admin)?;
    let items = st
        .keys
        .list()
        .into_iter()
        .map(|r| KeyView {
            id: r.id,
            scopes: r.scopes,
            stock_points: r.stock_points.iter().map(|c| c.to_string()).collect(),
            rate_per_s: r.rate_per_s,
            created_at: r.created_at,
        })
        .collect();
    Ok(Json(Items { items }))
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "auth", responses((status = 204), (status = 404, body = ProblemView)))]
pub async fn revoke_key(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    let st2 = st.clone();
    let id2 = id.clone();
    let revoked = tokio::task::spawn_blocking(move || st2.keys.revoke(&id2))
        .await
        .map_err(|_| Problem::internal())?
        .map_err(|_| Problem::unavailable("the key store could not be written"))?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("key {id} not found")))
    }
}

// --- stock points ---------------------------------------------------------------------------

pub fn stock_point_view(sp: &conductor_engine::network::StockPoint) -> StockPointView {
    StockPointView {
        id: sp.code.to_string(),
        kind: sp.kind,
        name: sp.name.clone(),
        location: LatLon {
            lat: sp.location.lat,
            lon: sp.location.lon,
        },
        priority: sp.priority,
        channels: sp.channels.clone(),
        capabilities: sp.capabilities.clone(),
        cost_per_shipment: sp.cost_per_shipment,
        tags: sp.tags.clone(),
    }
}

fn check_tags(field: &str, tags: &[String]) -> ApiResult<()> {
    if tags.len() > TAGS_MAX {
        return Err(Problem::invalid(field, format!("at most {TAGS_MAX} tags")));
    }
    if let Some(i) = tags
        .iter()
        .position(|t| t.is_empty() || t.len() > TAG_BYTES_MAX)
    {
        return Err(Problem::invalid(
            format!("{field}[{i}]"),
            format!("1 to {TAG_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/stock-points/{id}", tag = "network", request_body = PutStockPoint,
    responses((status = 200, body = StockPointView), (status = 422, body = ProblemView)))]
pub async fn put_stock_point(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PutStockPoint>,
) -> ApiResult<Json<StockPointView>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let code = code("id", &id)?;
    if body.name.is_empty() || body.name.len() > NAME_BYTES_MAX {
        return Err(Problem::invalid(
            "name",
            format!("1 to {NAME_BYTES_MAX} bytes"),
        ));
    }
    let location = Location {
        lat: body.location.lat,
        lon: body.location.lon,
    };
    if !location.is_valid() {
        return Err(Problem::invalid(
            "location",
            "latitude -90..90 and longitude -180..180",
        ));
    }
    check_tags("tags", &body.tags)?;
    let existed = c.network().iter().any(|sp| sp.code == code);
    let spec = conductor_actors::orchestrator::StockPointSpec {
        code,
        kind: body.kind,
        name: body.name,
        location,
        priority: body.priority,
        channels: body.channels,
        capabilities: body.capabilities,
        cost_per_shipment: body.cost_per_shipment,
        tags: body.tags,
    };
    let sp = answer(c.put_stock_point(spec).await)?;
    if !existed {
        wait_for_stock_point(c, sp.id).await;
    }
    Ok(Json(stock_point_view(&sp)))
}

/// A new stock point's actors start after its definition is durable; wait for them, so that
/// the next request (stock, tasks) finds them.
async fn wait_for_stock_point(c: &Conductor, sp: StockPointId) {
    let deadline = tokio::time::Instant::now() + STOCK_POINT_START_WAIT;
    while tokio::time::Instant::now() < deadline {
        if c.inventory(sp).await.is_ok() && c.tasks(sp, true).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[utoipa::path(get, path = "/v1/stock-points", tag = "network", responses((status = 200, body = Items<StockPointView>)))]
pub async fn list_stock_points(
    State(st): State<Shared>,
    Caller(_caller): Caller,
) -> ApiResult<Json<Items<StockPointView>>> {
    // Any key may list the network: it names places, not stock.
    let c = st.c()?;
    let items = c.network().iter().map(stock_point_view).collect();
    Ok(Json(Items { items }))
}

// --- inventory ------------------------------------------------------------------------------

#[utoipa::path(post, path = "/v1/inventory/adjustments", tag = "inventory", request_body = Adjustments,
    responses((status = 200, body = Done), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
pub async fn adjust(
    State(st): State<Shared>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<Adjustments>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    if body.adjustments.is_empty() || body.adjustments.len() > REQUEST_LINES_MAX {
        return Err(Problem::invalid(
            "adjustments",
            format!("1 to {REQUEST_LINES_MAX} adjustments"),
        ));
    }
    let reason = match body.reason.as_deref() {
        Some("cycle-count") | Some("cycle_count") => AdjustReason::CycleCount,
        Some(r) if r.is_empty() || r.len() > TAG_BYTES_MAX => {
            return Err(Problem::invalid(
                "reason",
                format!("1 to {TAG_BYTES_MAX} bytes"),
            ))
        }
        _ => AdjustReason::Adjustment,
    };
    // Check every line before the first change, so that a bad line changes nothing.
    let network = c.network();
    let mut planned = Vec::with_capacity(body.adjustments.len());
    for (i, line) in body.adjustments.iter().enumerate() {
        let at = |f: &str| format!("adjustments[{i}].{f}");
        let sp = stock_point_in_body(&network, &at("stock_point"), &line.stock_point)?.id;
        code(at("sku"), &line.sku)?;
        let adjustment = match (line.set_on_hand, line.delta) {
            (Some(n), None) if n <= LINE_QTY_MAX * 1000 => Adjustment::Set(Qty(n)),
            (None, Some(d)) if d.unsigned_abs() <= LINE_QTY_MAX * 1000 => Adjustment::Delta(d),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Problem::invalid(at("set_on_hand"), "out of range"))
            }
            _ => {
                return Err(Problem::invalid(
                    at("set_on_hand"),
                    "exactly one of set_on_hand and delta",
                ))
            }
        };
        planned.push((sp, line.sku.as_str(), adjustment, at("sku")));
    }
    // Applied in order; a refusal stops the batch and says which line (earlier ones stand).
    for (i, (sp, sku, adjustment, field)) in planned.into_iter().enumerate() {
        let sku = sku_defining(c, &field, sku).await?;
        answer(c.adjust(sp, sku, adjustment, reason).await).map_err(|p| {
            let detail = format!("adjustments[{i}]: {}", p.detail);
            Problem { detail, ..p }.with("applied", json!(i))
        })?;
    }
    Ok(Json(json!({"ok": true})))
}

#[utoipa::path(put, path = "/v1/inventory/safety-stock", tag = "inventory", request_body = SafetyStock,
    responses((status = 200, body = Done), (status = 422, body = ProblemView)))]
pub async fn safety_stock(
    State(st): State<Shared>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<SafetyStock>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let sp = stock_point_in_body(&c.network(), "stock_point", &body.stock_point)?.id;
    if body.qty > LINE_QTY_MAX * 1000 {
        return Err(Problem::invalid("qty", "out of range"));
    }
    let sku = sku_defining(c, "sku", &body.sku).await?;
    answer(c.set_safety_stock(sp, sku, Qty(body.qty)).await)?;
    Ok(Json(json!({"ok": true})))
}

#[utoipa::path(post, path = "/v1/inventory/incoming", tag = "inventory", request_body = IncomingBody,
    responses((status = 201, body = IncomingView), (status = 422, body = ProblemView)))]
pub async fn incoming(
    State(st): State<Shared>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<IncomingBody>,
) -> ApiResult<Created<IncomingView>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let network = c.network();
    let sp = stock_point_in_body(&network, "stock_point", &body.stock_point)?;
    let qty = qty("qty", body.qty)?;
    let eta = time::parse(&body.eta).ok_or_else(|| Problem::invalid("eta", "an RFC 3339 time"))?;
    let sku = sku_defining(c, "sku", &body.sku).await?;
    let incoming = answer(c.expect_incoming(sp.id, sku, qty, eta).await)?;
    Ok((
        StatusCode::CREATED,
        Json(IncomingView {
            id: incoming.id.external(),
            stock_point: sp.code.to_string(),
            sku: body.sku,
            qty: incoming.qty.0,
            eta: time::format(incoming.eta),
        }),
    ))
}

#[utoipa::path(post, path = "/v1/inventory/receipts", tag = "inventory", request_body = Receipt,
    responses((status = 200, body = Done), (status = 403, body = ProblemView), (status = 422, body = ProblemView)))]
pub async fn receipt(
    State(st): State<Shared>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<Receipt>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Fulfilment)?;
    let c = st.c()?;
    let network = c.network();
    let sp = stock_point_in_body(&network, "stock_point", &body.stock_point)?;
    caller.require_stock_point(sp.code.as_str())?;
    let qty = qty("qty", body.qty)?;
    let incoming = match &body.incoming_id {
        Some(text) => Some(
            IncomingId::parse_external(text)
                .ok_or_else(|| Problem::invalid("incoming_id", "an id like IN-5"))?,
        ),
        None => None,
    };
    let sku = sku_defining(c, "sku", &body.sku).await?;
    answer(c.receive(sp.id, sku, qty, incoming).await)?;
    Ok(Json(json!({"ok": true})))
}

#[utoipa::path(put, path = "/v1/skus/{sku}/limits", tag = "inventory", request_body = SkuLimits,
    responses((status = 200, body = Done), (status = 422, body = ProblemView)))]
pub async fn sku_limits(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<SkuLimits>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let max = body
        .max_per_customer
        .map(|m| qty("max_per_customer", m))
        .transpose()?;
    let id = sku_defining(c, "sku", &sku).await?;
    answer(c.set_customer_limit(id, max).await)?;
    Ok(Json(
        json!({"sku": sku, "max_per_customer": body.max_per_customer}),
    ))
}

// --- availability ---------------------------------------------------------------------------

/// What an availability query asked for, checked.
pub struct AvailabilityQuery {
    pub skus: Vec<String>,
    pub channel: Option<Channel>,
    pub stock_point: Option<StockPointId>,
}

/// Parses `sku=A&sku=B[&channel=web][&stock_point=WH1][&key=...]`; repeated `sku` is why this
/// is not serde_urlencoded.
pub fn parse_availability_query(
    network: &Network,
    raw: Option<&str>,
) -> ApiResult<AvailabilityQuery> {
    let mut q = AvailabilityQuery {
        skus: Vec::new(),
        channel: None,
        stock_point: None,
    };
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*name {
            "sku" => {
                if q.skus.len() >= AVAILABILITY_SKUS_MAX {
                    return Err(Problem::invalid(
                        "sku",
                        format!("1 to {AVAILABILITY_SKUS_MAX} SKUs"),
                    ));
                }
                code("sku", &value)?;
                q.skus.push(value.into_owned());
            }
            "channel" => {
                q.channel = Some(
                    serde_json::from_value(Value::String(value.to_string())).map_err(|_| {
                        Problem::invalid("channel", "web, marketplace, b2b or store")
                    })?,
                );
            }
            "stock_point" => {
                q.stock_point = Some(stock_point_in_body(network, "stock_point", &value)?.id);
            }
            // The stream's EventSource cannot send headers; the key may come in the query.
            "key" => {}
            other => {
                return Err(Problem::invalid(
                    other.to_owned(),
                    "unknown query parameter",
                ))
            }
        }
    }
    if q.skus.is_empty() {
        return Err(Problem::invalid(
            "sku",
            format!("1 to {AVAILABILITY_SKUS_MAX} SKUs"),
        ));
    }
    Ok(q)
}

/// One SKU's availability over the eligible stock points, straight from the board (lock-free,
/// never a mailbox). `available` = Σ max(0, on_hand − held − allocated − safety_stock −
/// non_sellable) per stock point, which is the board's per-stock-point figure.
pub fn availability_item(
    c: &Conductor,
    network: &Network,
    q: &AvailabilityQuery,
    sku: &str,
) -> AvailabilityItem {
    let mut item = AvailabilityItem {
        sku: sku.to_owned(),
        available: 0,
        on_hand: 0,
        held: 0,
        allocated: 0,
        safety_stock: 0,
        incoming: Vec::new(),
        stock_points: Vec::new(),
    };
    let Some(id) = c.board().sku_id(sku) else {
        return item;
    };
    c.board().with_figures(id, |figures| {
        for f in figures {
            let Some(sp) = network.get(f.stock_point) else {
                continue;
            };
            if q.channel.is_some_and(|ch| !sp.serves(ch))
                || q.stock_point.is_some_and(|only| only != sp.id)
            {
                continue;
            }
            item.available += f.available.0;
            item.on_hand += f.on_hand.0;
            item.held += f.held.0;
            item.allocated += f.allocated.0;
            item.safety_stock += f.safety_stock.0;
            for i in &f.incoming {
                item.incoming.push(IncomingQty {
                    qty: i.qty.0,
                    eta: time::format(i.eta),
                });
            }
            item.stock_points.push(StockPointAvailable {
                id: sp.code.to_string(),
                available: f.available.0,
            });
        }
    });
    item.incoming.sort_by(|a, b| a.eta.cmp(&b.eta));
    item.stock_points
        .sort_by(|a, b| b.available.cmp(&a.available).then(a.id.cmp(&b.id)));
    item
}

#[utoipa::path(get, path = "/v1/availability", tag = "availability",
    params(("sku" = Vec<String>, Query, description = "1 to 1000, repeated"), ("channel" = Option<String>, Query), ("stock_point" = Option<String>, Query)),
    responses((status = 200, body = Items<AvailabilityItem>), (status = 422, body = ProblemView)))]
pub async fn availability(
    State(st): State<Shared>,
    Caller(caller): Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Items<AvailabilityItem>>> {
    caller.require(Scope::Read)?;
    let c = st.c()?;
    let network = c.network();
    let q = parse_availability_query(&network, raw.as_deref())?;
    let items = q
        .skus
        .iter()
        .map(|sku| availability_item(c, &network, &q, sku))
        .collect();
    Ok(Json(Items { items }))
}

// --- reservations and orders ----------------------------------------------------------------

fn reserve_request(
    network: &Network,
    body: ReserveBody,
    idempotency: Option<Extension<IdempotencyContext>>,
) -> ApiResult<ReserveRequest> {
    if body.lines.is_empty() || body.lines.len() > REQUEST_LINES_MAX {
        return Err(Problem::invalid(
            "lines",
            format!("1 to {REQUEST_LINES_MAX} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(body.lines.len());
    for (i, line) in body.lines.iter().enumerate() {
        lines.push((
            code(format_args!("lines[{i}].sku"), &line.sku)?,
            qty(format_args!("lines[{i}].qty"), line.qty)?,
        ));
    }
    let pickup_at = match &body.pickup_at {
        Some(text) => Some(stock_point_in_body(network, "pickup_at", text)?.id),
        None => None,
    };
    check_tags("tags", &body.tags)?;
    let request = ReserveRequest {
        channel: body.channel,
        lines,
        ship_to: body.ship_to.map(|l| Location {
            lat: l.lat,
            lon: l.lon,
        }),
        pickup_at,
        ttl_seconds: body.ttl_seconds,
        allow_split: body.allow_split,
        allow_partial: body.allow_partial,
        allow_backorder: body.allow_backorder,
        customer_ref: body.customer_ref,
        tags: body.tags,
        // The key travels into the reservation record, so that a retry after a crash that lost
        // the first answer still finds the first reservation.
        idempotency: idempotency.map(|Extension(i)| (i.key, i.fingerprint)),
    };
    request
        .validate()
        .map_err(|e| Problem::invalid(e.field, e.message))?;
    Ok(request)
}

pub fn reservation_view(c: &Conductor, network: &Network, r: &Reservation) -> ReservationView {
    let status = r.status_at(c.now()).as_str().to_owned();
    // The engine explains with interned ids; the API speaks codes.
    let explanation = ExplanationView {
        rule_set_version: r.explanation.rule_set_version,
        groups: r
            .explanation
            .groups
            .iter()
            .map(|g| GroupExplanationView {
                rule_index: g.rule_index,
                rule_name: g.rule_name.to_string(),
                strategy: g.strategy,
                lines: g.lines.clone(),
                candidates: g
                    .candidates
                    .iter()
                    .map(|c| CandidateView {
                        stock_point: sp_code(network, c.stock_point),
                        score: c.score,
                        available: c.available.0,
                        chosen: c.chosen,
                    })
                    .collect(),
                candidates_total: g.candidates_total,
                tie_break: g.tie_break,
            })
            .collect(),
    };
    ReservationView {
        id: r.id.external(),
        status,
        expires_at: time::format(r.expires_at),
        created_at: time::format(r.created_at),
        channel: r.channel,
        customer_ref: r.customer_ref.clone(),
        order_id: r.order.map(OrderId::external),
        lines: r
            .lines
            .iter()
            .map(|l| ReservedLineView {
                sku: sku_code(c, l.sku),
                qty: l.requested.0,
                allocations: l
                    .allocations
                    .iter()
                    .map(|a| AllocationView {
                        stock_point: sp_code(network, a.stock_point),
                        qty: a.qty.0,
                        source: a.source,
                    })
                    .collect(),
            })
            .collect(),
        explanation,
    }
}

#[utoipa::path(post, path = "/v1/reservations", tag = "checkout", request_body = ReserveBody,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = ReservationView), (status = 409, description = "insufficient-stock with shortages, or limit-exceeded", body = ProblemView), (status = 422, body = ProblemView)))]
pub async fn reserve(
    State(st): State<Shared>,
    Caller(caller): Caller,
    idempotency: Option<Extension<IdempotencyContext>>,
    JsonBody(body): JsonBody<ReserveBody>,
) -> ApiResult<Created<ReservationView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let network = c.network();
    let request = reserve_request(&network, body, idempotency)?;
    let reservation = answer(c.reserve(request).await)?;
    count(&METRICS.reservations_created);
    Ok((
        StatusCode::CREATED,
        Json(reservation_view(c, &network, &reservation)),
    ))
}

#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "checkout",
    responses((status = 200, body = ReservationView), (status = 404, body = ProblemView)))]
pub async fn get_reservation(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReservationView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let rid = parse_id(ReservationId::parse_external(&id), "reservation", &id)?;
    let r = query(c.reservation(rid).await)?
        .ok_or_else(|| Problem::not_found(format!("reservation {id} not found")))?;
    Ok(Json(reservation_view(c, &c.network(), &r)))
}

#[utoipa::path(delete, path = "/v1/reservations/{id}", tag = "checkout",
    responses((status = 204), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
pub async fn release_reservation(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let rid = parse_id(ReservationId::parse_external(&id), "reservation", &id)?;
    answer(c.release(rid).await)?;
    count(&METRICS.reservations_released);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/reservations/{id}/confirm", tag = "checkout", request_body = ConfirmBody,
    responses((status = 201, body = OrderView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
pub async fn confirm(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ConfirmBody>,
) -> ApiResult<Created<OrderView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let rid = parse_id(ReservationId::parse_external(&id), "reservation", &id)?;
    if let Some(customer) = &body.customer_ref {
        if customer.is_empty()
            || customer.len() > conductor_engine::reservation::CUSTOMER_REF_BYTES_MAX
        {
            return Err(Problem::invalid("customer_ref", "1 to 128 bytes"));
        }
    }
    let order = answer(c.confirm(rid, body.customer_ref).await)?;
    count(&METRICS.orders_created);
    Ok((
        StatusCode::CREATED,
        Json(order_view(c, &c.network(), &order)),
    ))
}

#[utoipa::path(post, path = "/v1/orders", tag = "checkout", request_body = ReserveBody,
    responses((status = 201, body = OrderView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
pub async fn place_order(
    State(st): State<Shared>,
    Caller(caller): Caller,
    idempotency: Option<Extension<IdempotencyContext>>,
    JsonBody(body): JsonBody<ReserveBody>,
) -> ApiResult<Created<OrderView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let network = c.network();
    let request = reserve_request(&network, body, idempotency)?;
    let order = answer(c.place_order(request).await)?;
    count(&METRICS.orders_created);
    Ok((StatusCode::CREATED, Json(order_view(c, &network, &order))))
}

/// One history entry as `{"at","type",...}` with external ids and codes.
fn event_view(
    c: &Conductor,
    network: &Network,
    at: conductor_engine::time::Timestamp,
    event: &OrderEvent,
) -> Value {
    let sku = |s| sku_code(c, s);
    let (kind, mut fields) = match event {
        OrderEvent::Created {
            reservation,
            fulfilments,
            ..
        } => (
            "created",
            json!({
                "reservation_id": reservation.map(ReservationId::external),
                "fulfilments": fulfilments.iter().map(|f| json!({"id": f.id.external(), "stock_point": sp_code(network, f.stock_point)})).collect::<Vec<_>>(),
            }),
        ),
        OrderEvent::Released { fulfilment } => {
            ("released", json!({"fulfilment_id": fulfilment.external()}))
        }
        OrderEvent::PickStarted { fulfilment } => (
            "pick_started",
            json!({"fulfilment_id": fulfilment.external()}),
        ),
        OrderEvent::Picked {
            fulfilment,
            sku: s,
            qty,
        } => (
            "picked",
            json!({"fulfilment_id": fulfilment.external(), "sku": sku(*s), "qty": qty.0}),
        ),
        OrderEvent::ShortPicked {
            fulfilment,
            sku: s,
            picked,
            missing,
        } => (
            "short_picked",
            json!({"fulfilment_id": fulfilment.external(), "sku": sku(*s), "picked": picked.0, "missing": missing.0}),
        ),
        OrderEvent::Resourced { from, fulfilment } => (
            "resourced",
            json!({"from": from.external(), "fulfilment_id": fulfilment.id.external(), "stock_point": sp_code(network, fulfilment.stock_point)}),
        ),
        OrderEvent::ShortageWrittenOff { from, sku: s, qty } => (
            "shortage_written_off",
            json!({"from": from.external(), "sku": sku(*s), "qty": qty.0}),
        ),
        OrderEvent::BackorderFilled { fulfilment, sku: s } => (
            "backorder_filled",
            json!({"fulfilment_id": fulfilment.external(), "sku": sku(*s)}),
        ),
        OrderEvent::Packed { fulfilment } => {
            ("packed", json!({"fulfilment_id": fulfilment.external()}))
        }
        OrderEvent::Shipped {
            fulfilment,
            carrier,
            tracking,
        } => (
            "shipped",
            json!({"fulfilment_id": fulfilment.external(), "carrier": carrier, "tracking": tracking}),
        ),
        OrderEvent::Delivered { fulfilment } => {
            ("delivered", json!({"fulfilment_id": fulfilment.external()}))
        }
        OrderEvent::Cancelled { fulfilments } => (
            "cancelled",
            json!({"fulfilments": fulfilments.iter().map(|f| f.external()).collect::<Vec<_>>()}),
        ),
        OrderEvent::ReturnOpened { ret, lines } => (
            "return_opened",
            json!({"return_id": ret.external(), "lines": lines.iter().map(|l| json!({"sku": sku(l.sku), "qty": l.qty.0})).collect::<Vec<_>>()}),
        ),
    };
    fields["at"] = Value::String(time::format(at));
    fields["type"] = Value::String(kind.into());
    fields
}

pub fn order_view(c: &Conductor, network: &Network, o: &Order) -> OrderView {
    OrderView {
        id: o.id.external(),
        status: o.status(),
        channel: o.channel,
        customer_ref: o.customer_ref.clone(),
        reservation_id: o.reservation.map(ReservationId::external),
        created_at: time::format(o.created_at),
        lines: o
            .lines
            .iter()
            .map(|l| OrderLineView {
                sku: sku_code(c, l.sku),
                qty: l.qty.0,
            })
            .collect(),
        fulfilments: o
            .fulfilments
            .iter()
            .map(|f| FulfilmentView {
                id: f.id.external(),
                stock_point: sp_code(network, f.stock_point),
                status: f.status,
                lines: f
                    .lines
                    .iter()
                    .map(|l| FulfilmentLineView {
                        sku: sku_code(c, l.sku),
                        qty: l.qty.0,
                        picked: l.picked.0,
                        short: l.short.0,
                        shipped: l.shipped.0,
                        source: l.source,
                    })
                    .collect(),
                shipment: f.shipment.as_ref().map(|s| ShipmentView {
                    carrier: s.carrier.clone(),
                    tracking: s.tracking.clone(),
                }),
            })
            .collect(),
        returns: o.returns.iter().map(|r| r.id.external()).collect(),
        events: o
            .history
            .iter()
            .map(|h| event_view(c, network, h.at, &h.event))
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/orders/{id}", tag = "checkout",
    responses((status = 200, body = OrderView), (status = 404, body = ProblemView)))]
pub async fn get_order(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let oid = parse_id(OrderId::parse_external(&id), "order", &id)?;
    let order = query(c.order(oid).await)?
        .ok_or_else(|| Problem::not_found(format!("order {id} not found")))?;
    Ok(Json(order_view(c, &c.network(), &order)))
}

#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "checkout",
    responses((status = 200, body = OrderView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
pub async fn cancel_order(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    OptionalJson(_body): OptionalJson<Value>,
) -> ApiResult<Json<OrderView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let oid = parse_id(OrderId::parse_external(&id), "order", &id)?;
    let order = answer(c.cancel_order(oid).await)?;
    Ok(Json(order_view(c, &c.network(), &order)))
}

pub fn return_view(c: &Conductor, network: &Network, r: &ReturnRecord) -> ReturnView {
    ReturnView {
        id: r.id.external(),
        order_id: r.order.external(),
        dispositions: r
            .dispositions
            .iter()
            .map(|d| DispositionView {
                sku: sku_code(c, d.sku),
                qty: d.qty.0,
                stock_point: sp_code(network, d.stock_point),
                action: d.action,
            })
            .collect(),
        refund: RefundView {
            status: r.refund.status,
            units: r.refund.units.0,
        },
        opened_at: time::format(r.opened_at),
        received_at: r.received_at.map(time::format),
    }
}

#[utoipa::path(post, path = "/v1/orders/{id}/returns", tag = "checkout", request_body = ReturnBody,
    responses((status = 201, body = ReturnView), (status = 404, body = ProblemView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
pub async fn open_return(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReturnBody>,
) -> ApiResult<Created<ReturnView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let oid = parse_id(OrderId::parse_external(&id), "order", &id)?;
    let network = c.network();
    if body.lines.is_empty() || body.lines.len() > REQUEST_LINES_MAX {
        return Err(Problem::invalid(
            "lines",
            format!("1 to {REQUEST_LINES_MAX} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(body.lines.len());
    for (i, line) in body.lines.iter().enumerate() {
        let field = format!("lines[{i}].sku");
        lines.push(ReturnLine {
            sku: sku_known(c, &field, &line.sku)?,
            sku_code: code(&field, &line.sku)?,
            qty: qty(format_args!("lines[{i}].qty"), line.qty)?,
            condition: line.condition,
        });
    }
    let drop_off = match &body.drop_off {
        Some(text) => Some(stock_point_in_body(&network, "drop_off", text)?.id),
        None => None,
    };
    let record = answer(c.open_return(oid, lines, drop_off).await)?;
    Ok((StatusCode::CREATED, Json(return_view(c, &network, &record))))
}

#[utoipa::path(get, path = "/v1/returns/{id}", tag = "checkout",
    responses((status = 200, body = ReturnView), (status = 404, body = ProblemView)))]
pub async fn get_return(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReturnView>> {
    caller.require(Scope::Checkout)?;
    let c = st.c()?;
    let rid = parse_id(ReturnId::parse_external(&id), "return", &id)?;
    let record = query(c.return_record(rid).await)?
        .ok_or_else(|| Problem::not_found(format!("return {id} not found")))?;
    Ok(Json(return_view(c, &c.network(), &record)))
}

#[utoipa::path(post, path = "/v1/returns/{id}/receive", tag = "fulfilment",
    responses((status = 200, body = ReturnView), (status = 403, body = ProblemView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
pub async fn receive_return(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    OptionalJson(_body): OptionalJson<Value>,
) -> ApiResult<Json<ReturnView>> {
    caller.require(Scope::Fulfilment)?;
    let c = st.c()?;
    let rid = parse_id(ReturnId::parse_external(&id), "return", &id)?;
    let network = c.network();
    let record = query(c.return_record(rid).await)?
        .ok_or_else(|| Problem::not_found(format!("return {id} not found")))?;
    // Only staff of every stock point the units go to may receive them.
    for d in &record.dispositions {
        caller.require_stock_point(&sp_code(&network, d.stock_point))?;
    }
    let record = answer(c.receive_return(rid).await)?;
    Ok(Json(return_view(c, &network, &record)))
}

// --- tasks ----------------------------------------------------------------------------------

pub fn task_view(c: &Conductor, network: &Network, t: &Task) -> TaskView {
    TaskView {
        id: t.id.clone(),
        kind: match t.kind {
            TaskKind::Pick => "pick",
            TaskKind::Pack => "pack",
            TaskKind::Ship => "ship",
            TaskKind::Putaway => "putaway",
        }
        .into(),
        status: match t.status {
            TaskStatus::Open => "open",
            TaskStatus::Completing => "completing",
            TaskStatus::Completed => "completed",
        }
        .into(),
        fulfilment_id: t.fulfilment.external(),
        order_id: t.order.external(),
        stock_point: sp_code(network, t.stock_point),
        sequence: t.sequence,
        sku: t.sku.map(|s| sku_code(c, s)),
        qty: t.qty.0,
        bin: t.bin.clone(),
        path_position: t.path_position,
        done_qty: t.done_qty.map(|q| q.0),
        tour: t.tour,
        walk_cm: t.walk_cm,
        carton: t.carton.clone(),
        carrier: t.carrier.clone(),
        dock: t.dock.clone(),
        tracking: t.tracking.clone(),
    }
}

#[utoipa::path(get, path = "/v1/stock-points/{id}/replenishment", tag = "admin",
    responses((status = 200, body = Items<ReplenishmentView>), (status = 403, body = ProblemView), (status = 404, body = ProblemView)))]
pub async fn replenishment(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Items<ReplenishmentView>>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let network = c.network();
    let sp = stock_point_in_path(&network, &id)?;
    let suggestions = query(c.replenishment(sp.id).await)?;
    let items = suggestions
        .iter()
        .map(|r| ReplenishmentView {
            sku: c
                .board()
                .sku_code(r.sku)
                .map_or_else(|| format!("{:?}", r.sku), |code| code.to_string()),
            on_hand: r.on_hand.0,
            demand_class: serde_name(&r.class),
            method: serde_name(&r.method),
            per_day: r.per_day,
            reorder_point: r.reorder_point,
            reorder: r.reorder,
            history_days: r.history_days,
        })
        .collect();
    Ok(Json(Items { items }))
}

/// The name serde gives a unit enum variant (its JSON string without quotes).
fn serde_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[utoipa::path(get, path = "/v1/stock-points/{id}/tasks", tag = "fulfilment",
    params(("status" = Option<String>, Query, description = "open (default) or all")),
    responses((status = 200, body = Items<TaskView>), (status = 403, body = ProblemView), (status = 404, body = ProblemView)))]
pub async fn list_tasks(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Items<TaskView>>> {
    caller.require(Scope::Fulfilment)?;
    let c = st.c()?;
    let network = c.network();
    let sp = stock_point_in_path(&network, &id)?;
    caller.require_stock_point(sp.code.as_str())?;
    let mut open_only = true;
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match (&*name, &*value) {
            ("status", "open") => open_only = true,
            ("status", "all") => open_only = false,
            ("status", _) => return Err(Problem::invalid("status", "open or all")),
            (other, _) => {
                return Err(Problem::invalid(
                    other.to_owned(),
                    "unknown query parameter",
                ))
            }
        }
    }
    let tasks = query(c.tasks(sp.id, open_only).await)?;
    for t in &tasks {
        st.remember_task(&t.id, sp.id);
    }
    let items = tasks.iter().map(|t| task_view(c, &network, t)).collect();
    Ok(Json(Items { items }))
}

async fn find_task(
    c: &Conductor,
    sps: &[StockPointId],
    id: &str,
) -> ApiResult<Option<StockPointId>> {
    for &sp in sps {
        for open_only in [true, false] {
            let tasks = query(c.tasks(sp, open_only).await)?;
            if tasks.iter().any(|t| t.id == id) {
                return Ok(Some(sp));
            }
        }
    }
    Ok(None)
}

#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "fulfilment", request_body = CompleteTask,
    responses((status = 200, body = TaskView), (status = 403, body = ProblemView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
pub async fn complete_task(
    State(st): State<Shared>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CompleteTask>,
) -> ApiResult<Json<TaskView>> {
    caller.require(Scope::Fulfilment)?;
    let c = st.c()?;
    let network = c.network();
    if id.is_empty() || id.len() > 128 {
        return Err(Problem::not_found("task not found"));
    }
    let done = match body.qty {
        Some(q) if q > LINE_QTY_MAX => {
            return Err(Problem::invalid("qty", format!("0 to {LINE_QTY_MAX}")))
        }
        Some(q) => Some(Qty(q)),
        None => None,
    };
    let (mine, others): (Vec<&conductor_engine::network::StockPoint>, Vec<_>) = network
        .iter()
        .partition(|sp| caller.bound_to(sp.code.as_str()));
    let mine: Vec<StockPointId> = mine.iter().map(|sp| sp.id).collect();
    let others: Vec<StockPointId> = others.iter().map(|sp| sp.id).collect();
    let home = match st.task_home(&id) {
        Some(sp) => Some(sp),
        None => match find_task(c, &mine, &id).await? {
            Some(sp) => Some(sp),
            None => find_task(c, &others, &id).await?,
        },
    };
    let Some(home) = home else {
        return Err(Problem::not_found(format!("task {id} not found")));
    };
    st.remember_task(&id, home);
    // A fulfilment key completes tasks of its own stock points only.
    caller.require_stock_point(&sp_code(&network, home))?;
    let task = answer(c.complete_task(home, id, done).await)?;
    Ok(Json(task_view(c, &network, &task)))
}

// --- rules ----------------------------------------------------------------------------------

fn rules_view(set: &RuleSet) -> RulesView {
    RulesView {
        version: set.version,
        rules: set
            .rules
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/sourcing-rules", tag = "rules", responses((status = 200, body = RulesView)))]
pub async fn get_rules(
    State(st): State<Shared>,
    Caller(caller): Caller,
) -> ApiResult<Json<RulesView>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let set = query(c.rules().await)?;
    Ok(Json(rules_view(&set)))
}

#[utoipa::path(put, path = "/v1/sourcing-rules", tag = "rules", request_body = PutRules,
    responses((status = 200, body = RulesView), (status = 422, description = "the path of the bad field in `field`", body = ProblemView)))]
pub async fn put_rules(
    State(st): State<Shared>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<PutRules>,
) -> ApiResult<Json<RulesView>> {
    caller.require(Scope::Admin)?;
    let c = st.c()?;
    let mut rules = Vec::with_capacity(body.rules.len());
    for (i, value) in body.rules.into_iter().enumerate() {
        let rule: Rule = serde_json::from_value(value)
            .map_err(|e| Problem::invalid(format!("rules[{i}]"), e.to_string()))?;
        rules.push(rule);
    }
    let set = answer(c.put_rules(rules).await)?;
    Ok(Json(rules_view(&set)))
}
