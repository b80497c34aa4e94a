#!/usr/bin/env bash
# The replicas benchmark (BENCHMARKS.md, "Replicas on one Redis", explains the figures): R
# gateways sharing one cache on one redis-server in front of the Graph simulator
# (crates/graph-simulator/examples/simulator.rs, Graph's limits: 14 calls per app and 40 per
# tenant per 10 minutes), and U users of one tenant, each with its own token, of A apps
# (examples/bench_client/replicas.rs). Each R runs two phases, each with a new simulator, Redis
# and gateways:
#   (a) sequential: one user after the other asks its four periods, the requests round-robin
#       over the replicas: Graph must see the same report calls for every R, the floor (one per
#       new token, plus one per period not yet fetched);
#   (b) concurrent: every user at once, each asking its four periods in order, spread over the
#       replicas: the report calls for each R, measured ROUNDS times.
#
# Exit status: 0 when every answer was 200 and phase (a) made the floor's report calls for every
# R; 1 otherwise. Phase (b)'s counts are reported, not enforced: how many concurrent fetches
# meet in one flight depends on timing.
#
# Usage: bench/replicas.sh [--quick] [--out FILE] [--replicas "R ..."] [--users U] [--apps A]
#   --quick     R = 1 and 3, one concurrent round (CI: well under a minute once built)
#   --out       where the table goes (default: bench/replicas-results.md, ignored by git)
#   --replicas  the replica counts (default "1 3 5")
#   --users     users of the tenant (default 20); --apps: apps they are spread over (default 5)
# Honours CARGO_TARGET_DIR. Everything listens on 127.0.0.1; every loop is bounded.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

usage="usage: bench/replicas.sh [--quick] [--out FILE] [--replicas \"R ...\"] [--users U] [--apps A]"
quick=0
out="$repo/bench/replicas-results.md"
replica_counts=""
users=20
apps=5
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    --replicas) replica_counts="$2"; shift ;;
    --users) users="$2"; shift ;;
    --apps) apps="$2"; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  MODE=quick ROUNDS=1
  replica_counts="${replica_counts:-1 3}"
else
  MODE=full ROUNDS=3
  replica_counts="${replica_counts:-1 3 5}"
fi

# ---- settings (printed with the results) --------------------------------------------------
# Graph takes a while to answer: long enough that concurrent requests overlap a fetch.
REPORT_LATENCY_MS=100
DOWNLOAD_LATENCY_MS=50
SIM_FLAGS=(--workers 1 --report-latency-ms "$REPORT_LATENCY_MS" --download-latency-ms "$DOWNLOAD_LATENCY_MS")
GATEWAY_FLAGS=(--workers 1)

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
started_at=$SECONDS

# ---- processes ----------------------------------------------------------------------------
FAIL_PREFIX=replicas
# shellcheck source=ci/lib.sh
source ci/lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

step "tools"
need_redis
redis-server --version

step "cargo build --release (gateway, simulator, bench client)"
build_started=$SECONDS
cargo build --release --locked --bin skype-gateway --example simulator --example bench_client
build_seconds=$((SECONDS - build_started))
release="$(release_dir)"

