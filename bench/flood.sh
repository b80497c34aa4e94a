#!/usr/bin/env bash
# The hostile-client benchmark of skype-gateway (BENCHMARKS.md, "Hostile clients", explains the
# figures and holds a full run).
#
# Builds in release, starts the Graph simulator (crates/graph-simulator/examples/simulator.rs)
# with a report latency, then, each against a fresh gateway on loopback:
#   1. forged-token flood: RATE requests a second, each with a new random opaque token that Graph
#      refuses (401), beside a new tenant's cold request every 0.5 s and a known user's request
#      every 0.25 s; then a cold request right after the flood;
#   2. the same flood from clients that hang up right after sending: with a plain close (FIN),
#      and (2b) with a reset (RST), which is how the gateway can learn that a client has gone;
#   3. the same flood with JWT-shaped forged tokens claiming random tenants;
#   4. slow connections: SLOW_CONNECTIONS connections that send a partial request head and then
#      a byte a second, beside probes of /readyz and of a cached report.
# The forged tokens are registered with the simulator's control API as refused before the flood
# (POST /_simulator/rejected-tokens), so Graph answers them 401 as it would a forged token.
# It prints a markdown table and writes it to --out. Exit status: 0 when, in scenarios 1 and 2,
# Graph never had more calls in progress than --max-concurrent-upstream and the gateway's RSS
# stayed within --cache-max-bytes + 64 MiB; 1 otherwise. Latency targets are reported, not
# enforced: on a shared 2-core machine they are noisy.
#
# Usage: bench/flood.sh [--quick] [--out FILE]
#   --quick   5-second floods, a smaller slow-connection step (CI: about a minute after the build)
#   --out     where the table goes (default: bench/flood-results.md, ignored by git)
# Settings that may be overridden from the environment (defaults in the settings block below):
#   FLOOD_RATE, FLOOD_SECONDS, FLOOD_GATEWAY_FLAGS (extra gateway flags for scenarios 1-3),
#   SLOW_CONNECTIONS, SLOW_TRICKLE_MS, SLOW_GATEWAY_FLAGS (extra gateway flags for scenario 4,
#   e.g. "--max-connections 10000" where the gateway has it).
# Honours CARGO_TARGET_DIR. Everything listens on 127.0.0.1; every loop is bounded.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

quick=0
out="$repo/bench/flood-results.md"
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    *) echo "usage: bench/flood.sh [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done

# ---- settings (printed with the results) --------------------------------------------------
GRAPH_LATENCY_MS=500   # every report call, refused ones included
MAX_CONCURRENT=16      # the gateway's default --max-concurrent-upstream, stated so the check knows it
CACHE_BOUND=16777216   # --cache-max-bytes: 16 MiB, so that the memory target is a tight one
RSS_SLACK=67108864     # the target: RSS within the bound + 64 MiB
FRESH_TTL=1s           # the known user revalidates every second
COLD_INTERVAL_MS=500
KNOWN_INTERVAL_MS=250
SLOW_TRICKLE_MS="${SLOW_TRICKLE_MS:-1000}"
SLOW_PER_PROCESS=9000  # each client process stays under a 10,000 open-files limit
FLOOD_GATEWAY_FLAGS="${FLOOD_GATEWAY_FLAGS:-}"
SLOW_GATEWAY_FLAGS="${SLOW_GATEWAY_FLAGS:-}"
if ((quick)); then
  MODE=quick
  # Graph's calls after the flood are not waited for (DRAIN_SECONDS): the counts are partial.
  FLOOD_RATE="${FLOOD_RATE:-300}" FLOOD_SECONDS="${FLOOD_SECONDS:-4}" BASELINE=3 DRAIN_SECONDS=1
  SLOW_CONNECTIONS="${SLOW_CONNECTIONS:-2000}" PROBE_SECONDS=3
else
  MODE=full
  FLOOD_RATE="${FLOOD_RATE:-300}" FLOOD_SECONDS="${FLOOD_SECONDS:-20}" BASELINE=10 DRAIN_SECONDS=35
  SLOW_CONNECTIONS="${SLOW_CONNECTIONS:-20000}" PROBE_SECONDS=10
fi

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
started_at=$SECONDS

# The slow connections need as many descriptors in the gateway, and the probes a few more.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
open_files="$(ulimit -n)"
if [[ "$open_files" != unlimited ]] && ((open_files < SLOW_CONNECTIONS + 100)); then
  echo "warning: open files limited to $open_files (hard limit): the gateway cannot hold $SLOW_CONNECTIONS connections and its own descriptors" >&2
