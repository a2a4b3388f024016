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
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
requests=$(awk '/requests in/ {print $1}' <<<"$out")
p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
cpu_us=$(awk -v a="$before" -v b="$after" -v hz="$hz" -v n="$requests" \
  'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
per_hold=$(awk -v a="$switches_before" -v b="$switches_after" -v n="$requests" \
  'BEGIN { printf "%.2f", (b - a) / n }')
echo "holds: ${rps}/s p50 $p50 p99 $p99 server CPU ${cpu_us} us/hold, ${per_hold} context switches/hold, non-2xx ${non2xx:-0}"
# Availability of 100 SKUs per request (the storefront's batch lookup).
query=$(for i in $(seq 0 99); do printf 'sku=HOT42-%d&' "$i"; done)
before=$(ticks)
out=$(wrk -t2 -c64 -d3 --latency -H "Authorization: Bearer $key" \
  "http://127.0.0.1:$port/v1/availability?${query%&}")
after=$(ticks)
lookups=$(awk '/Requests\/sec/ {printf "%.2f", $2 * 100 / 1e6}' <<<"$out")
requests=$(awk '/requests in/ {print $1}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
cpu_us=$(awk -v a="$before" -v b="$after" -v hz="$hz" -v n="$requests" \
  'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
echo "availability: ${lookups} M SKU lookups/s (100 per request) p99 $p99 server CPU ${cpu_us} us/request, non-2xx ${non2xx:-0}"
before=$(ticks)
out=$(wrk -t2 -c64 -d3 "http://127.0.0.1:$port/healthz")
after=$(ticks)
health=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
requests=$(awk '/requests in/ {print $1}' <<<"$out")
cpu_us=$(awk -v a="$before" -v b="$after" -v hz="$hz" -v n="$requests" \
  'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
echo "healthz: ${health}/s (ratio $(awk -v a="$rps" -v b="$health" 'BEGIN { printf "%.2f", a / b }')) server CPU ${cpu_us} us/request"