rows=()
failures=()
declare -A sequential_calls=()
# run_phase R PHASE ROUND: a new simulator, Redis and R gateways; the client; one table row.
run_phase() {
  local r=$1 phase=$2 round=$3 i gateways=() name tag="$1-$2-$3"
  start_simulator "${SIM_FLAGS[@]}"
  start_redis
  for ((i = 0; i < r; i++)); do
    start_gateway "gw$i" 'info,skype_gateway::access=warn' "${GATEWAY_FLAGS[@]}" "${redis_flags[@]}"
    gateways+=("$gw")
  done
  local result="$work/client-$tag.txt"
  timeout 120 "$release/examples/bench_client" replicas --gateways "$(IFS=,; echo "${gateways[*]}")" \
    --sim "$sim" --phase "$phase" --users "$users" --apps "$apps" >"$result" ||
    fail "the replicas client failed ($r replicas, $phase)"
  cat "$result"
  local errors=0 hits=0 misses=0 lookup_errors=0
  for ((i = 0; i < r; i++)); do
    curl -sf "${gateways[$i]}/metrics" >"$work/metrics-$tag-$i.txt" || fail "no metrics from gw$i"
    errors=$((errors + $(metric_sum "$work/metrics-$tag-$i.txt" skype_gateway_redis_errors_total '')))
    hits=$((hits + $(metric_sum "$work/metrics-$tag-$i.txt" skype_gateway_shared_cache_lookups_total 'result="hit"')))
    misses=$((misses + $(metric_sum "$work/metrics-$tag-$i.txt" skype_gateway_shared_cache_lookups_total 'result="miss"')))
    lookup_errors=$((lookup_errors + $(metric_sum "$work/metrics-$tag-$i.txt" skype_gateway_shared_cache_lookups_total 'result="error"')))
  done
  for ((i = 0; i < r; i++)); do stop "gw$i"; done
  stop redis
  stop simulator

  local calls floor bad throttled
  calls=$(field report_calls "$result")
  floor=$(field floor "$result")
  bad=$(field not_200 "$result")
  throttled=$(field throttled_calls "$result")
  echo "$r replicas, $phase: $calls report calls (floor $floor), $throttled throttled, $bad answers not 200, $errors Redis errors"
  ((bad == 0)) || failures+=("$r replicas, $phase: $bad answers not 200 ($(field not_200_examples "$result"))")
  if [[ "$phase" == sequential ]]; then
    sequential_calls[$r]=$calls
    ((calls == floor)) || failures+=("$r replicas, sequential: $calls report calls, the floor is $floor")
  fi
  rows+=("$(printf '| %s | %s | %s | %s | %s | **%s** | %s | %s + %s = %s | %s | %s | %s hit, %s miss, %s error | %s ms |' \
    "$r" "$phase" "$([[ $phase == concurrent ]] && echo "$round" || echo -)" "$(field requests "$result")" \
    "$(field answers "$result" | sed 's/,/, /g; s/_/ /g')" "$calls" "$(field download_calls "$result")" \
    "$(field floor_tokens "$result")" "$(field floor_periods "$result")" "$floor" "$throttled" "$errors" \
    "$hits" "$misses" "$lookup_errors" "$(field elapsed_ms "$result")")")
}

for r in $replica_counts; do
  step "$r replicas, sequential: $users users one after the other, 4 periods each"
  run_phase "$r" sequential 1
  for ((round = 1; round <= ROUNDS; round++)); do
    step "$r replicas, concurrent (round $round of $ROUNDS): $users users at once, 4 periods each in order"
    run_phase "$r" concurrent "$round"
  done
done
distinct=$(printf '%s\n' "${sequential_calls[@]}" | sort -u | wc -l)
((distinct == 1)) || failures+=("sequential report calls differ between replica counts: $(for r in $replica_counts; do printf '%s: %s; ' "$r" "${sequential_calls[$r]}"; done)")

# ---- results ------------------------------------------------------------------------------
step "results"
{
  echo "### skype-gateway replicas, $MODE mode, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(machine). $(redis-server --version | awk '{print $1, $2, $3}')."
  echo "$users users of one tenant, one token each, over $apps apps; 4 periods each. Simulator: Graph's limits (14 per app, 40 per tenant per 10 min), ${SIM_FLAGS[*]}."
  echo "Gateways: ${GATEWAY_FLAGS[*]}, one Redis (--save \"\" --appendonly no), defaults otherwise. A new simulator, Redis and gateways for every row."
  echo
  echo "| replicas | phase | round | requests | answers | Graph report calls | downloads | floor (tokens + periods) | Graph 429s | Redis errors | shared-cache lookups | time |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Release build ${build_seconds}s; whole run $((SECONDS - started_at))s."
} >"$work/results.md"
publish_results replicas
echo "replicas: every answer 200, the sequential phase at the floor for every replica count"
