#!/usr/bin/env bash
# Durable holds over HTTP against a trivial endpoint in the same run, the generator (wrk) on the
# same two cores as the server. Usage: benches/http/run.sh [BIN_DIR] [SECONDS]
# BIN_DIR holds `conductor` and `conductor-loadtest` (default target/release).
# Prints holds/s, latency, the server's CPU per hold, then availability lookups (100 SKUs per
# request) and /healthz req/s, each with the server's CPU per request.
# PERF=FILE also records the server with `perf record` during the hold run (call graphs from
# DWARF: the release build keeps debug info but no frame pointers).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-target/release}
secs=${2:-6}
port=${PORT:-18080}
key=ck_bench$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

CONDUCTOR_ADMIN_KEY=$key CONDUCTOR_LOG=warn "$bin/conductor" serve --data-dir "$data" \
  --listen "127.0.0.1:$port" &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

# Seed the 100 SKUs (and warm up) with a short harness run.
"$bin/conductor-loadtest" flash-sale --target "http://127.0.0.1:$port" --key "$key" -c 64 -d 2 \
  --stock 10000000 --seed 42 --skus 100 >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
# Context switches of all the server's threads so far (voluntary and not).
switches() { cat /proc/"$server"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n}'; }
hz=$(getconf CLK_TCK)
# Figures from wrk's output ($1): requests/s, requests in all, a latency percentile, non-2xx.
rate() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
count() { awk '/requests in/ {print $1}' <<<"$1"; }
percentile() { awk -v p="$2" '$1 == p {print $2}' <<<"$1"; }
non2xx() { awk '/Non-2xx/ {n = $5} END {print n + 0}' <<<"$1"; }
# The server's CPU in µs per request, from tick readings $1 and $2 over $3 requests.
cpu_per() {
  awk -v a="$1" -v b="$2" -v hz="$hz" -v n="$3" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }'
}
before=$(ticks)
switches_before=$(switches)
perf=
if [[ -n "${PERF:-}" ]]; then
  perf record -q -F 499 --call-graph dwarf,16384 -p "$server" -o "$PERF" -- sleep "$secs" 2>/dev/null &
  perf=$!
fi
out=$(CONDUCTOR_KEY=$key wrk -t2 -c64 -d"$secs" --latency -s "$here/hold.lua" \
  "http://127.0.0.1:$port")
after=$(ticks)
switches_after=$(switches)
[[ -n "$perf" ]] && wait "$perf"
rps=$(rate "$out")
requests=$(count "$out")
per_hold=$(awk -v a="$switches_before" -v b="$switches_after" -v n="$requests" \
  'BEGIN { printf "%.2f", (b - a) / n }')
echo "holds: ${rps}/s p50 $(percentile "$out" 50%) p99 $(percentile "$out" 99%)" \
  "server CPU $(cpu_per "$before" "$after" "$requests") us/hold," \
  "${per_hold} context switches/hold, non-2xx $(non2xx "$out")"
# Availability of 100 SKUs per request (the storefront's batch lookup).
query=$(for i in $(seq 0 99); do printf 'sku=HOT42-%d&' "$i"; done)
before=$(ticks)
out=$(wrk -t2 -c64 -d3 --latency -H "Authorization: Bearer $key" \
  "http://127.0.0.1:$port/v1/availability?${query%&}")
after=$(ticks)
echo "availability: $(awk -v r="$(rate "$out")" 'BEGIN { printf "%.2f", r * 100 / 1e6 }') M SKU" \
  "lookups/s (100 per request) p99 $(percentile "$out" 99%)" \
  "server CPU $(cpu_per "$before" "$after" "$(count "$out")") us/request, non-2xx $(non2xx "$out")"
before=$(ticks)
out=$(wrk -t2 -c64 -d3 "http://127.0.0.1:$port/healthz")
after=$(ticks)
health=$(rate "$out")
echo "healthz: ${health}/s (ratio $(awk -v a="$rps" -v b="$health" 'BEGIN { printf "%.2f", a / b }'))" \
  "server CPU $(cpu_per "$before" "$after" "$(count "$out")") us/request"
