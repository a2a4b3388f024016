#!/usr/bin/env bash
# Alternating A/B runs of two builds in one go, with medians and the ratio B/A: the machine is
# shared and noisy, so a figure means something only next to a baseline run in the same spell.
#
# Usage: benches/ab.sh http|inproc DIR_A DIR_B [RUNS]
#   http    benches/http/run.sh against each build (DIR holds `conductor` and
#           `conductor-loadtest`): durable holds/s, p99 and server CPU per hold over HTTP.
#   inproc  DIR/actor-holds: holds/s, p99 and CPU per hold in process; SCENARIO picks the
#           scenario (default hot), REQUESTERS the requesters (default 256).
# RUN_SECONDS is each run's length (default 6 over HTTP, 4 in process). RUNS (default 3) runs of
# each, alternating A, B, A, B, ...; other environment variables reach both builds alike
# (CONDUCTOR_RUNTIME_THREADS=2 sets the workers of the server and of the bench binaries).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:?http or inproc}
a=${2:?build A}
b=${3:?build B}
runs=${4:-3}

# One run of a build: prints "holds/s p99_ms cpu_us_per_hold".
run() {
  case $mode in
    http)
      "$here/http/run.sh" "$1" "${RUN_SECONDS:-6}" 2>/dev/null | awk '/^holds:/ {
        rate = $2; sub("/s", "", rate)
        p99 = $6; ms = p99 + 0; if (p99 ~ /us$/) ms /= 1000; else if (p99 ~ /[^m]s$/) ms *= 1000
        print rate, ms, $9 }'
      ;;
    inproc)
      SCENARIO=${SCENARIO:-hot} "$1/actor-holds" "${RUN_SECONDS:-4}" "${REQUESTERS:-256}" 2>/dev/null |
        awk -F'|' 'NF > 10 && $3 + 0 > 0 { print $3 + 0, ($6 + 0) / 1000, $11 + 0 }'
      ;;
    *) echo "mode: http or inproc" >&2; exit 2 ;;
  esac
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

out_a=$(mktemp)
out_b=$(mktemp)
trap 'rm -f "$out_a" "$out_b"' EXIT
for i in $(seq "$runs"); do
  line=$(run "$a"); echo "A run $i: $line"; echo "$line" >>"$out_a"
  line=$(run "$b"); echo "B run $i: $line"; echo "$line" >>"$out_b"
done
for col in 1 2 3; do
  ma=$(awk -v c="$col" '{ print $c }' "$out_a" | median)
  mb=$(awk -v c="$col" '{ print $c }' "$out_b" | median)
  name=$(echo "holds/s p99_ms cpu_us_per_hold" | awk -v c="$col" '{ print $c }')
  echo "median $name: A $ma, B $mb, B/A $(awk -v x="$ma" -v y="$mb" 'BEGIN { printf "%.3f", y / x }')"
done
