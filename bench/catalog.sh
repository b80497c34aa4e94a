#!/usr/bin/env bash
# The report catalog's benchmark (BENCHMARKS.md, "The report catalog", explains the figures):
#   1. the hit path of a catalog route against the mission's: one gateway, one token, both
#      routes warmed, wrk on each in alternating rounds; the ratio of requests/s (target >= 0.95);
#   2. a 100,000-user detail report (getTeamsUserActivityUserDetail, 33 columns) parsed into its
#      JSON answer: CSV and JSON sizes, parse time, the parser's peak memory
#      (examples/parse_detail.rs).
# Exit status: 1 when a hit-path run was not all 200 HIT, or the detail report does not parse.
#
# Usage: bench/catalog.sh [--quick] [--out FILE]
#   --quick   2-second rounds and a 10,000-user report (CI: seconds once built)
#   --out     where the table goes (default: bench/catalog-results.md, ignored by git)
# Honours CARGO_TARGET_DIR. Everything listens on 127.0.0.1; every loop is bounded.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

quick=0
out="$repo/bench/catalog-results.md"
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    *) echo "usage: bench/catalog.sh [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  MODE=quick WRK_SECONDS=2 ROUNDS=2 USERS=10000 PARSE_ROUNDS=3
else
  MODE=full WRK_SECONDS=10 ROUNDS=3 USERS=100000 PARSE_ROUNDS=5
fi
MISSION=/skype/activity-counts/D7
# A catalog report whose answer has the same bytes as the mission's: what differs is the route.
CATALOG=/skype/activity-user-counts/D7

command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl >/dev/null
}

step() { printf '\n== %s\n' "$*"; }
step "cargo build --release (gateway, simulator, bench client, parse_detail)"
cargo build --release --locked --bin skype-gateway --example simulator --example bench_client \
  --example parse_detail

FAIL_PREFIX=catalog-bench
# shellcheck source=ci/lib.sh
source ci/lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
release="$(release_dir)"
failures=()
median() { sort -g | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }

step "hit path: $MISSION against $CATALOG, one worker"
start_simulator --workers 1
start_gateway gw "info,skype_gateway::access=warn" --workers 1
token="$("$release/examples/bench_client" token --tenant bench-catalog-tenant --token-bytes 1600)"
export BENCH_TOKEN="$token"
for path in "$MISSION" "$CATALOG"; do
  for want in MISS HIT; do
    got="$(curl -s -o /dev/null -D - -H "Authorization: Bearer $token" "$gw$path" |
      awk -F': ' 'tolower($1)=="x-cache-status"{gsub(/\r/,"",$2); print $2}')"
    [[ "$got" == "$want" ]] || fail "warming $path: expected $want, got '$got'"
  done
done
run_wrk() { # run_wrk PATH SECONDS: the WRK line
  wrk -t1 -c64 -d"${2}s" -s bench/report.lua "$gw$1" | grep '^WRK'
}
declare -A rps=()
for round in $(seq "$ROUNDS"); do
  order=("$MISSION" "$CATALOG")
  ((round % 2)) || order=("$CATALOG" "$MISSION")
  for path in "${order[@]}"; do
    line="$(run_wrk "$path" "$WRK_SECONDS")"
    echo "round $round $path: $line"
    [[ "$line" == *"socket_errors=0 non2xx=0"* ]] || failures+=("a hit-path run of $path had errors")
    value="$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")"
    rps[$path]="${rps[$path]:-} $value"
  done
done
hits="$(curl -sf "$gw/metrics" | awk '$1=="skype_gateway_cache_lookups_total{result=\"hit\"}"{print $2}')"
others="$(curl -sf "$gw/metrics" | awk 'index($1,"skype_gateway_cache_lookups_total{")==1 && $1 !~ /hit/ {s+=$2} END{print s+0}')"
[[ "$others" == 2 ]] || failures+=("the gateway counted $others lookups other than the 2 warming misses")
mission_rps="$(tr ' ' '\n' <<<"${rps[$MISSION]}" | grep . | median)"
catalog_rps="$(tr ' ' '\n' <<<"${rps[$CATALOG]}" | grep . | median)"
ratio="$(calc "$catalog_rps/$mission_rps" 3)"
verdict="$(awk -v r="$ratio" 'BEGIN{print (r>=0.95 ? "met" : "missed")}')"
stop gw
stop simulator

step "a $USERS-user detail report parsed into its answer"
"$release/examples/parse_detail" "$USERS" "$PARSE_ROUNDS" | tee "$work/parse.txt" ||
  failures+=("the detail report did not parse")
csv_bytes="$(grep -o 'csv_bytes=[0-9]*' "$work/parse.txt" | cut -d= -f2)"
json_bytes="$(grep -o 'json_bytes=[0-9]*' "$work/parse.txt" | cut -d= -f2)"
parse_ms="$(grep -o 'parse_ms_median=[0-9.]*' "$work/parse.txt" | cut -d= -f2)"
parse_max="$(grep -o 'parse_ms_max=[0-9.]*' "$work/parse.txt" | cut -d= -f2)"
peak_kib="$(grep -o 'parser_peak=[0-9]*' "$work/parse.txt" | cut -d= -f2)"

commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates Cargo.lock || echo '+changes')"
{
  echo "Run ($MODE) on $commit, $(date -u +%Y-%m-%d). Machine: $(machine)."
  echo
  echo "| figure | value | target | verdict |"
  echo "|---|---|---|---|"
  echo "| hit path, $CATALOG against $MISSION (median req/s of $ROUNDS rounds of ${WRK_SECONDS}s) | **${ratio}x** ($catalog_rps against $mission_rps req/s; $hits hits) | >= 0.95x | $verdict |"
  echo "| $USERS-user detail report: CSV, JSON | $(mib "$csv_bytes") MiB, $(mib "$json_bytes") MiB | - | - |"
  echo "| parse into the answer (median, slowest of $PARSE_ROUNDS) | **${parse_ms} ms** (${parse_max} ms) | - | - |"
  echo "| the parser's peak memory (VmHWM after parsing less before) | **$(calc "$peak_kib/1024" 1) MiB** | about the JSON answer | - |"
} >"$work/results.md"
publish_results "catalog benchmark"
