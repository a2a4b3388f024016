//! `GET /v1/availability/stream`: server-sent events, one `availability` event per change of a
//! watched SKU, built from the board's change broadcast.
//!
//! A client that falls behind the broadcast buffer is never waited for (the engine publishes
//! without blocking); it gets a `resync` event and fresh items for all its SKUs instead. The
//! stream opens with the current item of every SKU, so a client needs no separate GET.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::api::{availability_item, parse_availability_query, AvailabilityQuery};
use crate::app::{Caller, Shared};
use crate::auth::Scope;
use crate::metrics::METRICS;
use crate::problem::ApiResult;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Watch {
    st: Shared,
    q: AvailabilityQuery,
    watched: HashSet<String>,
    changes: tokio::sync::broadcast::Receiver<conductor_engine::ids::SkuId>,
    /// Items to send before reading more changes (the opening snapshot, a resync).
    pending: Vec<Event>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        METRICS.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn item_event(st: &Shared, q: &AvailabilityQuery, sku: &str) -> Option<Event> {
    let c = st.conductor.get()?;
    let item = availability_item(c, &c.network(), q, sku);
    Event::default().event("availability").json_data(item).ok()
}

fn snapshot(st: &Shared, q: &AvailabilityQuery) -> Vec<Event> {
    // Popped from the back: reverse so the first SKU goes first.
    q.skus
        .iter()
        .rev()
        .filter_map(|sku| item_event(st, q, sku))
        .collect()
}

#[utoipa::path(get, path = "/v1/availability/stream", tag = "availability",
    params(("sku" = Vec<String>, Query), ("key" = Option<String>, Query, description = "API key, for EventSource which cannot send headers")),
    responses((status = 200, description = "text/event-stream of `availability` (and `resync`) events")))]
pub async fn stream(
    State(st): State<Shared>,
    Caller(caller): Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::Read)?;
    let c = st.c()?;
    let q = parse_availability_query(&c.network(), raw.as_deref())?;
    let changes = c.board().subscribe();
    METRICS.sse_clients.fetch_add(1, Ordering::Relaxed);
    let watch = Watch {
        pending: snapshot(&st, &q),
        watched: q.skus.iter().cloned().collect(),
        stopping: st.stopping.clone(),
        st,
        q,
        changes,
    };
    Ok(Sse::new(events(watch)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn events(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(watch, |mut w| async move {
        loop {
            if let Some(event) = w.pending.pop() {
                return Some((Ok(event), w));
            }
            if *w.stopping.borrow() {
                return None;
            }
            let change = tokio::select! {
                change = w.changes.recv() => change,
                _ = w.stopping.changed() => return None,
            };
            match change {
                Ok(sku) => {
                    let c = w.st.conductor.get()?;
                    let Some(code) = c.board().sku_code(sku) else {
                        continue;
                    };
                    if !w.watched.contains(code.as_str()) {
                        continue;
                    }
                    if let Some(event) = item_event(&w.st, &w.q, code.as_str()) {
                        return Some((Ok(event), w));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    METRICS.sse_resyncs.fetch_add(1, Ordering::Relaxed);
                    w.pending = snapshot(&w.st, &w.q);
                    let resync = Event::default()
                        .event("resync")
                        .data(format!("{{\"missed\":{missed}}}"));
                    return Some((Ok(resync), w));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}
