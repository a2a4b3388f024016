//! The network of stock points: warehouses, stores and drop-ship vendors, where they are, whom
//! they serve and what they can do.

use serde::{Deserialize, Serialize};

use crate::ids::{Code, StockPointId};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StockPointKind {
    Warehouse,
    Store,
    Dropship,
}

/// A sales channel. Rules and stock points name the channels they apply to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Web,
    Marketplace,
    B2b,
    Store,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Web,
        Channel::Marketplace,
        Channel::B2b,
        Channel::Store,
    ];

    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Ship,
    Pickup,
    Returns,
}

/// Mean Earth radius.
const EARTH_RADIUS_KM: f64 = 6371.0;

/// A point on the globe, in degrees.
#[derive(Clone, Copy, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }

    /// The point on the unit sphere. The dot product of two of them orders pairs of places
    /// exactly as great-circle distance does (larger dot, shorter distance).
    pub fn unit_vector(&self) -> [f64; 3] {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
    }

    /// Great-circle distance in kilometres between two unit vectors.
    pub fn km_between(a: [f64; 3], b: [f64; 3]) -> f64 {
        let dot = (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).clamp(-1.0, 1.0);
        EARTH_RADIUS_KM * dot.acos()
    }

    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(&self, other: &Location) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// What an operator configures for a stock point (`PUT /v1/stock-points/{id}`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StockPoint {
    pub id: StockPointId,
    pub code: Code,
    pub kind: StockPointKind,
    pub name: String,
    pub location: Location,
    /// Lower ranks are preferred by the `priority` strategy and break ties elsewhere.
    pub priority: u32,
    pub channels: Vec<Channel>,
    pub capabilities: Vec<Capability>,
    /// Cost of one shipment from here, in cents; used by `lowest-cost` and `fewest-shipments`.
    pub cost_per_shipment: u32,
    /// Free-form tags that rules may match on (e.g. "flagship").
    pub tags: Vec<String>,
}

impl StockPoint {
    pub fn serves(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }

    pub fn can(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// Every stock point, indexed by its dense id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    stock_points: Vec<StockPoint>,
}

impl Network {
    pub fn get(&self, id: StockPointId) -> Option<&StockPoint> {
        self.stock_points.get(id.index())
    }

    pub fn iter(&self) -> impl Iterator<Item = &StockPoint> {
        self.stock_points.iter()
    }

    pub fn len(&self) -> usize {
        self.stock_points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stock_points.is_empty()
    }

    /// Adds or replaces a stock point. New ids must be dense (the next index).
    pub fn upsert(&mut self, stock_point: StockPoint) {
        let index = stock_point.id.index();
        if index < self.stock_points.len() {
            self.stock_points[index] = stock_point;
        } else {
            assert_eq!(index, self.stock_points.len(), "stock point ids are dense");
            self.stock_points.push(stock_point);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_between_paris_and_london_is_about_344_km() {
        let paris = Location {
            lat: 48.8566,
            lon: 2.3522,
        };
        let london = Location {
            lat: 51.5074,
            lon: -0.1278,
        };
        let d = paris.distance_km(&london);
        assert!((d - 343.5).abs() < 2.0, "{d}");
        assert_eq!(paris.distance_km(&paris), 0.0);
    }

    #[test]
    fn locations_outside_the_globe_are_invalid() {
        assert!(!Location {
            lat: 91.0,
            lon: 0.0
        }
        .is_valid());
        assert!(!Location {
            lat: f64::NAN,
            lon: 0.0
        }
        .is_valid());
        assert!(Location {
            lat: -90.0,
            lon: 180.0
        }
        .is_valid());
    }
}
