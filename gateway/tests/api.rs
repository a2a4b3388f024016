//! The HTTP contract end to end against the real `conductor` binary: every route, every error
//! code, scopes and stock point binding, idempotent retries, rate limits, the stream.
//! One server for the whole file; each test uses its own SKUs and stock points.

mod common;

use std::io::{BufRead, BufReader};
use std::sync::LazyLock;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

static S: LazyLock<Server> = LazyLock::new(|| {
    let s = Server::start();
    s.stock_point("WH1", "warehouse", &["web", "marketplace"], 48.85, 2.35);
    s.stock_point("WH2", "warehouse", &["web"], 45.76, 4.83);
    s.stock_point("ST1", "store", &["store"], 48.86, 2.34);
    s
});

#[test]
fn operations_routes_need_no_key() {
    let s = &*S;
    assert_eq!(s.request("GET", "/healthz", None, None, &[]).status, 200);
    assert_eq!(s.request("GET", "/readyz", None, None, &[]).status, 200);
    let metrics = s.request("GET", "/metrics", None, None, &[]);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("conductor_wal_flushes_total"),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("conductor_http_request_duration_seconds_bucket"));
    assert!(metrics.text.contains("conductor_checkpoints_total"));
    let openapi = s.request("GET", "/openapi.json", None, None, &[]);
    let paths = openapi.ok(200)["paths"].as_object().expect("paths").clone();
    for path in [
        "/v1/reservations",
        "/v1/availability",
        "/v1/tasks/{id}/complete",
        "/v1/orders/{id}/returns",
        "/v1/sourcing-rules",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    let page = s.request("GET", "/", None, None, &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("<html") || page.text.contains("<!doctype"),
        "dashboard"
    );
}

