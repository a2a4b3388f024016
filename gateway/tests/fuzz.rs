//! Random, mutated and hostile JSON at every mutating route: never a 5xx, always problem+json
//! for errors, and availability unchanged by every rejected request. proptest prints the
//! failing input and its seed; `PROPTEST_CASES` runs more.

mod common;

use std::sync::LazyLock;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

static S: LazyLock<Server> = LazyLock::new(|| {
    let s = Server::start();
    s.stock_point("FZ1", "warehouse", &["web"], 48.85, 2.35);
    s.stock_point("FZ2", "store", &["web", "store"], 45.0, 4.0);
    s.set_stock("FZ1", "FZ-A", 50);
    s.set_stock("FZ2", "FZ-B", 20);
    s
});

/// (method, path, a valid body to mutate)
fn routes() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/v1/reservations",
            json!({"channel": "web", "lines": [{"sku": "FZ-A", "qty": 1}], "ttl_seconds": 60}),
        ),
        (
            "POST",
            "/v1/orders",
            json!({"channel": "web", "lines": [{"sku": "FZ-A", "qty": 1}], "customer_ref": "c"}),
        ),
        (
            "POST",
            "/v1/reservations/R-0/confirm",
            json!({"customer_ref": "c"}),
        ),
        ("POST", "/v1/orders/O-0/cancel", json!({})),
        (
            "POST",
            "/v1/orders/O-0/returns",
            json!({"lines": [{"sku": "FZ-A", "qty": 1, "condition": "damaged"}], "drop_off": "FZ2"}),
        ),
        ("POST", "/v1/returns/RT-0/receive", json!({})),
        ("POST", "/v1/tasks/F-0.pick.0/complete", json!({"qty": 1})),
        (
            "POST",
            "/v1/inventory/adjustments",
            json!({"adjustments": [{"stock_point": "FZ1", "sku": "FZ-A", "delta": -1}], "reason": "cycle-count"}),
        ),
        (
            "POST",
            "/v1/inventory/incoming",
            json!({"stock_point": "FZ1", "sku": "FZ-A", "qty": 5, "eta": "2030-01-01T00:00:00Z"}),
        ),
        (
            "POST",
            "/v1/inventory/receipts",
            json!({"stock_point": "FZ1", "sku": "FZ-A", "qty": 1}),
        ),
        (
            "PUT",
            "/v1/inventory/safety-stock",
            json!({"stock_point": "FZ1", "sku": "FZ-A", "qty": 0}),
        ),
        (
            "PUT",
            "/v1/sourcing-rules",
            json!({"rules": [{"name": "d", "strategy": "closest"}]}),
        ),
        (
            "PUT",
            "/v1/stock-points/FZ3",
            json!({"kind": "store", "name": "x", "location": {"lat": 1.0, "lon": 2.0}, "channels": ["b2b"], "capabilities": []}),
        ),
        (
            "PUT",
            "/v1/skus/FZ-C/limits",
            json!({"max_per_customer": 3}),
        ),
        (
            "POST",
            "/v1/api-keys",
            json!({"scopes": ["read"], "rate_per_s": 5}),
        ),
    ]
}

const FIELDS: [&str; 16] = [
    "channel",
    "lines",
    "sku",
    "qty",
    "ttl_seconds",
    "stock_point",
    "delta",
    "set_on_hand",
    "rules",
    "name",
    "strategy",
    "kind",
    "location",
    "customer_ref",
    "scopes",
    "condition",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("é🦀\u{0}\u{202e}".into())),
        Just(Value::String("x".repeat(300))),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Replaces the value at a random path of `base` with `with`.
fn mutate(base: &Value, choice: usize, with: Value) -> Value {
    fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| paths(v, [at.clone(), vec![k.clone()]].concat(), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| paths(v, [at.clone(), vec![i.to_string()]].concat(), out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    paths(base, Vec::new(), &mut all);
    let target = &all[choice % all.len()];
    let mut out = base.clone();
    let mut cursor = &mut out;
    for step in target {
        cursor = match cursor {
            Value::Object(m) => m.get_mut(step).expect("path"),
            Value::Array(a) => &mut a[step.parse::<usize>().expect("index")],
            _ => unreachable!(),
        };
    }
    *cursor = with;
    out
}

fn snapshot(s: &Server) -> Value {
    s.get("/v1/availability?sku=FZ-A&sku=FZ-B", ADMIN)
        .ok(200)
        .clone()
}

/// Whether the only change between two snapshots is holds expiring (an earlier accepted
/// reservation with a short TTL): held down, available up by as much, nothing else moved.
fn only_expiries(before: &Value, after: &Value) -> bool {
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    let (b, a) = (items(before), items(after));
    b.len() == a.len()
        && b.iter().zip(&a).all(|(b, a)| {
            let n = |v: &Value, f: &str| v[f].as_u64().unwrap_or(0);
            let same = ["on_hand", "allocated", "safety_stock"]
                .iter()
                .all(|f| n(b, f) == n(a, f))
                && b["incoming"] == a["incoming"];
            let released = n(b, "held").saturating_sub(n(a, "held"));
            same && n(a, "held") <= n(b, "held")
                && n(a, "available") == n(b, "available") + released
        })
}

/// The fuzz tests share one server; one test's accepted request must not land inside another
/// test's before/after comparison.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[track_caller]
fn check(s: &Server, method: &str, path: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = snapshot(s);
    let r = s.raw(method, path, Some(ADMIN), "application/json", body.clone());
    prop_assert!(
        r.status < 500,
        "{method} {path} {} -> {} {}",
        String::from_utf8_lossy(&body),
        r.status,
        r.text
    );
    if r.status >= 400 {
        let content_type = r.header("content-type");
        prop_assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        prop_assert!(
            r.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/problems/")),
            "{}",
            r.text
        );
        prop_assert_eq!(r.body["status"].as_u64(), Some(u64::from(r.status)));
        let after = snapshot(s);
        prop_assert!(
            after == before || only_expiries(&before, &after),
            "a rejected request changed availability: {} {}\nbefore {}\nafter {}",
            path,
            r.text,
            before,
            after
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_json_never_breaks_a_route(route in 0usize..15, body in any_json()) {
        let (method, path, _) = routes()[route].clone();
        check(&S, method, path, body.to_string().into_bytes())?;
    }

    #[test]
    fn mutated_valid_bodies_are_refused_cleanly(route in 0usize..15, choice in any::<usize>(), with in any_json()) {
        let (method, path, base) = routes()[route].clone();
        check(&S, method, path, mutate(&base, choice, with).to_string().into_bytes())?;
    }

    #[test]
    fn damaged_bytes_are_400_or_422(route in 0usize..15, cut in any::<usize>(), flip in any::<u8>()) {
        let (method, path, base) = routes()[route].clone();
        let mut bytes = base.to_string().into_bytes();
        let i = cut % bytes.len();
        bytes[i] ^= flip | 1;
        if cut % 3 == 0 {
            bytes.truncate(i);
        }
        check(&S, method, path, bytes)?;
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_refused() {
    let s = &*S;
    for (method, path, _) in routes() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        check(s, method, path, deep.into_bytes()).expect("deep");
        check(
            s,
            method,
            path,
            br#"{"channel":"web","lines":[{"sku":"FZ-A","qty":1e400}]}"#.to_vec(),
        )
        .expect("huge");
        check(
            s,
            method,
            path,
            br#"{"channel":"web","lines":[{"sku":"FZ-A","qty":99999999999999999999999}]}"#.to_vec(),
        )
        .expect("huge int");
        check(s, method, path, b"\xff\xfe\x00".to_vec()).expect("binary");
    }
}
