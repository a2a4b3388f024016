//! Reservations: a checkout's claim on stock, made of holds at one or more stock points that
//! share one expiry. The book also enforces per-customer limits of a flash sale.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::expiry::ExpiryIndex;
use crate::hash::{FxHashMap, SeqHashMap};
use crate::idempotency::IdempotencyKey;
use crate::ids::{OrderId, Qty, ReservationId, SkuId, StockPointId};
use crate::inventory::{Hold, Source, StockLine};
use crate::network::Channel;
use crate::sourcing::Explanation;
use crate::time::Timestamp;

/// The longest customer reference accepted.
pub const CUSTOMER_REF_BYTES_MAX: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Released,
    Expired,
}

impl ReservationStatus {
    /// The status's name in the API and the log (what serde writes), without a serializer.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Held => "held",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReservedAllocation {
    pub stock_point: StockPointId,
    pub qty: Qty,
    pub source: Source,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: SkuId,
    /// What the checkout asked for; with partial plans the allocations may add up to less.
    pub requested: Qty,
    pub allocations: ReservedAllocations,
}

/// A line's allocations: nearly always one (a line split over stock points has more).
pub type ReservedAllocations = SmallVec<[ReservedAllocation; 1]>;

/// A reservation's lines: a flash sale's checkout has one.
pub type ReservedLines = SmallVec<[ReservedLine; 1]>;

impl ReservedLine {
    pub fn reserved(&self) -> Qty {
        self.allocations.iter().map(|a| a.qty).sum()
    }
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub channel: Channel,
    pub customer_ref: Option<String>,
    pub lines: ReservedLines,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub status: ReservationStatus,
    pub order: Option<OrderId>,
    /// Why it was sourced this way, for customer service; shared with the plan it came from.
    pub explanation: Arc<Explanation>,
    /// The idempotency key and request fingerprint it was created with, if any.
    #[serde(default)]
    pub idempotency: Option<(IdempotencyKey, u64)>,
}

impl Reservation {
    /// The hold this reservation places at `sp`: its allocations there, line by line, in line
    /// order. For a reservation served by one stock point this is exactly the hold the checkout
    /// asked it for, so that the log can record the two as one event
    /// ([`crate::state::Event::Reserved`]). Part of the log's format: a replay derives the hold
    /// from it, so what it returns for a given reservation must never change (a test pins it).
    pub fn hold_at(&self, sp: StockPointId) -> Hold {
        Hold {
            reservation: self.id,
            lines: self
                .lines
                .iter()
                .flat_map(|line| {
                    line.allocations
                        .iter()
                        .filter(move |a| a.stock_point == sp)
                        .map(move |a| StockLine {
                            sku: line.sku,
                            qty: a.qty,
                            source: a.source,
                        })
                })
                .collect(),
            expires_at: self.expires_at,
        }
    }

    /// The status as of `now`: a held reservation past its expiry is expired even before the
    /// stock points' expiry events are applied.
    pub fn status_at(&self, now: Timestamp) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if now >= self.expires_at => ReservationStatus::Expired,
            status => status,
        }
    }

    /// Stock points holding part of this reservation, each once.
    pub fn stock_points(&self) -> Vec<StockPointId> {
        let mut out: Vec<StockPointId> = Vec::new();
        for a in self.lines.iter().flat_map(|l| &l.allocations) {
            if !out.contains(&a.stock_point) {
                out.push(a.stock_point);
            }
        }
        out
    }

    fn units_per_sku(&self) -> impl Iterator<Item = (SkuId, Qty)> + '_ {
        self.lines.iter().map(|l| (l.sku, l.reserved()))
    }
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum ReservationEvent {
    /// Shared, so that the live system can log the record and keep it without copying it
    /// (serde stores an `Arc` as its contents: the bytes are those of the record itself).
    Created(Arc<Reservation>),
    Confirmed {
        id: ReservationId,
        order: OrderId,
    },
    Released {
        id: ReservationId,
    },
    Expired {
        id: ReservationId,
    },
}

