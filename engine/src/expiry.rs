//! Reservations ordered by expiry: the index that expiring and forgetting pop from the front.
//!
//! A set of (expiry, reservation) pairs, kept as one sorted bucket of ids per expiry instant.
//! In a sale the pairs arrive almost in order (each expiry is "now" plus a time to live, and
//! many share an instant), so an insert usually lands in the last bucket, which is found
//! without a search of the tree; an ordered set of pairs searched the tree for every hold.
//! It serializes as the ordered set of pairs it stands for.

use std::collections::BTreeMap;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::ReservationId;
use crate::time::Timestamp;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpiryIndex {
    /// Each bucket sorted, without duplicates, never empty.
    buckets: BTreeMap<Timestamp, Vec<ReservationId>>,
    len: usize,
}

impl ExpiryIndex {
    /// Adds the pair; false if it was already there.
    pub fn insert(&mut self, (at, id): (Timestamp, ReservationId)) -> bool {
        let added = match self.buckets.last_entry() {
            Some(mut last) if *last.key() == at => insert_sorted(last.get_mut(), id),
            Some(last) if *last.key() < at => {
                self.buckets.insert(at, vec![id]);
                true
            }
            None => {
                self.buckets.insert(at, vec![id]);
                true
            }
            Some(_) => insert_sorted(self.buckets.entry(at).or_default(), id),
        };
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes the pair; false if it was not there.
    pub fn remove(&mut self, (at, id): &(Timestamp, ReservationId)) -> bool {
        let Some(bucket) = self.buckets.get_mut(at) else {
            return false;
        };
        let Ok(position) = bucket.binary_search(id) else {
            return false;
        };
        bucket.remove(position);
        if bucket.is_empty() {
            self.buckets.remove(at);
        }
        self.len -= 1;
        true
    }

    pub fn contains(&self, (at, id): &(Timestamp, ReservationId)) -> bool {
        self.buckets
            .get(at)
            .is_some_and(|bucket| bucket.binary_search(id).is_ok())
    }

    /// The earliest pair.
    pub fn first(&self) -> Option<(Timestamp, ReservationId)> {
        let (at, bucket) = self.buckets.first_key_value()?;
        bucket.first().map(|id| (*at, *id))
    }

    pub fn pop_first(&mut self) -> Option<(Timestamp, ReservationId)> {
        let first = self.first()?;
        self.remove(&first);
        Some(first)
    }

    /// Every pair, earliest first (ties by reservation id).
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, ReservationId)> + '_ {
        self.buckets
            .iter()
            .flat_map(|(at, bucket)| bucket.iter().map(move |id| (*at, *id)))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Inserts `id` where it sorts (at the end, nearly always); false if it is there already.
fn insert_sorted(bucket: &mut Vec<ReservationId>, id: ReservationId) -> bool {
    if bucket.last().is_none_or(|last| *last < id) {
        bucket.push(id);
        return true;
    }
    match bucket.binary_search(&id) {
        Ok(_) => false,
        Err(position) => {
            bucket.insert(position, id);
            true
        }
    }
}

impl Serialize for ExpiryIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // With its length first: the log's encoding needs it, and the iterator cannot tell.
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ExpiryIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(Timestamp, ReservationId)>::deserialize(deserializer)?;
        let mut index = ExpiryIndex::default();
        for pair in pairs {
            index.insert(pair);
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The index answers as the ordered set of pairs it replaces, for any mix of inserts
        /// and removals in any order, and serializes as that set.
        #[test]
        fn the_index_behaves_as_an_ordered_set_of_pairs(
            ops in prop::collection::vec((any::<bool>(), 0u64..8, 0u64..16), 0..200)
        ) {
            let mut index = ExpiryIndex::default();
            let mut set = BTreeSet::new();
            for (insert, at, id) in ops {
                let pair = (Timestamp(at), ReservationId(id));
                if insert {
                    prop_assert_eq!(index.insert(pair), set.insert(pair));
                } else {
                    prop_assert_eq!(index.remove(&pair), set.remove(&pair));
                }
                prop_assert_eq!(index.len(), set.len());
                prop_assert_eq!(index.first(), set.first().copied());
                prop_assert!(index.contains(&pair) == set.contains(&pair));
            }
            prop_assert!(index.iter().eq(set.iter().copied()));
            let encoded = serde_json::to_string(&index).unwrap();
            prop_assert_eq!(&encoded, &serde_json::to_string(&set).unwrap());
            let decoded: ExpiryIndex = serde_json::from_str(&encoded).unwrap();
            prop_assert_eq!(decoded, index.clone());
            // The log's encoding, which needs every sequence's length up front.
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(&index, config).unwrap();
            prop_assert_eq!(&bytes, &bincode::serde::encode_to_vec(&set, config).unwrap());
            let (decoded, _): (ExpiryIndex, usize) =
                bincode::serde::decode_from_slice(&bytes, config).unwrap();
            prop_assert_eq!(decoded, index.clone());
            while let Some(pair) = index.pop_first() {
                prop_assert_eq!(Some(pair), set.pop_first());
            }
            prop_assert!(set.is_empty());
        }
    }
}