#[test]
fn every_documented_v1_route_and_method_needs_a_key() {
    // Authentication is decided by the matched route's prefix: a route added under /v1 is
    // guarded without being listed anywhere. Walk the contract to pin that down.
    let s = &*S;
    let openapi = s.request("GET", "/openapi.json", None, None, &[]);
    let paths = openapi.ok(200)["paths"].as_object().expect("paths").clone();
    let mut checked = 0;
    for (path, operations) in &paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|part| if part.starts_with('{') { "X-1" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in operations.as_object().expect("operations").keys() {
            let method = method.to_uppercase();
            let answer = s.request(&method, &concrete, None, None, &[]);
            assert_eq!(answer.status, 401, "{method} {concrete}: {}", answer.text);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations under /v1");
}

#[test]
fn every_error_is_problem_json() {
    let s = &*S;
    s.request("GET", "/v1/availability?sku=A", None, None, &[])
        .problem(401, "unauthorized");
    s.request("GET", "/v1/availability?sku=A", Some("nope"), None, &[])
        .problem(401, "unauthorized");
    s.request("GET", "/v1/nowhere", Some(ADMIN), None, &[])
        .problem(404, "not-found");
    s.request("GET", "/nowhere", None, None, &[])
        .problem(404, "not-found");
    s.request("PATCH", "/v1/reservations", Some(ADMIN), None, &[])
        .problem(405, "method-not-allowed");
    s.raw(
        "POST",
        "/v1/reservations",
        Some(ADMIN),
        "application/json",
        b"{\"channel\":".to_vec(),
    )
    .problem(400, "malformed-json");
    s.raw(
        "POST",
        "/v1/reservations",
        Some(ADMIN),
        "text/plain",
        b"{}".to_vec(),
    )
    .problem(415, "unsupported-media-type");
    let huge = format!(
        "{{\"channel\":\"web\",\"lines\":[],\"tags\":[\"{}\"]}}",
        "x".repeat(1024 * 1024 + 10)
    );
    s.raw(
        "POST",
        "/v1/reservations",
        Some(ADMIN),
        "application/json",
        huge.into_bytes(),
    )
    .problem(413, "body-too-large");
    s.post(
        "/v1/reservations",
        ADMIN,
        json!({"channel": "web", "lines": [{"sku": "A", "qty": 1}], "bogus": 1}),
    )
    .problem(422, "invalid-request");
    s.post(
        "/v1/reservations",
        ADMIN,
        json!({"channel": "tv", "lines": [{"sku": "A", "qty": 1}]}),
    )
    .problem(422, "invalid-request");
    s.get("/v1/reservations/R-999999", ADMIN)
        .problem(404, "not-found");
    s.get("/v1/reservations/garbage", ADMIN)
        .problem(404, "not-found");
    s.get("/v1/orders/O-999999", ADMIN)
        .problem(404, "not-found");
    s.post("/v1/returns/RT-99999/receive", ADMIN, json!({}))
        .problem(404, "not-found");
    s.get("/v1/stock-points/NOPE/tasks", ADMIN)
        .problem(404, "not-found");
}

#[test]
fn scopes_gate_every_route() {
    let s = &*S;
    let read = s.key(&["read"], &[], None);
    let checkout = s.key(&["checkout"], &[], None);
    let fulfil = s.key(&["fulfilment"], &["WH2"], None);
    s.get("/v1/availability?sku=A", &read).ok(200);
    s.get("/v1/availability?sku=A", &checkout)
        .problem(403, "forbidden");
    s.post("/v1/reservations", &read, reserve_body("SCOPE", 1))
        .problem(403, "forbidden");
    s.post("/v1/orders", &fulfil, reserve_body("SCOPE", 1))
        .problem(403, "forbidden");
    s.post("/v1/api-keys", &checkout, json!({"scopes": ["read"]}))
        .problem(403, "forbidden");
    s.put("/v1/stock-points/X1", &checkout, json!({}))
        .problem(403, "forbidden");
    s.post(
        "/v1/inventory/adjustments",
        &fulfil,
        json!({"adjustments": []}),
    )
    .problem(403, "forbidden");
    s.get("/v1/sourcing-rules", &read).problem(403, "forbidden");
    s.get("/v1/stock-points/WH1/tasks", &fulfil)
        .problem(403, "forbidden");
    s.get("/v1/stock-points/WH2/tasks", &fulfil).ok(200);
    s.get("/v1/stock-points/WH2/tasks", &checkout)
        .problem(403, "forbidden");
    s.post(
        "/v1/inventory/receipts",
        &fulfil,
        json!({"stock_point": "WH1", "sku": "SCOPE", "qty": 1}),
    )
    .problem(403, "forbidden");
    s.post(
        "/v1/inventory/receipts",
        &fulfil,
        json!({"stock_point": "WH2", "sku": "SCOPE", "qty": 1}),
    )
    .ok(200);
    // Keys: a fulfilment key needs stock points; unknown ones are 422.
    s.post("/v1/api-keys", ADMIN, json!({"scopes": ["fulfilment"]}))
        .problem(422, "invalid-request");
    s.post(
        "/v1/api-keys",
        ADMIN,
        json!({"scopes": ["fulfilment"], "stock_points": ["NOPE"]}),
    )
    .problem(422, "invalid-request");
    s.post("/v1/api-keys", ADMIN, json!({"scopes": ["root"]}))
        .problem(422, "invalid-request");
    let listed = s.get("/v1/api-keys", ADMIN);
    assert!(listed.ok(200)["items"].as_array().expect("items").len() >= 3);
    assert!(!listed.text.contains(&read), "secrets are never listed");
}

#[test]
fn stock_points_and_inventory() {
    let s = &*S;
    let r = s.put("/v1/stock-points/DS1", ADMIN, json!({"kind": "dropship", "name": "vendor", "location": {"lat": 50.0, "lon": 8.0}, "priority": 9, "channels": ["b2b"], "capabilities": ["ship"]}));
    assert_eq!(r.ok(200)["id"], "DS1");
    let list = s.get("/v1/stock-points", ADMIN);
    let ids: Vec<&str> = list.ok(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(ids.contains(&"DS1") && ids.contains(&"WH1"), "{ids:?}");
    s.put("/v1/stock-points/DS1", ADMIN, json!({"kind": "moon", "name": "x", "location": {"lat": 0, "lon": 0}, "channels": [], "capabilities": []})).problem(422, "invalid-request");
    s.put("/v1/stock-points/DS1", ADMIN, json!({"kind": "store", "name": "x", "location": {"lat": 95, "lon": 0}, "channels": [], "capabilities": []})).problem(422, "invalid-request");
    s.put("/v1/stock-points/bad%20id", ADMIN, json!({"kind": "store", "name": "x", "location": {"lat": 5, "lon": 0}, "channels": [], "capabilities": []})).problem(422, "invalid-request");

    s.set_stock("WH1", "INV-A", 100);
    s.post(
        "/v1/inventory/adjustments",
        ADMIN,
        json!({"adjustments": [{"stock_point": "WH1", "sku": "INV-A", "delta": -3}]}),
    )
    .ok(200);
    assert_eq!(s.available("INV-A"), 97);
    s.post(
        "/v1/inventory/adjustments",
        ADMIN,
        json!({"adjustments": [{"stock_point": "WH1", "sku": "INV-A", "delta": -1000}]}),
    )
    .problem(409, "conflict");
    s.post(
        "/v1/inventory/adjustments",
        ADMIN,
        json!({"adjustments": [{"stock_point": "NOPE", "sku": "INV-A", "delta": 1}]}),
    )
    .problem(422, "invalid-request");
    s.post("/v1/inventory/adjustments", ADMIN, json!({"adjustments": [{"stock_point": "WH1", "sku": "INV-A", "delta": 1, "set_on_hand": 3}]})).problem(422, "invalid-request");
    assert_eq!(
        s.available("INV-A"),
        97,
        "rejected adjustments change nothing"
    );
    s.put(
        "/v1/inventory/safety-stock",
        ADMIN,
        json!({"stock_point": "WH1", "sku": "INV-A", "qty": 7}),
    )
    .ok(200);
    let item = s.get("/v1/availability?sku=INV-A", ADMIN).ok(200)["items"][0].clone();
    assert_eq!(
        (
            item["available"].as_u64(),
            item["safety_stock"].as_u64(),
            item["on_hand"].as_u64()
        ),
        (Some(90), Some(7), Some(97))
    );

    let incoming = s.post(
        "/v1/inventory/incoming",
        ADMIN,
        json!({"stock_point": "WH1", "sku": "INV-A", "qty": 50, "eta": "2030-01-02T03:04:05Z"}),
    );
    let id = incoming.ok(201)["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("IN-"), "{id}");
    let item = s.get("/v1/availability?sku=INV-A", ADMIN).ok(200)["items"][0].clone();
    assert_eq!(
        item["incoming"],
        json!([{"qty": 50, "eta": "2030-01-02T03:04:05.000Z"}])
    );
    s.post(
        "/v1/inventory/incoming",
        ADMIN,
        json!({"stock_point": "WH1", "sku": "INV-A", "qty": 5, "eta": "soon"}),
    )
    .problem(422, "invalid-request");
    s.post(
        "/v1/inventory/receipts",
        ADMIN,
        json!({"stock_point": "WH1", "sku": "INV-A", "qty": 20, "incoming_id": id}),
    )
    .ok(200);
    assert_eq!(s.available("INV-A"), 110);
    s.post(
        "/v1/inventory/receipts",
        ADMIN,
        json!({"stock_point": "WH1", "sku": "INV-A", "qty": 1, "incoming_id": "IN-99999"}),
    )
    .problem(404, "not-found");
}

#[test]
fn availability_sums_eligible_stock_points_and_reports_unknown_skus_with_zeros() {
    let s = &*S;
    s.set_stock("WH1", "AV-1", 10);
    s.set_stock("WH2", "AV-1", 5);
    s.set_stock("ST1", "AV-1", 3);
    let all = s.get("/v1/availability?sku=AV-1&sku=AV-NEVER", ADMIN);
    let items = all.ok(200)["items"].as_array().expect("items").clone();
    assert_eq!(items[0]["available"], 18);
    assert_eq!(items[0]["stock_points"].as_array().expect("sps").len(), 3);
    assert_eq!(
        items[1],
        json!({"sku": "AV-NEVER", "available": 0, "on_hand": 0, "held": 0, "allocated": 0, "safety_stock": 0, "incoming": [], "stock_points": []})
    );
    let web = s.get("/v1/availability?sku=AV-1&channel=web", ADMIN);
    assert_eq!(
        web.ok(200)["items"][0]["available"],
        15,
        "the store does not serve web"
    );
    let one = s.get("/v1/availability?sku=AV-1&stock_point=WH2", ADMIN);
    assert_eq!(one.ok(200)["items"][0]["available"], 5);
    s.get("/v1/availability", ADMIN)
        .problem(422, "invalid-request");
    s.get("/v1/availability?sku=AV-1&channel=tv", ADMIN)
        .problem(422, "invalid-request");
    s.get("/v1/availability?sku=AV-1&stock_point=NOPE", ADMIN)
        .problem(422, "invalid-request");
    s.get("/v1/availability?sku=a%20b", ADMIN)
        .problem(422, "invalid-request");
    let many: String = (0..1001).map(|i| format!("sku=S{i}&")).collect();
    s.get(&format!("/v1/availability?{many}"), ADMIN)
        .problem(422, "invalid-request");
    let thousand: String = (0..1000).map(|i| format!("sku=S{i}&")).collect();
    assert_eq!(
        s.get(&format!("/v1/availability?{thousand}"), ADMIN)
            .ok(200)["items"]
            .as_array()
            .map(Vec::len),
        Some(1000)
    );
}

#[test]
fn reservations_hold_release_confirm() {
    let s = &*S;
    let checkout = s.key(&["checkout"], &[], None);
    s.set_stock("WH1", "RES-A", 5);
    let r = s.post("/v1/reservations", &checkout, reserve_body("RES-A", 2));
    let body = r.ok(201).clone();
    assert_eq!(body["status"], "held");
    assert_eq!(
        body["lines"],
        json!([{"sku": "RES-A", "qty": 2, "allocations": [{"stock_point": "WH1", "qty": 2, "source": "on_hand"}]}])
    );
    assert!(body["expires_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let group = &body["explanation"]["groups"][0];
    assert!(group["rule_name"].is_string(), "the plan explains itself");
    assert!(group["strategy"].is_string());
    let chosen = group["candidates"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["chosen"] == true))
        .expect("a chosen candidate");
    assert_eq!(
        chosen["stock_point"], "WH1",
        "candidates name stock points by code, not by interned id"
    );
    assert!(chosen["score"].is_number() && chosen["available"].is_u64());
    let id = body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("R-"));
    assert_eq!(s.available("RES-A"), 3);
    assert_eq!(
        s.get(&format!("/v1/reservations/{id}"), &checkout).ok(200)["status"],
        "held"
    );

    let short = s.post("/v1/reservations", &checkout, reserve_body("RES-A", 4));
    short.problem(409, "insufficient-stock");
    assert_eq!(
        short.body["shortages"],
        json!([{"sku": "RES-A", "requested": 4, "available": 3}])
    );
    assert_eq!(s.available("RES-A"), 3, "nothing is held on a 409");

    assert_eq!(
        s.delete(&format!("/v1/reservations/{id}"), &checkout)
            .status,
        204
    );
    assert_eq!(s.available("RES-A"), 5);
    assert_eq!(
        s.get(&format!("/v1/reservations/{id}"), &checkout).ok(200)["status"],
        "released"
    );
    s.delete(&format!("/v1/reservations/{id}"), &checkout)
        .problem(409, "conflict");
    s.post(
        &format!("/v1/reservations/{id}/confirm"),
        &checkout,
        json!({}),
    )
    .problem(409, "conflict");

    let r2 = s.post("/v1/reservations", &checkout, reserve_body("RES-A", 1));
    let id2 = r2.ok(201)["id"].as_str().expect("id").to_owned();
    let order = s.request(
        "POST",
        &format!("/v1/reservations/{id2}/confirm"),
        Some(&checkout),
        None,
        &[],
    );
    assert_eq!(order.ok(201)["status"], "allocated", "{}", order.text);
    assert_eq!(order.body["reservation_id"], json!(id2));
    s.delete(&format!("/v1/reservations/{id2}"), &checkout)
        .problem(409, "conflict");
    assert_eq!(
        s.get(&format!("/v1/reservations/{id2}"), &checkout).ok(200)["status"],
        "confirmed"
    );

    for (body, field) in [
        (json!({"channel": "web", "lines": []}), "lines"),
        (
            json!({"channel": "web", "lines": [{"sku": "RES-A", "qty": 0}]}),
            "lines[0].qty",
        ),
        (
            json!({"channel": "web", "lines": [{"sku": "RES-A", "qty": 1_000_001}]}),
            "lines[0].qty",
        ),
        (
            json!({"channel": "web", "lines": [{"sku": "RES-A", "qty": 1}], "ttl_seconds": 0}),
            "ttl_seconds",
        ),
        (
            json!({"channel": "web", "lines": [{"sku": "RES-A", "qty": 1}], "ttl_seconds": 86_401}),
            "ttl_seconds",
        ),
        (
            json!({"channel": "web", "lines": [{"sku": "RES A", "qty": 1}]}),
            "lines[0].sku",
        ),
        (
            json!({"channel": "web", "lines": [{"sku": "RES-A", "qty": 1}], "pickup_at": "NOPE"}),
            "pickup_at",
        ),
    ] {
        let r = s.post("/v1/reservations", &checkout, body);
        r.problem(422, "invalid-request");
        assert_eq!(r.body["field"], field, "{}", r.text);
    }
    let lines: Vec<Value> = (0..1001)
        .map(|i| json!({"sku": format!("L{i}"), "qty": 1}))
        .collect();
    s.post(
        "/v1/reservations",
        &checkout,
        json!({"channel": "web", "lines": lines}),
    )
    .problem(422, "invalid-request");
}

#[test]
fn per_customer_limits_refuse_with_limit_exceeded() {
    let s = &*S;
    s.set_stock("WH1", "FLASH-1", 100);
    s.put(
        "/v1/skus/FLASH-1/limits",
        ADMIN,
        json!({"max_per_customer": 2}),
    )
    .ok(200);
    let mut body = reserve_body("FLASH-1", 2);
    body["customer_ref"] = json!("alice");
    s.post("/v1/reservations", ADMIN, body.clone()).ok(201);
    body["lines"][0]["qty"] = json!(1);
    s.post("/v1/reservations", ADMIN, body.clone())
        .problem(409, "limit-exceeded");
    body["customer_ref"] = json!("bob");
    s.post("/v1/reservations", ADMIN, body).ok(201);
    s.put(
        "/v1/skus/FLASH-1/limits",
        ADMIN,
        json!({"max_per_customer": 0}),
    )
    .problem(422, "invalid-request");
}

#[test]
fn an_order_is_picked_packed_shipped_returned_and_restocked_over_the_api() {
    let s = &*S;
    let checkout = s.key(&["checkout"], &[], None);
    let wh2 = s.key(&["fulfilment"], &["WH2"], None);
    let wh1 = s.key(&["fulfilment"], &["WH1"], None);
    s.set_stock("WH2", "FLOW-A", 10);
    let order = s.post(
        "/v1/orders",
        &checkout,
        json!({"channel": "web", "lines": [{"sku": "FLOW-A", "qty": 2}], "customer_ref": "carol"}),
    );
    let order = order.ok(201).clone();
    let oid = order["id"].as_str().expect("id").to_owned();
    assert_eq!(order["fulfilments"][0]["stock_point"], "WH2");
    let got = s.get(&format!("/v1/orders/{oid}"), &checkout);
    assert_eq!(got.ok(200)["events"][0]["type"], "created");
    assert!(got.body["events"][0]["at"].is_string());

    let mut done = 0;
    let mut guard = 0;
    while done < 3 && guard < 500 {
        guard += 1;
        let tasks = s.get("/v1/stock-points/WH2/tasks?status=open", &wh2);
        let items = tasks.ok(200)["items"].as_array().expect("items").clone();
        let Some(task) = items
            .iter()
            .find(|t| t["fulfilment_id"] == order["fulfilments"][0]["id"])
        else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let tid = task["id"].as_str().expect("task id").to_owned();
        // Another stock point's staff cannot touch it.
        s.post(&format!("/v1/tasks/{tid}/complete"), &wh1, json!({}))
            .problem(403, "forbidden");
        s.post(&format!("/v1/tasks/{tid}/complete"), &checkout, json!({}))
            .problem(403, "forbidden");
        let completed = s.request(
            "POST",
            &format!("/v1/tasks/{tid}/complete"),
            Some(&wh2),
            None,
            &[],
        );
        assert_eq!(
            completed.ok(200)["status"],
            "completed",
            "{}",
            completed.text
        );
        s.post(&format!("/v1/tasks/{tid}/complete"), &wh2, json!({}))
            .problem(409, "conflict");
        done += 1;
    }
    assert_eq!(done, 3, "pick, pack and ship");
    s.post("/v1/tasks/F-999999.pick.0/complete", &wh2, json!({}))
        .problem(404, "not-found");
    let shipped = s.get(&format!("/v1/orders/{oid}"), &checkout);
    assert_eq!(shipped.ok(200)["status"], "shipped", "{}", shipped.text);
    assert!(shipped.body["fulfilments"][0]["shipment"]["tracking"].is_string());
    let types: Vec<&str> = shipped.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(types.contains(&"shipped"), "{types:?}");
    s.post(&format!("/v1/orders/{oid}/cancel"), &checkout, json!({}))
        .problem(409, "conflict");

    let before = s.available("FLOW-A");
    let ret = s.post(
        &format!("/v1/orders/{oid}/returns"),
        &checkout,
        json!({"lines": [{"sku": "FLOW-A", "qty": 1, "condition": "resellable"}]}),
    );
    let ret = ret.ok(201).clone();
    assert_eq!(ret["refund"]["status"], "pending");
    let disposition = ret["dispositions"][0].clone();
    assert_eq!(disposition["action"], "restock", "{ret}");
    let rid = ret["id"].as_str().expect("id").to_owned();
    s.post(
        &format!("/v1/orders/{oid}/returns"),
        &checkout,
        json!({"lines": [{"sku": "FLOW-A", "qty": 5, "condition": "resellable"}]}),
    )
    .problem(409, "conflict");
    s.post(
        &format!("/v1/orders/{oid}/returns"),
        &checkout,
        json!({"lines": [{"sku": "FLOW-A", "qty": 1, "condition": "broken"}]}),
    )
    .problem(422, "invalid-request");
    let home = disposition["stock_point"].as_str().expect("sp").to_owned();
    let other = if home == "WH1" { &wh2 } else { &wh1 };
    s.post(&format!("/v1/returns/{rid}/receive"), other, json!({}))
        .problem(403, "forbidden");
    s.post(&format!("/v1/returns/{rid}/receive"), ADMIN, json!({}))
        .ok(200);
    assert_eq!(
        s.available("FLOW-A"),
        before + 1,
        "restocked units become available"
    );

    // The shipment is demand history: WH2 now suggests a reorder point for FLOW-A (admin only).
    s.get("/v1/stock-points/WH2/replenishment", &checkout)
        .problem(403, "forbidden");
    let suggestions = s.get("/v1/stock-points/WH2/replenishment", ADMIN);
    let items = suggestions.ok(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    let flow = items
        .iter()
        .find(|i| i["sku"] == "FLOW-A")
        .unwrap_or_else(|| panic!("FLOW-A in {items:?}"));
    assert!(flow["history_days"].as_u64().expect("days") >= 1, "{flow}");
    assert!(
        flow["demand_class"].is_string() && flow["method"].is_string(),
        "{flow}"
    );
    s.get("/v1/stock-points/NOPE/replenishment", ADMIN)
        .problem(404, "not-found");
}

#[test]
fn cancelling_an_order_releases_its_stock() {
    let s = &*S;
    s.set_stock("WH1", "CAN-A", 4);
    let order = s.post(
        "/v1/orders",
        ADMIN,
        json!({"channel": "web", "lines": [{"sku": "CAN-A", "qty": 3}]}),
    );
    let oid = order.ok(201)["id"].as_str().expect("id").to_owned();
    assert_eq!(s.available("CAN-A"), 1);
    let cancelled = s.post(&format!("/v1/orders/{oid}/cancel"), ADMIN, json!({}));
    assert_eq!(cancelled.ok(200)["status"], "cancelled");
    assert_eq!(s.available("CAN-A"), 4);
    s.post(&format!("/v1/orders/{oid}/cancel"), ADMIN, json!({}))
        .problem(409, "conflict");
}

#[test]
fn idempotent_retries_have_one_effect() {
    let s = &*S;
    s.set_stock("WH1", "IDEM-A", 10);
    let body = reserve_body("IDEM-A", 3);
    let key = [("idempotency-key", "retry-1")];
    let first = s.request("POST", "/v1/reservations", Some(ADMIN), Some(&body), &key);
    first.ok(201);
    let second = s.request("POST", "/v1/reservations", Some(ADMIN), Some(&body), &key);
    assert_eq!((second.status, &second.text), (201, &first.text));
    assert_eq!(
        second.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(s.available("IDEM-A"), 7, "one effect");
    s.request(
        "POST",
        "/v1/reservations",
        Some(ADMIN),
        Some(&reserve_body("IDEM-A", 4)),
        &key,
    )
    .problem(422, "idempotency-key-reused");
    // Scoped per API key: another key may use the same Idempotency-Key.
    let other = s.key(&["checkout"], &[], None);
    s.request("POST", "/v1/reservations", Some(&other), Some(&body), &key)
        .ok(201);
    assert_eq!(s.available("IDEM-A"), 4);
    // Business refusals are final answers too.
    let big = reserve_body("IDEM-A", 50);
    let k2 = [("idempotency-key", "retry-2")];
    s.request("POST", "/v1/reservations", Some(ADMIN), Some(&big), &k2)
        .problem(409, "insufficient-stock");
    s.set_stock("WH1", "IDEM-A", 100);
    s.request("POST", "/v1/reservations", Some(ADMIN), Some(&big), &k2)
        .problem(409, "insufficient-stock");
    // Orders too.
    let k3 = [("idempotency-key", "order-1")];
    let o1 = s.request(
        "POST",
        "/v1/orders",
        Some(ADMIN),
        Some(&reserve_body("IDEM-A", 1)),
        &k3,
    );
    let o2 = s.request(
        "POST",
        "/v1/orders",
        Some(ADMIN),
        Some(&reserve_body("IDEM-A", 1)),
        &k3,
    );
    assert_eq!((o1.status, o2.status), (201, 201));
    assert_eq!(o1.body["id"], o2.body["id"]);
    s.request(
        "POST",
        "/v1/reservations",
        Some(ADMIN),
        Some(&body),
        &[("idempotency-key", "")],
    )
    .problem(422, "invalid-request");
}

#[test]
fn rate_limited_keys_get_429_with_retry_after() {
    let s = &*S;
    let slow = s.key(&["read"], &[], Some(2));
    let mut limited = None;
    for _ in 0..10 {
        let r = s.get("/v1/availability?sku=RL", &slow);
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a 429 within 10 requests at 2/s");
    r.problem(429, "rate-limited");
    assert!(r
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|v| v >= 1));
    for _ in 0..50 {
        s.get("/v1/availability?sku=RL", ADMIN).ok(200);
    }
}

#[test]
fn sourcing_rules_round_trip_and_name_the_bad_field() {
    let s = &*S;
    let current = s.get("/v1/sourcing-rules", ADMIN);
    assert!(current.ok(200)["rules"].is_array());
    let bad = s.put("/v1/sourcing-rules", ADMIN, json!({"rules": [{"name": "a", "strategy": "priority"}, {"name": "b", "strategy": "priority", "constraints": {"exclude": ["NOPE"]}}]}));
    bad.problem(422, "invalid-request");
    assert_eq!(bad.body["field"], "rules[1].constraints.exclude[0]");
    s.put(
        "/v1/sourcing-rules",
        ADMIN,
        json!({"rules": [{"name": "a", "strategy": "cheapest"}]}),
    )
    .problem(422, "invalid-request");
    s.put("/v1/sourcing-rules", ADMIN, json!({"rules": []}))
        .problem(422, "invalid-request");
    let good = s.put("/v1/sourcing-rules", ADMIN, json!({"rules": [
        {"name": "flash", "match": {"sku_prefix": "FS-"}, "strategy": "priority", "constraints": {"max_splits": 1}},
        {"name": "default", "strategy": "closest"}
    ]}));
    assert_eq!(good.ok(200)["rules"][0]["name"], "flash");
    assert_eq!(
        s.get("/v1/sourcing-rules", ADMIN).ok(200)["version"],
        good.body["version"]
    );
}

#[test]
fn the_stream_sends_the_current_item_then_every_change() {
    let s = &*S;
    s.set_stock("WH1", "SSE-A", 10);
    let read = s.key(&["read"], &[], None);
    let url = format!("{}/v1/availability/stream?sku=SSE-A&key={read}", s.base);
    let response = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("client")
        .get(url)
        .send()
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(response).lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if tx.send((event.clone(), data.to_owned())).is_err() {
                    return;
                }
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("an event");
    let (name, data) = next();
    assert_eq!(name, "availability");
    let item: Value = serde_json::from_str(&data).expect("json");
    assert_eq!(
        (item["sku"].as_str(), item["available"].as_u64()),
        (Some("SSE-A"), Some(10))
    );
    s.post("/v1/reservations", ADMIN, reserve_body("SSE-A", 4))
        .ok(201);
    let (name, data) = next();
    assert_eq!(name, "availability");
    assert_eq!(
        serde_json::from_str::<Value>(&data).expect("json")["available"],
        6
    );
    // Without the key in the query, the stream is 401 like any route.
    let plain = s.request("GET", "/v1/availability/stream?sku=SSE-A", None, None, &[]);
    plain.problem(401, "unauthorized");
}