/// Why a reservation cannot change as asked; a business "no".
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ReservationRefusal {
    #[error("reservation {0} does not exist")]
    Unknown(ReservationId),
    #[error("reservation {id} is {status:?}")]
    NotHeld {
        id: ReservationId,
        status: ReservationStatus,
    },
    #[error(
        "customer may hold at most {max} units of the SKU; already {current}, asking {requested}"
    )]
    LimitExceeded {
        sku: SkuId,
        max: Qty,
        current: Qty,
        requested: Qty,
    },
}

/// Every reservation, and the units each customer holds or bought per SKU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReservationBook {
    /// Shared with the `Created` event that made it (and with the answer to the caller), so
    /// that recording it copies nothing; a change copies it first if it is still shared. Small
    /// entries also keep the map's growth cheap in a sale that creates millions.
    reservations: SeqHashMap<ReservationId, Arc<Reservation>>,
    /// Flash-sale caps: units one customer_ref may hold (or have bought) at once per SKU.
    limits: FxHashMap<SkuId, Qty>,
    /// Units each customer has in held or confirmed reservations, per SKU.
    customer_units: FxHashMap<(String, SkuId), Qty>,
    /// Held reservations ordered by expiry so that expiring pops from the front.
    expiries: ExpiryIndex,
    /// Reservations by the idempotency key they were created with.
    by_key: FxHashMap<IdempotencyKey, ReservationId>,
    /// Every reservation by expiry, so that forgetting old ones pops from the front.
    by_expiry: ExpiryIndex,
}