fi

# ---- build --------------------------------------------------------------------------------
step "cargo build --release (gateway, simulator, bench client)"
build_started=$SECONDS
cargo build --release --locked --bin skype-gateway --example simulator --example bench_client
build_seconds=$((SECONDS - build_started))
command -v curl >/dev/null || { echo "flood: curl is needed" >&2; exit 1; }

# ---- processes ----------------------------------------------------------------------------
FAIL_PREFIX=flood
# shellcheck source=ci/lib.sh
source ci/lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
client_bin="$(release_dir)/examples/bench_client"
# The access log is off: 300 lines a second would be the benchmark's own load.
QUIET_LOG='info,skype_gateway::access=warn'

step "simulator, report latency ${GRAPH_LATENCY_MS} ms"
start_simulator --workers 1 --report-latency-ms "$GRAPH_LATENCY_MS"
verdict() { # verdict CONDITION: met or missed
  if awk "BEGIN{ exit !($1) }"; then echo met; else echo missed; fi
}
rows=()
failures=()

# ---- 1-3. floods --------------------------------------------------------------------------
# flood_scenario NAME LABEL TOKENS CLIENTS
flood_scenario() {
  local name=$1 label=$2 tokens=$3 clients=$4 f
  step "$label: $FLOOD_RATE forged requests/s for ${FLOOD_SECONDS}s ($tokens tokens, clients $clients)"
  # shellcheck disable=SC2086
  start_gateway "gw-$name" "$QUIET_LOG" --fresh-ttl "$FRESH_TTL" --cache-max-bytes "$CACHE_BOUND" \
    --max-concurrent-upstream "$MAX_CONCURRENT" $FLOOD_GATEWAY_FLAGS
  f="$work/$name.txt"
  "$client_bin" flood --gateway "$gw" --sim "$sim" --gateway-pid "${pid_of[gw-$name]}" \
    --tokens "$tokens" --clients "$clients" --rate "$FLOOD_RATE" --seconds "$FLOOD_SECONDS" \
    --baseline "$BASELINE" --cold-interval-ms "$COLD_INTERVAL_MS" \
    --known-interval-ms "$KNOWN_INTERVAL_MS" --drain-seconds "$DRAIN_SECONDS" >"$f" || fail "the flood client failed ($label)"
  cat "$f"
  stop "gw-$name"

  local unloaded cold ratio sent calls downloads peak rss idle limit rec rec_ratio known_max
  unloaded=$(field unloaded_median_ms "$f")
  cold=$(field cold_median_ms "$f")
  ratio=$(calc "$cold/$unloaded")
  local cold_all cold_ok
  cold_all=$(field cold_count "$f")
  cold_ok=$(field cold_answers "$f" | tr ',' '\n' | awk -F: '$1 ~ /^200_/{s+=$2} END{print s+0}')
  sent=$(field flood_sent "$f")
  calls=$(field graph_report_calls "$f")
  downloads=$(field graph_download_calls "$f")
  peak=$(field graph_max_in_progress "$f")
  rss=$(($(field rss_peak_kib "$f") * 1024))
  idle=$(($(field rss_idle_kib "$f") * 1024))
  limit=$((CACHE_BOUND + RSS_SLACK))
  rec=$(field recovery_ms "$f")
  rec_ratio=$(calc "$rec/$unloaded")
  known_max=$(field known_max_ms "$f")
  local known_all known_ok
  known_all=$(field known_count "$f")
  known_ok=$(field known_answers "$f" | tr ',' '\n' | awk -F: '$1 ~ /^200_/{s+=$2} END{print s+0}')

  rows+=("| **$label** | | | |")
  rows+=("$(printf '| (a) new tenant cold request during the flood, median | %s ms / unloaded %s ms = **%s x**; %s of %s answered 200 (%s) | < 2 x, all 200 | %s |' \
    "$cold" "$unloaded" "$ratio" "$cold_ok" "$cold_all" "$(field cold_answers "$f")" \
    "$(verdict "$ratio < 2 && $cold_ok == $cold_all")")")
  rows+=("$(printf '| (b) known user (fresh-ttl %s), slowest answer | **%s ms** (median %s); %s of %s answered 200 (%s) | < 1000 ms, all 200 | %s |' \
    "$FRESH_TTL" "$known_max" "$(field known_median_ms "$f")" "$known_ok" "$known_all" "$(field known_answers "$f")" \
    "$(verdict "$known_max < 1000 && $known_ok == $known_all")")")
  local cap_ok
  cap_ok=$(verdict "$peak <= $MAX_CONCURRENT")
  rows+=("$(printf '| (c) Graph calls in progress at once, peak | **%s** | <= %s | %s |' "$peak" "$MAX_CONCURRENT" "$cap_ok")")
  local rss_ok
  rss_ok=$(verdict "$rss <= $limit")
  rows+=("$(printf '| (d) gateway RSS, peak during the flood | **%s MiB** (idle %s) | <= %s MiB | %s |' \
    "$(mib "$rss")" "$(mib "$idle")" "$(mib "$limit" 0)" "$rss_ok")")
  local rec_answer rec_200=0
  rec_answer=$(field recovery_answer "$f")
  [[ "$rec_answer" == 200_* ]] && rec_200=1
  rows+=("$(printf '| (e) new tenant cold request right after the flood | **%s ms** = %s x unloaded; %s | < 2 x, 200 | %s |' \
    "$rec" "$rec_ratio" "$rec_answer" "$(verdict "$rec_ratio < 2 && $rec_200")")")
  local cost_target="-" cost_verdict="-"
  if [[ "$clients" != wait ]]; then
    cost_target="< 10% of requests"
    cost_verdict=$(verdict "$calls < $sent / 10")
  fi
  rows+=("$(printf '| Graph calls made, all users | **%s report calls** + %s downloads for %s forged requests in %ss (%s%%), Graph busy %ss after the flood%s; forged answers %s, %s unanswered at the end | %s | %s |' \
    "$calls" "$downloads" "$sent" "$(field flood_seconds "$f")" "$(calc "100*$calls/$sent" 1)" \
    "$(field graph_busy_after_s "$f")" "$([[ $(field graph_still_busy "$f") == yes ]] && echo ' (and on: not waited for)' || true)" \
    "$(field flood_answers "$f")" "$(field flood_unanswered_at_end "$f")" \
    "$cost_target" "$cost_verdict")")
  if [[ "$tokens" == opaque ]]; then # scenarios 1, 2 and 2b
    [[ "$cap_ok" == met ]] || failures+=("$label: $peak Graph calls in progress, over $MAX_CONCURRENT")
    [[ "$rss_ok" == met ]] || failures+=("$label: RSS $(mib "$rss") MiB over $(mib "$limit" 0) MiB")
  fi
}

