//! Identifiers and quantities.
//!
//! Codes that users type (SKUs, stock point ids) are validated once, at the edge, into [`Code`].
//! Inside the engine a code is interned into a small integer ([`SkuId`], [`StockPointId`]) so
//! that the hot path compares and hashes integers, never strings.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest code a user may give for a SKU or any other id.
pub const CODE_BYTES_MAX: usize = 64;

/// A validated external identifier: 1 to 64 characters of `[A-Za-z0-9._-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Code(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {CODE_BYTES_MAX} characters")]
    TooLong,
    #[error("may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidCharacter,
}

impl Code {
    pub fn parse(text: &str) -> Result<Code, CodeError> {
        if text.is_empty() {
            return Err(CodeError::Empty);
        }
        if text.len() > CODE_BYTES_MAX {
            return Err(CodeError::TooLong);
        }
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if !text.bytes().all(valid) {
            return Err(CodeError::InvalidCharacter);
        }
        Ok(Code(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Code {
    type Error = CodeError;
    fn try_from(text: String) -> Result<Code, CodeError> {
        Code::parse(&text)
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.0.into()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

macro_rules! dense_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

dense_id!(
    /// An interned SKU; the index into the catalog's SKU table.
    SkuId
);
dense_id!(
    /// An interned stock point (warehouse, store or drop-ship vendor).
    StockPointId
);

macro_rules! serial_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl $name {
            /// The external form, e.g. `R-42`, as users see it in the API.
            pub fn external(self) -> String {
                format!(concat!($prefix, "-{}"), self.0)
            }

            /// Parses the external form; `None` for anything else.
            pub fn parse_external(text: &str) -> Option<$name> {
                let digits = text.strip_prefix(concat!($prefix, "-"))?;
                if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "-{}"), self.0)
            }
        }
    };
}

serial_id!(
    /// A reservation: a set of holds, at most one per stock point, with one expiry.
    ReservationId,
    "R"
);
serial_id!(
    /// A confirmed order.
    OrderId,
    "O"
);
serial_id!(
    /// The part of an order that one stock point fulfils.
    FulfilmentId,
    "F"
);
serial_id!(
    /// A customer return.
    ReturnId,
    "RT"
);
serial_id!(
    /// Expected stock (a purchase order line with an ETA).
    IncomingId,
    "IN"
);

/// A number of units. Positions count in `u64` so that no sum of line quantities can overflow;
/// a line's quantity is bounded by [`crate::limits::LINE_QTY_MAX`] at the edge.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
pub struct Qty(pub u64);

impl Qty {
    pub const ZERO: Qty = Qty(0);

    pub fn saturating_sub(self, other: Qty) -> Qty {
        Qty(self.0.saturating_sub(other.0))
    }

    pub fn checked_sub(self, other: Qty) -> Option<Qty> {
        self.0.checked_sub(other.0).map(Qty)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::Add for Qty {
    type Output = Qty;
    fn add(self, other: Qty) -> Qty {
        Qty(self.0 + other.0)
    }
}

impl std::ops::AddAssign for Qty {
    fn add_assign(&mut self, other: Qty) {
        self.0 += other.0;
    }
}

impl std::ops::Sub for Qty {
    type Output = Qty;
    /// Panics on underflow: callers check availability first, so an underflow is a bug.
    fn sub(self, other: Qty) -> Qty {
        Qty(self
            .0
            .checked_sub(other.0)
            .expect("quantity underflow: a caller skipped its availability check"))
    }
}

impl std::ops::SubAssign for Qty {
    fn sub_assign(&mut self, other: Qty) {
        *self = *self - other;
    }
}

impl std::iter::Sum for Qty {
    fn sum<I: Iterator<Item = Qty>>(iter: I) -> Qty {
        iter.fold(Qty::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Maps codes to dense ids and back. Ids are handed out in order of first sight, so replaying
/// the same `Defined` events in the same order rebuilds the same table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interner {
    /// Index = id; the code each id stands for.
    codes: Vec<Code>,
    #[serde(skip)]
    /// Rebuilt from `codes` after deserializing; see [`Interner::rebuild_index`].
    index: HashMap<Code, u32>,
}

impl Interner {
    pub fn get(&self, code: &str) -> Option<u32> {
        // `Code` borrows as `str` only through its field; look up by a temporary key.
        self.index.get(code).copied()
    }

    pub fn code(&self, id: u32) -> Option<&Code> {
        self.codes.get(id as usize)
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The id `code` would get if interned now.
    pub fn next_id(&self) -> u32 {
        u32::try_from(self.codes.len()).expect("more than u32::MAX interned codes")
    }

    /// Interns `code` under `id`, which must be [`Interner::next_id`] (or the id it already has).
    pub fn define(&mut self, id: u32, code: Code) {
        if let Some(existing) = self.index.get(&code) {
            assert_eq!(
                *existing, id,
                "code {code} defined twice with different ids"
            );
            return;
        }
        assert_eq!(id, self.next_id(), "ids are defined densely, in order");
        self.index.insert(code.clone(), id);
        self.codes.push(code);
    }

    pub fn rebuild_index(&mut self) {
        self.index = self
            .codes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32))
            .collect();
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Code)> {
        self.codes.iter().enumerate().map(|(i, c)| (i as u32, c))
    }
}

impl std::borrow::Borrow<str> for Code {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_accept_the_documented_alphabet_only() {
        assert!(Code::parse("SKU-1_a.b").is_ok());
        assert_eq!(Code::parse(""), Err(CodeError::Empty));
        assert_eq!(Code::parse(&"a".repeat(65)), Err(CodeError::TooLong));
        assert!(Code::parse(&"a".repeat(64)).is_ok());
        assert_eq!(Code::parse("a b"), Err(CodeError::InvalidCharacter));
        assert_eq!(Code::parse("é"), Err(CodeError::InvalidCharacter));
    }

    #[test]
    fn codes_deserialize_through_validation() {
        let bad: Result<Code, _> = serde_json::from_str("\"no spaces\"");
        assert!(bad.is_err());
        let good: Code = serde_json::from_str("\"WH1\"").unwrap();
        assert_eq!(good.as_str(), "WH1");
    }

    #[test]
    fn external_ids_round_trip_and_reject_garbage() {
        assert_eq!(ReservationId(42).external(), "R-42");
        assert_eq!(
            ReservationId::parse_external("R-42"),
            Some(ReservationId(42))
        );
        assert_eq!(ReservationId::parse_external("R-"), None);
        assert_eq!(ReservationId::parse_external("O-42"), None);
        assert_eq!(
            ReservationId::parse_external("R-99999999999999999999"),
            None
        );
        assert_eq!(ReturnId::parse_external("RT-7"), Some(ReturnId(7)));
    }

    #[test]
    fn interner_rebuilds_the_same_ids_after_a_round_trip() {
        let mut interner = Interner::default();
        interner.define(0, Code::parse("A").unwrap());
        interner.define(1, Code::parse("B").unwrap());
        let json = serde_json::to_string(&interner).unwrap();
        let mut back: Interner = serde_json::from_str(&json).unwrap();
        back.rebuild_index();
        assert_eq!(back.get("B"), Some(1));
        assert_eq!(back.code(0).map(Code::as_str), Some("A"));
    }
}