impl ReservationBook {
    pub fn get(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id).map(|r| &**r)
    }

    pub fn len(&self) -> usize {
        self.reservations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reservations.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values().map(|r| &**r)
    }

    /// Forgets reservations that expired more than `retention_ms` before `now` and are no longer
    /// held (confirmed ones live on as orders). Memory stays bounded by the retention; a read of
    /// a forgotten reservation is "not found". Returns how many were forgotten, at most `max`.
    pub fn prune(&mut self, now: Timestamp, retention_ms: u64, max: usize) -> usize {
        let cutoff = Timestamp(now.0.saturating_sub(retention_ms));
        let mut pruned = 0;
        while pruned < max {
            let Some((expires_at, id)) = self.by_expiry.first() else {
                break;
            };
            if expires_at >= cutoff {
                break;
            }
            self.by_expiry.pop_first();
            let Some(r) = self.reservations.get(&id) else {
                continue;
            };
            if r.status == ReservationStatus::Held {
                // Its expiry event has not been applied yet; the next tick will get it.
                self.by_expiry.insert((expires_at, id));
                break;
            }
            if let Some(r) = self.reservations.remove(&id) {
                if let Some((key, _)) = &r.idempotency {
                    self.by_key.remove(key);
                }
            }
            pruned += 1;
        }
        pruned
    }

    /// The reservation created with `key`, if any; shared, so that an answer handing it out
    /// copies nothing.
    pub fn by_key(&self, key: &IdempotencyKey) -> Option<&Arc<Reservation>> {
        self.by_key
            .get(key)
            .and_then(|id| self.reservations.get(id))
    }

    pub fn limit(&self, sku: SkuId) -> Option<Qty> {
        self.limits.get(&sku).copied()
    }

    pub fn set_limit(&mut self, sku: SkuId, max_per_customer: Option<Qty>) {
        match max_per_customer {
            Some(max) => self.limits.insert(sku, max),
            None => self.limits.remove(&sku),
        };
    }

    pub fn customer_units(&self, customer: &str, sku: SkuId) -> Qty {
        self.customer_units
            .get(&(customer.to_owned(), sku))
            .copied()
            .unwrap_or_default()
    }

    /// Checks a customer's new request against the per-customer limits.
    pub fn check_limits(
        &self,
        customer: Option<&str>,
        lines: &[(SkuId, Qty)],
    ) -> Result<(), ReservationRefusal> {
        let Some(customer) = customer else {
            return Ok(());
        };
        for (i, (sku, _)) in lines.iter().enumerate() {
            let Some(max) = self.limit(*sku) else {
                continue;
            };
            if lines[..i].iter().any(|(s, _)| s == sku) {
                continue;
            }
            let requested: Qty = lines.iter().filter(|(s, _)| s == sku).map(|l| l.1).sum();
            let current = self.customer_units(customer, *sku);
            if current + requested > max {
                return Err(ReservationRefusal::LimitExceeded {
                    sku: *sku,
                    max,
                    current,
                    requested,
                });
            }
        }
        Ok(())
    }

    pub fn decide_confirm(
        &self,
        id: ReservationId,
        order: OrderId,
        now: Timestamp,
    ) -> Result<ReservationEvent, ReservationRefusal> {
        let reservation = self.get(id).ok_or(ReservationRefusal::Unknown(id))?;
        match reservation.status_at(now) {
            ReservationStatus::Held => Ok(ReservationEvent::Confirmed { id, order }),
            status => Err(ReservationRefusal::NotHeld { id, status }),
        }
    }

    pub fn decide_release(
        &self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<ReservationEvent, ReservationRefusal> {
        let reservation = self.get(id).ok_or(ReservationRefusal::Unknown(id))?;
        match reservation.status_at(now) {
            ReservationStatus::Held => Ok(ReservationEvent::Released { id }),
            status => Err(ReservationRefusal::NotHeld { id, status }),
        }
    }

    /// Held reservations whose expiry has passed, oldest first, at most `max`.
    pub fn decide_expiries(&self, now: Timestamp, max: usize) -> Vec<ReservationEvent> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| ReservationEvent::Expired { id })
            .collect()
    }

    /// The earliest expiry of a held reservation, for the orchestrator's timer.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(at, _)| at)
    }

    /// Applies a `Created` event; takes the record by value or shared, never copying it.
    pub fn insert_created(&mut self, reservation: impl Into<Arc<Reservation>>) {
        let reservation = reservation.into();
        self.count_customer_units(&reservation);
        if let Some((key, _)) = &reservation.idempotency {
            self.by_key.insert(key.clone(), reservation.id);
        }
        if reservation.status == ReservationStatus::Held {
            self.expiries
                .insert((reservation.expires_at, reservation.id));
        }
        self.by_expiry
            .insert((reservation.expires_at, reservation.id));
        let previous = self.reservations.insert(reservation.id, reservation);
        debug_assert!(previous.is_none(), "reservation created twice");
    }

    fn count_customer_units(&mut self, reservation: &Reservation) {
        if let Some(customer) = &reservation.customer_ref {
            for (sku, qty) in reservation.units_per_sku() {
                *self
                    .customer_units
                    .entry((customer.clone(), sku))
                    .or_default() += qty;
            }
        }
    }

    pub fn apply(&mut self, event: &ReservationEvent) {
        match event {
            ReservationEvent::Created(reservation) => self.insert_created(reservation.clone()),
            ReservationEvent::Confirmed { id, order } => {
                if let Some(r) = self.reservations.get_mut(id).map(Arc::make_mut) {
                    self.expiries.remove(&(r.expires_at, r.id));
                    r.status = ReservationStatus::Confirmed;
                    r.order = Some(*order);
                }
            }
            ReservationEvent::Released { id } | ReservationEvent::Expired { id } => {
                let status = match event {
                    ReservationEvent::Released { .. } => ReservationStatus::Released,
                    _ => ReservationStatus::Expired,
                };
                let Some(r) = self.reservations.get_mut(id).map(Arc::make_mut) else {
                    debug_assert!(false, "release of unknown reservation {id}");
                    return;
                };
                debug_assert_eq!(r.status, ReservationStatus::Held);
                self.expiries.remove(&(r.expires_at, r.id));
                r.status = status;
                if let Some(customer) = &r.customer_ref {
                    for (sku, qty) in r.lines.iter().map(|l| (l.sku, l.reserved())) {
                        if let Some(units) = self.customer_units.get_mut(&(customer.clone(), sku)) {
                            *units = units.saturating_sub(qty);
                            if units.is_zero() {
                                self.customer_units.remove(&(customer.clone(), sku));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Event::Reserved` replays its hold through `hold_at`: what it derives is log format.
    #[test]
    fn the_hold_derived_from_a_reservation_is_its_allocations_there_in_line_order() {
        let allocation = |sp: u32, qty: u64, source: Source| ReservedAllocation {
            stock_point: StockPointId(sp),
            qty: Qty(qty),
            source,
        };
        let line = |sku: u32, allocations: ReservedAllocations| ReservedLine {
            sku: SkuId(sku),
            requested: Qty(allocations.iter().map(|a| a.qty.0).sum()),
            allocations,
        };
        let ReservationEvent::Created(mut reservation) = reservation(9, None, 1, 5_000) else {
            unreachable!("a created reservation")
        };
        Arc::make_mut(&mut reservation).lines = smallvec::smallvec![
            line(
                7,
                smallvec::smallvec![
                    allocation(1, 2, Source::OnHand),
                    allocation(0, 1, Source::Incoming)
                ]
            ),
            line(3, smallvec::smallvec![allocation(1, 4, Source::Incoming)]),
            line(5, smallvec::smallvec![allocation(0, 6, Source::OnHand)]),
        ];
        let stock_line = |sku: u32, qty: u64, source: Source| StockLine {
            sku: SkuId(sku),
            qty: Qty(qty),
            source,
        };
        let at_1 = reservation.hold_at(StockPointId(1));
        assert_eq!(at_1.reservation, ReservationId(9));
        assert_eq!(at_1.expires_at, Timestamp(5_000));
        assert_eq!(
            at_1.lines.as_slice(),
            [
                stock_line(7, 2, Source::OnHand),
                stock_line(3, 4, Source::Incoming)
            ]
        );
        assert_eq!(
            reservation.hold_at(StockPointId(0)).lines.as_slice(),
            [
                stock_line(7, 1, Source::Incoming),
                stock_line(5, 6, Source::OnHand)
            ]
        );
        assert!(reservation.hold_at(StockPointId(2)).lines.is_empty());
    }

    /// The log and snapshots written before lines were stored inline read back, and new ones
    /// read in an older build: inline or not, lines encode exactly as a `Vec` does.
    #[test]
    fn inline_lines_encode_exactly_as_a_vec_does() {
        let config = bincode::config::standard();
        let allocation = |sp: u32| ReservedAllocation {
            stock_point: StockPointId(sp),
            qty: Qty(u64::from(sp) + 1),
            source: Source::OnHand,
        };
        for n in 0..4 {
            let as_vec: Vec<ReservedAllocation> = (0..n).map(allocation).collect();
            let inline: ReservedAllocations = (0..n).map(allocation).collect();
            let bytes = bincode::serde::encode_to_vec(&inline, config).expect("encodes");
            assert_eq!(
                bytes,
                bincode::serde::encode_to_vec(&as_vec, config).expect("encodes")
            );
            let (back, _): (ReservedAllocations, usize) =
                bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
            assert_eq!(back, inline);
        }
    }

    #[test]
    fn a_status_name_is_the_one_serde_writes() {
        for status in [
            ReservationStatus::Held,
            ReservationStatus::Confirmed,
            ReservationStatus::Released,
            ReservationStatus::Expired,
        ] {
            let json = serde_json::to_string(&status).expect("serializes");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    fn reservation(id: u64, customer: Option<&str>, qty: u64, expires_at: u64) -> ReservationEvent {
        ReservationEvent::Created(Arc::new(Reservation {
            id: ReservationId(id),
            channel: Channel::Web,
            customer_ref: customer.map(str::to_owned),
            lines: smallvec::smallvec![ReservedLine {
                sku: SkuId(0),
                requested: Qty(qty),
                allocations: smallvec::smallvec![ReservedAllocation {
                    stock_point: StockPointId(0),
                    qty: Qty(qty),
                    source: Source::OnHand,
                }],
            }],
            created_at: Timestamp(0),
            expires_at: Timestamp(expires_at),
            status: ReservationStatus::Held,
            order: None,
            explanation: Arc::new(Explanation {
                rule_set_version: 0,
                groups: vec![],
            }),
            idempotency: None,
        }))
    }

    #[test]
    fn a_held_reservation_past_its_expiry_reads_as_expired_and_cannot_be_confirmed() {
        let mut book = ReservationBook::default();
        book.apply(&reservation(1, None, 1, 100));
        assert_eq!(
            book.get(ReservationId(1)).unwrap().status_at(Timestamp(99)),
            ReservationStatus::Held
        );
        assert!(book
            .decide_confirm(ReservationId(1), OrderId(1), Timestamp(99))
            .is_ok());
        assert_eq!(
            book.decide_confirm(ReservationId(1), OrderId(1), Timestamp(100)),
            Err(ReservationRefusal::NotHeld {
                id: ReservationId(1),
                status: ReservationStatus::Expired
            })
        );
    }

    #[test]
    fn a_confirmed_reservation_cannot_be_released() {
        let mut book = ReservationBook::default();
        book.apply(&reservation(1, None, 1, 100));
        book.apply(&ReservationEvent::Confirmed {
            id: ReservationId(1),
            order: OrderId(5),
        });
        assert!(book.decide_release(ReservationId(1), Timestamp(0)).is_err());
        assert!(book.decide_expiries(Timestamp(1_000), 10).is_empty());
    }

    #[test]
    fn customer_limits_count_held_units_until_they_are_released() {
        let mut book = ReservationBook::default();
        book.set_limit(SkuId(0), Some(Qty(2)));
        book.apply(&reservation(1, Some("alice"), 2, 100));
        let more = [(SkuId(0), Qty(1))];
        assert!(matches!(
            book.check_limits(Some("alice"), &more),
            Err(ReservationRefusal::LimitExceeded { .. })
        ));
        assert!(book.check_limits(Some("bob"), &more).is_ok());
        assert!(book.check_limits(None, &more).is_ok());
        book.apply(&ReservationEvent::Released {
            id: ReservationId(1),
        });
        assert!(book.check_limits(Some("alice"), &more).is_ok());
    }

    #[test]
    fn finished_reservations_are_forgotten_after_the_retention_but_held_ones_are_kept() {
        let mut book = ReservationBook::default();
        book.apply(&reservation(1, None, 1, 100));
        book.apply(&reservation(2, None, 1, 200));
        book.apply(&ReservationEvent::Released {
            id: ReservationId(1),
        });
        assert_eq!(
            book.prune(Timestamp(150), 1_000, 10),
            0,
            "inside the retention"
        );
        assert_eq!(book.prune(Timestamp(5_000), 1_000, 10), 1);
        assert!(book.get(ReservationId(1)).is_none());
        assert!(
            book.get(ReservationId(2)).is_some(),
            "still held: its expiry comes first"
        );
    }

    #[test]
    fn expiries_come_out_oldest_first_and_bounded() {
        let mut book = ReservationBook::default();
        book.apply(&reservation(1, None, 1, 300));
        book.apply(&reservation(2, None, 1, 100));
        book.apply(&reservation(3, None, 1, 200));
        assert_eq!(
            book.decide_expiries(Timestamp(1_000), 2),
            vec![
                ReservationEvent::Expired {
                    id: ReservationId(2)
                },
                ReservationEvent::Expired {
                    id: ReservationId(3)
                }
            ]
        );
    }
}
