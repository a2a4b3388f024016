//! The wire shapes of the API: request bodies (strict, `deny_unknown_fields`) and responses,
//! each also an OpenAPI schema. Engine enums (`Channel`, `Source`, ...) are used as they are,
//! since their serde names are the contract's words; the schema just says "string".

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Scope;

fn yes() -> bool {
    true
}

fn default_ttl() -> u64 {
    600
}

// --- keys -----------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub stock_points: Vec<String>,
    /// Requests a second; absent means unlimited.
    #[serde(default)]
    pub rate_per_s: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    /// The secret, shown this once; only its hash is stored.
    pub key: String,
    pub scopes: Vec<Scope>,
    pub stock_points: Vec<String>,
    pub rate_per_s: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub scopes: Vec<Scope>,
    pub stock_points: Vec<String>,
    pub rate_per_s: Option<u32>,
    pub created_at: String,
}

// --- stock points ---------------------------------------------------------------------------

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutStockPoint {
    #[schema(value_type = String, example = "warehouse")]
    pub kind: conductor_engine::network::StockPointKind,
    pub name: String,
    pub location: LatLon,
    #[serde(default = "default_priority")]
    pub priority: u32,
    #[schema(value_type = Vec<String>)]
    pub channels: Vec<conductor_engine::network::Channel>,
    #[schema(value_type = Vec<String>)]
    pub capabilities: Vec<conductor_engine::network::Capability>,
    /// Cents per shipment, for the `lowest-cost` strategy (default 500).
    #[serde(default = "default_cost")]
    pub cost_per_shipment: u32,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_priority() -> u32 {
    1
}

fn default_cost() -> u32 {
    500
}

#[derive(Serialize, ToSchema)]
pub struct StockPointView {
    pub id: String,
    #[schema(value_type = String)]
    pub kind: conductor_engine::network::StockPointKind,
    pub name: String,
    pub location: LatLon,
    pub priority: u32,
    #[schema(value_type = Vec<String>)]
    pub channels: Vec<conductor_engine::network::Channel>,
    #[schema(value_type = Vec<String>)]
    pub capabilities: Vec<conductor_engine::network::Capability>,
    pub cost_per_shipment: u32,
    pub tags: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Items<T: ToSchema> {
    pub items: Vec<T>,
}

// --- inventory ------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustments {
    pub adjustments: Vec<AdjustmentLine>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentLine {
    pub stock_point: String,
    pub sku: String,
    /// Exactly one of `set_on_hand` and `delta`.
    #[serde(default)]
    pub set_on_hand: Option<u64>,
    #[serde(default)]
    pub delta: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetyStock {
    pub stock_point: String,
    pub sku: String,
    pub qty: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingBody {
    pub stock_point: String,
    pub sku: String,
    pub qty: u64,
    /// RFC 3339.
    pub eta: String,
}

#[derive(Serialize, ToSchema)]
pub struct IncomingView {
    pub id: String,
    pub stock_point: String,
    pub sku: String,
    pub qty: u64,
    pub eta: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub stock_point: String,
    pub sku: String,
    pub qty: u64,
    #[serde(default)]
    pub incoming_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuLimits {
    /// Units one `customer_ref` may hold or have bought at once; null removes the cap.
    pub max_per_customer: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

// --- availability ---------------------------------------------------------------------------

#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct AvailabilityItem {
    pub sku: String,
    pub available: u64,
    pub on_hand: u64,
    pub held: u64,
    pub allocated: u64,
    pub safety_stock: u64,
    pub incoming: Vec<IncomingQty>,
    pub stock_points: Vec<StockPointAvailable>,
}

#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct IncomingQty {
    pub qty: u64,
    pub eta: String,
}

#[derive(Serialize, ToSchema, Clone, PartialEq)]
pub struct StockPointAvailable {
    pub id: String,
    pub available: u64,
}

// --- reservations and orders ----------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    #[schema(value_type = String, example = "web")]
    pub channel: conductor_engine::network::Channel,
    pub lines: Vec<LineBody>,
    #[serde(default)]
    pub ship_to: Option<LatLon>,
    #[serde(default)]
    pub pickup_at: Option<String>,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
    #[serde(default = "yes")]
    pub allow_split: bool,
    #[serde(default)]
    pub allow_partial: bool,
    #[serde(default)]
    pub allow_backorder: bool,
    #[serde(default)]
    pub customer_ref: Option<String>,
    /// Free-form tags sourcing rules may match.
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    pub sku: String,
    pub qty: u64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    #[serde(default)]
    pub customer_ref: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReservationView {
    pub id: String,
    /// `held|confirmed|released|expired`.
    pub status: String,
    pub expires_at: String,
    pub created_at: String,
    #[schema(value_type = String)]
    pub channel: conductor_engine::network::Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub lines: Vec<ReservedLineView>,
    /// Why it was sourced this way (rule, strategy, candidates with scores): for customer
    /// service. An extension of the contract.
    #[schema(value_type = Object)]
    pub explanation: ExplanationView,
}

/// The engine's `Explanation` with stock point codes where it has interned ids; serialized
/// directly, without a `serde_json::Value` tree in between (a few allocations per reservation
/// instead of one per key and value).
#[derive(Serialize)]
pub struct ExplanationView {
    pub rule_set_version: u64,
    pub groups: Vec<GroupExplanationView>,
}

#[derive(Serialize)]
pub struct GroupExplanationView {
    pub rule_index: usize,
    pub rule_name: String,
    pub strategy: conductor_engine::sourcing::Strategy,
    pub lines: Vec<usize>,
    pub candidates: Vec<CandidateView>,
    pub candidates_total: usize,
    pub tie_break: Option<conductor_engine::sourcing::plan::TieBreak>,
}

#[derive(Serialize)]
pub struct CandidateView {
    pub stock_point: String,
    pub score: f64,
    pub available: u64,
    pub chosen: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ReservedLineView {
    pub sku: String,
    pub qty: u64,
    pub allocations: Vec<AllocationView>,
}

#[derive(Serialize, ToSchema)]
pub struct AllocationView {
    pub stock_point: String,
    pub qty: u64,
    #[schema(value_type = String, example = "on_hand")]
    pub source: conductor_engine::inventory::Source,
}

#[derive(Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    /// `allocated|released|picking|packed|partially_shipped|shipped|delivered|cancelled|backordered`.
    #[schema(value_type = String)]
    pub status: conductor_engine::order::OrderStatus,
    #[schema(value_type = String)]
    pub channel: conductor_engine::network::Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    pub created_at: String,
    pub lines: Vec<OrderLineView>,
    pub fulfilments: Vec<FulfilmentView>,
    pub returns: Vec<String>,
    /// `[{"at","type",...}]`, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderLineView {
    pub sku: String,
    pub qty: u64,
}

#[derive(Serialize, ToSchema)]
pub struct FulfilmentView {
    pub id: String,
    pub stock_point: String,
    #[schema(value_type = String)]
    pub status: conductor_engine::order::FulfilmentStatus,
    pub lines: Vec<FulfilmentLineView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipment: Option<ShipmentView>,
}

#[derive(Serialize, ToSchema)]
pub struct FulfilmentLineView {
    pub sku: String,
    pub qty: u64,
    pub picked: u64,
    pub short: u64,
    pub shipped: u64,
    #[schema(value_type = String)]
    pub source: conductor_engine::inventory::Source,
}

#[derive(Serialize, ToSchema)]
pub struct ShipmentView {
    pub carrier: String,
    pub tracking: String,
}

// --- returns --------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    pub lines: Vec<ReturnLineBody>,
    #[serde(default)]
    pub drop_off: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnLineBody {
    pub sku: String,
    pub qty: u64,
    #[schema(value_type = String, example = "resellable")]
    pub condition: conductor_engine::returns::Condition,
}

#[derive(Serialize, ToSchema)]
pub struct ReturnView {
    pub id: String,
    pub order_id: String,
    pub dispositions: Vec<DispositionView>,
    pub refund: RefundView,
    pub opened_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DispositionView {
    pub sku: String,
    pub qty: u64,
    pub stock_point: String,
    #[schema(value_type = String, example = "restock")]
    pub action: conductor_engine::returns::Action,
}

#[derive(Serialize, ToSchema)]
pub struct RefundView {
    #[schema(value_type = String, example = "pending")]
    pub status: conductor_engine::returns::RefundStatus,
    pub units: u64,
}

// --- replenishment --------------------------------------------------------------------------

/// A suggested reorder point for one SKU at one stock point, from its demand history.
#[derive(Serialize, ToSchema)]
pub struct ReplenishmentView {
    pub sku: String,
    pub on_hand: u64,
    /// `smooth|erratic|intermittent|lumpy` (ADI / CV² classification).
    pub demand_class: String,
    /// `ses|sba`: the forecasting method used for that class.
    pub method: String,
    /// Expected units per day.
    pub per_day: f64,
    pub reorder_point: u64,
    /// on_hand is at or below the reorder point.
    pub reorder: bool,
    pub history_days: usize,
}

// --- tasks ----------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    /// `pick|pack|ship|putaway`.
    pub kind: String,
    pub status: String,
    pub fulfilment_id: String,
    pub order_id: String,
    pub stock_point: String,
    pub sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub qty: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_qty: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tour: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walk_cm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carton: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dock: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CompleteTask {
    /// Units actually picked; fewer than asked is a short pick.
    #[serde(default)]
    pub qty: Option<u64>,
}

// --- rules ----------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRules {
    /// Ordered; each `{"name","match":{"channels","sku_prefix","tags"},"strategy","constraints"}`.
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct RulesView {
    pub version: u64,
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Value>,
}

// --- problems -------------------------------------------------------------------------------

/// `application/problem+json`.
#[derive(Serialize, ToSchema)]
pub struct ProblemView {
    /// `/problems/<name>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}