flood_scenario opaque "1. forged opaque tokens" opaque wait
flood_scenario hangup "2. forged opaque tokens, clients hang up (FIN)" opaque hang-up
flood_scenario reset "2b. forged opaque tokens, clients hang up (RST)" opaque reset
flood_scenario jwt "3. forged JWTs claiming random tenants" jwt wait

# ---- 4. slow connections ------------------------------------------------------------------
step "4. $SLOW_CONNECTIONS slow connections (a byte every ${SLOW_TRICKLE_MS} ms), probes for ${PROBE_SECONDS}s"
# shellcheck disable=SC2086
start_gateway gw-slow "$QUIET_LOG" $SLOW_GATEWAY_FLAGS
token="$("$client_bin" token --tenant flood-slow-tenant)"
for expected in MISS HIT; do
  status="$(curl -s -o /dev/null -D - -H "Authorization: Bearer $token" "$gw/skype/activity-counts/D7" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status"{print $2}')"
  [[ "$status" == "$expected" ]] || fail "warming the slow-connection gateway: expected $expected, got '$status'"
done
processes=$(((SLOW_CONNECTIONS + SLOW_PER_PROCESS - 1) / SLOW_PER_PROCESS))
# Long enough for the ramp (10,000 a second per process), the probes and a margin; the clients
# then close everything.
slow_seconds=$((PROBE_SECONDS + 4 + SLOW_CONNECTIONS / processes / 10000))
slow_files=()
slow_pids=()
for ((i = 0; i < processes; i++)); do
  n=$((SLOW_CONNECTIONS / processes + (i < SLOW_CONNECTIONS % processes ? 1 : 0)))
  slow_files+=("$work/slow-$i.txt")
  "$client_bin" slow --gateway "$gw" --connections "$n" --seconds "$slow_seconds" \
    --trickle-ms "$SLOW_TRICKLE_MS" >"$work/slow-$i.txt" 2>"$work/slow-$i.log" &
  pids+=($!)
  slow_pids+=($!)
done
for file in "${slow_files[@]}"; do
  wait_for 30 "the slow clients to open their connections" grep -q '^ramped' "$file"
done
held=$(cat "${slow_files[@]}" | awk '/^ramped/{sub("open=", "", $2); s+=$2} END{print s+0}')
echo "slow connections open after the ramp: $held"
# The gateway's open descriptors, twice a second while the probes run (bounded by their time).
fd_count() { find "/proc/${pid_of[gw-slow]}/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
(for ((s = 0; s < 2 * PROBE_SECONDS; s++)); do fd_count; sleep 0.5; done >"$work/fds.txt") &
fd_sampler=$!
"$client_bin" probe --gateway "$gw" --token "$token" --seconds "$PROBE_SECONDS" >"$work/probe.txt" ||
  fail "the probe client failed"
slow_rss=$(awk '$1=="VmRSS:"{print $2}' "/proc/${pid_of[gw-slow]}/status")
wait "$fd_sampler" || true
gw_fds=$(sort -n "$work/fds.txt" | tail -n1)
accept_errors=$(grep -ci 'too many open files' "$work/gw-slow.log" || true)
for pid in "${slow_pids[@]}"; do wait "$pid" || fail "a slow client failed"; done
cat "$work/probe.txt" "${slow_files[@]}"
stop gw-slow
sumf() { local k=$1; shift; for f in "$@"; do field "$k" "$f"; done | awk '{s+=$1} END{print s+0}'; }
probe_row() { # probe_row NAME LABEL
  local good all
  good=$(field "$1_good" "$work/probe.txt")
  all=$(field "$1_count" "$work/probe.txt")
  printf '| %s, slowest | **%s ms** (median %s); %s of %s were 200 within 1 s (%s) | all < 1000 ms | %s |' \
    "$2" "$(field "$1_max_ms" "$work/probe.txt")" "$(field "$1_median_ms" "$work/probe.txt")" "$good" "$all" \
    "$(field "$1_answers" "$work/probe.txt")" "$(verdict "$good == $all")"
}
rows+=("| **4. $SLOW_CONNECTIONS slow connections** | | | |")
rows+=("$(probe_row readyz "/readyz on a new connection")")
rows+=("$(probe_row report "cached report (HIT) on a new connection")")
rows+=("$(printf '| slow connections held | %s open after the ramp, %s just before the end (the sums of each client process'"'"'s peak: %s); gateway: at most %s descriptors open, %s "too many open files" lines; %s connects, %s closed by the gateway, %s connect errors | - | - |' \
  "$held" "$(sumf open_at_end "${slow_files[@]}")" "$(sumf peak_open "${slow_files[@]}")" "$gw_fds" "$accept_errors" \
  "$(sumf connects "${slow_files[@]}")" "$(sumf closed_by_server "${slow_files[@]}")" "$(sumf connect_errors "${slow_files[@]}")")")
rows+=("$(printf '| gateway RSS with the slow connections open | **%s MiB** (cache empty but for one report) | - | - |' "$(mib $((slow_rss * 1024)))")")

# ---- results ------------------------------------------------------------------------------
step "results"
{
  echo "#### skype-gateway hostile clients, $MODE mode, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(machine); open files $open_files."
  echo "Graph (simulator): ${GRAPH_LATENCY_MS} ms per report call, refused ones included. Gateway: default --workers,"
  echo "--max-concurrent-upstream $MAX_CONCURRENT, --cache-max-bytes $(mib "$CACHE_BOUND" 0) MiB, --fresh-ttl $FRESH_TTL (scenarios 1-3)${FLOOD_GATEWAY_FLAGS:+, $FLOOD_GATEWAY_FLAGS};"
  echo "flood $FLOOD_RATE requests/s for ${FLOOD_SECONDS}s, each a new token on a new connection; cold request every ${COLD_INTERVAL_MS} ms, known user every ${KNOWN_INTERVAL_MS} ms;"
  echo "scenario 4: defaults${SLOW_GATEWAY_FLAGS:+ and $SLOW_GATEWAY_FLAGS}, a byte every ${SLOW_TRICKLE_MS} ms, probes every 200 ms for ${PROBE_SECONDS}s."
  echo
  echo "| figure | measured | target | verdict |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Release build ${build_seconds}s; whole run $((SECONDS - started_at))s."
} >"$work/results.md"
publish_results flood
echo "flood: Graph's concurrency cap and the memory bound held"
