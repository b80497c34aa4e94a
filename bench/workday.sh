#!/usr/bin/env bash
# The workday benchmark of Graph's budget (BENCHMARKS.md, "Graph's budget: a workday", explains
# the figures). U users of one tenant and one dashboard app use the gateway through a compressed
# day (examples/workday.rs): every simulated minute each user asks one of the four periods at
# random, and each user signs in at a random moment of the first hour and gets a new token every
# hour. Graph's limits and the gateway's durations are scaled alike, 1 simulated minute = 1 s:
# the simulator (crates/graph-simulator/examples/simulator.rs) throttles at 14 per app and 40 per
# tenant per 10 s, and the gateway keeps the same budgets with --fresh-ttl 15s (15 min) and
# --stale-ttl 24m (24 h). With --replicas, each U also runs with N gateways sharing one cache on
# one redis-server, the users' requests spread over them. Each run gets a new simulator, Redis
# and gateways. Per run it reports the
# requests and their answers, Graph's report calls and 429s, the answers to tokens Graph had
# validated that were not 200, the floor of report calls and what new tokens met.
# With --app the gateways run in app-only mode (--graph-auth app) against the simulator's Entra
# ID, with the app the simulator registers for its demo (POST /_simulator/demo-app), and each
# user's tokens are caller tokens of one served tenant minted by it for that user; the run also
# reports Entra ID's token requests and JWKS fetches.
#
# Exit status: 0 when Graph answered no 429 and every request of a token Graph had validated was
# answered 200, in every run, and with --app when every request was answered 200 and Graph's
# report calls were at most the ceiling (4 periods x the fresh windows of the day, whatever the
# number of users) in every run, and with --app --quick the same for every user count; 1
# otherwise.
#
# Usage: bench/workday.sh [--quick] [--app] [--out FILE] [--users "U ..."] [--minutes M]
#                         [--seed S] [--replicas "N ..."]
#   --quick    20 users through 36 simulated minutes, on 1 gateway and on 3 replicas (CI: about
#              40 s each once built); with --app, 50 and 150 users through 24 simulated
#              minutes on 1 gateway (about 50 s), a day in which both ask every period in
#              each of its fresh windows, so both cost the ceiling
#   --app      app-only mode (above); the table goes to bench/workday-app-results.md unless --out
#   --out      where the table goes (default: bench/workday-results.md, ignored by git)
#   --users    the runs' user counts (default "5 20 50 150")
#   --minutes  the day's length in simulated minutes (default 240)
#   --replicas the runs' gateway counts (default "1"; --quick: "1 3"): 1 is one gateway alone,
#              N > 1 are N gateways on one Redis
# Honours CARGO_TARGET_DIR. Everything listens on 127.0.0.1; every loop is bounded.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

usage="usage: bench/workday.sh [--quick] [--app] [--out FILE] [--users \"U ...\"] [--minutes M] [--seed S] [--replicas \"N ...\"]"
quick=0
app=0
out=""
users=""
minutes=""
seed=1
replica_counts=""
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --app) app=1 ;;
    --out) out="$2"; shift ;;
    --users) users="$2"; shift ;;
    --minutes) minutes="$2"; shift ;;
    --seed) seed="$2"; shift ;;
    --replicas) replica_counts="$2"; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
if ((app)); then
  out="${out:-$repo/bench/workday-app-results.md}"
else
  out="${out:-$repo/bench/workday-results.md}"
fi
if ((quick && app)); then
  MODE="quick, app-only"
  users="${users:-50 150}"
  minutes="${minutes:-24}"
  replica_counts="${replica_counts:-1}"
elif ((quick)); then
  MODE=quick
  users="${users:-20}"
  minutes="${minutes:-36}"
  replica_counts="${replica_counts:-1 3}"
else
  MODE=full
  users="${users:-5 20 50 150}"
  minutes="${minutes:-240}"
  replica_counts="${replica_counts:-1}"
  ((app)) && MODE="full, app-only"
fi

# ---- settings (printed with the results) --------------------------------------------------
MINUTE_MS=1000 # one simulated minute of real time: Graph's 10 minutes are 10 s
WINDOW_MS=$((10 * MINUTE_MS))
PER_APP=14
PER_TENANT=40
FRESH_TTL=15s        # 15 simulated minutes, the gateway's default
FRESH_MS=15000
STALE_TTL=24m        # 24 simulated hours, the default
MAX_RETRY_WAIT=200ms # 10 s scaled, about
# App-only mode's most report calls in a day, whatever the users: each of the 4 periods once per
# fresh window of the day.
ceiling=$((4 * ((minutes * MINUTE_MS + FRESH_MS - 1) / FRESH_MS)))
GATEWAY_FLAGS=(--graph-budget "$PER_APP/10s" --graph-tenant-budget "$PER_TENANT/10s"
  --fresh-ttl "$FRESH_TTL" --stale-ttl "$STALE_TTL" --max-retry-wait "$MAX_RETRY_WAIT")

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
started_at=$SECONDS

step "tools"
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  echo "installing from Debian: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- build --------------------------------------------------------------------------------
step "cargo build --release (gateway, simulator, workday client)"
build_started=$SECONDS
cargo build --release --locked --bin skype-gateway --example simulator --example workday
build_seconds=$((SECONDS - build_started))
release="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$release" = /* ]] || release="$repo/$release"
release="$release/release"

# ---- processes ----------------------------------------------------------------------------
FAIL_PREFIX=workday
# shellcheck source=ci/lib.sh
source ci/lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
json_number() { # json_number KEY FILE: a top-level number of a one-line JSON object
  grep -o "\"$1\":[0-9]*" "$2" | head -n1 | cut -d: -f2
}

for n in $replica_counts; do
  if ((n > 1)); then
    need_redis
    break
  fi
done

rows=()
new_rows=()
failures=()
calls_of=()
for u in $users; do
  for n in $replica_counts; do
    run="$u-$n"
    shape=$( ((n > 1)) && echo "$n replicas on one Redis" || echo "1 gateway")
    step "workday: $u users, $minutes simulated minutes, $shape"
    "$release/examples/simulator" --workers 1 --per-app "$PER_APP" --per-tenant "$PER_TENANT" \
      --window-ms "$WINDOW_MS" >"$work/simulator-$run.log" 2>&1 &
    pid_of[simulator]=$!
    pids+=($!)
    wait_for 30 "the simulator to print its origin" grep -q '^simulator origin' "$work/simulator-$run.log"
    sim="$(awk '/^simulator origin/{print $3; exit}' "$work/simulator-$run.log")"

    auth=()
    client_auth=()
    if ((app)); then
      curl -sf -X POST "$sim/_simulator/demo-app" >"$work/demo-app-$run.json" || fail "no demo app from the simulator"
      tenant="$(jq -r '.tenants[0]' "$work/demo-app-$run.json")"
      auth=(--graph-auth app --authority-url "$sim" --client-id "$(jq -r .clientId "$work/demo-app-$run.json")"
        --client-secret "$(jq -r .clientSecret "$work/demo-app-$run.json")"
        --caller-audience "$(jq -r .audience "$work/demo-app-$run.json")" --tenants "$tenant")
      client_auth=(--caller-tokens "$sim" --tenant "$tenant")
    fi
    shared=()
    if ((n > 1)); then
      start_redis
      shared=("${redis_flags[@]}")
    fi
    gateways=()
    for ((i = 0; i < n; i++)); do
      log="$work/gateway-$run-$i.log"
      RUST_LOG='info,skype_gateway::access=warn' "$release/skype-gateway" --listen 127.0.0.1:0 \
        --graph-base-url "$sim/v1.0" --download-allowlist "$sim" --shutdown-drain 0s \
        --shutdown-timeout 5s "${GATEWAY_FLAGS[@]}" "${auth[@]}" "${shared[@]}" >"$log" 2>&1 &
      pid_of[gateway$i]=$!
      pids+=($!)
      wait_for 30 "gateway $i to log its port" grep -q '(port [0-9]*)' "$log"
      gateways+=("http://127.0.0.1:$(grep -o '(port [0-9]*)' "$log" | head -n1 | tr -dc 0-9)")
    done

    result="$work/client-$run.txt"
    timeout $((minutes * MINUTE_MS / 1000 + 120)) "$release/examples/workday" \
      --gateway "$(IFS=,; echo "${gateways[*]}")" \
      --users "$u" --minute-ms "$MINUTE_MS" --minutes "$minutes" --fresh-ms "$FRESH_MS" \
      --seed "$seed" "${client_auth[@]}" --log "$work/requests-$run.tsv" >"$result" || fail "the workday client failed ($u users, $shape)"
    cat "$result"
    curl -sf "$sim/_simulator/stats" >"$work/stats-$run.json" || fail "no simulator stats"
    gw_429=0 deferred_budget=0 deferred_paused=0 redis_errors=0
    for ((i = 0; i < n; i++)); do
      m="$work/metrics-$run-$i.txt"
      curl -sf "${gateways[$i]}/metrics" >"$m" || fail "no metrics from gateway $i"
      gw_429=$((gw_429 + $(metric_sum "$m" skype_gateway_upstream_requests_total 'status="429"')))
      deferred_budget=$((deferred_budget + $(metric_sum "$m" skype_gateway_upstream_deferred_total 'reason="budget"')))
      deferred_paused=$((deferred_paused + $(metric_sum "$m" skype_gateway_upstream_deferred_total 'reason="paused"')))
      redis_errors=$((redis_errors + $(metric_sum "$m" skype_gateway_redis_errors_total '')))
    done
    for ((i = 0; i < n; i++)); do stop "gateway$i"; done
    stop redis
    stop simulator
    if [[ -n "${WORKDAY_KEEP:-}" ]]; then cp "$work/requests-$run.tsv" "$work"/gateway-"$run"-*.log "$WORKDAY_KEEP/"; fi

    calls=$(json_number reportCalls "$work/stats-$run.json")
    throttled=$(json_number throttledCalls "$work/stats-$run.json")
    bad=$(field validated_not_200 "$result")
    floor=$(field floor "$result")
    ratio=$( ((floor > 0)) && calc "$calls/$floor" || echo -)
    echo "simulator: $calls report calls, $throttled throttled; gateways: $gw_429 Graph 429s, deferred $deferred_budget budget + $deferred_paused paused, $redis_errors Redis errors; requests per gateway $(field per_gateway "$result")"
    ((throttled == 0)) || failures+=("$u users, $shape: Graph answered $throttled report calls 429")
    ((bad == 0)) || failures+=("$u users, $shape: $bad requests of validated tokens were not 200 ($(field validated_not_200_examples "$result"))")
    entra="$(json_number tokenRequests "$work/stats-$run.json") + $(json_number jwksFetches "$work/stats-$run.json")"
    if ((app)); then
      not_200=$(field not_200 "$result")
      ((not_200 == 0)) || failures+=("$u users, $shape: $not_200 requests were not answered 200")
      ((calls <= ceiling)) || failures+=("$u users, $shape: $calls report calls, over the ceiling of $ceiling")
      calls_of+=("$calls")
      echo "Entra ID: token requests + JWKS fetches $entra"
    fi

    if ((app)); then
      rows+=("$(printf '| %s | %s | %s | %s | **%s** | **%s** | **%s** | %s | **%s** | %s |' \
        "$n" "$u" "$(field requests "$result")" "$(field answers "$result" | sed 's/,/, /g; s/_/ /g')" \
        "$calls" "$throttled" "$(field not_200 "$result")" "$floor" "$ratio" "$entra")")
    else
      rows+=("$(printf '| %s | %s | %s | %s | **%s** | **%s** | **%s** | %s + %s = %s | **%s** | %s |' \
        "$n" "$u" "$(field requests "$result")" "$(field answers "$result" | sed 's/,/, /g; s/_/ /g')" \
        "$calls" "$throttled" "$bad" "$(field floor_tokens "$result")" \
        "$(field floor_revalidations "$result")" "$floor" "$ratio" "$deferred_budget")")
    fi
    new_rows+=("$(printf '| %s | %s | %s | %s | %s | %s s | %s ms (max %s) | %s | %s |' \
      "$n" "$u" "$(field new_tokens "$result")" "$(field new_token_first_answers "$result" | sed 's/,/, /g; s/_/ /g')" \
      "$(field new_token_429 "$result")" "$(field new_token_429_median_retry_after_s "$result")" \
      "$(field new_token_429_median_wait_to_200_ms "$result")" \
      "$(field new_token_429_max_wait_to_200_ms "$result")" "$(field new_token_never_200 "$result")" \
      "$(field skipped_minutes "$result")")")
  done
done

if ((app && quick)) && (($(printf '%s\n' "${calls_of[@]}" | sort -u | wc -l) > 1)); then
  failures+=("app-only mode: Graph's report calls differ with the number of users (${calls_of[*]})")
fi

# ---- results ------------------------------------------------------------------------------
step "results"
{
  echo "### skype-gateway workday, $MODE mode, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)."
  if ((app)); then
    echo "App-only mode: --graph-auth app against the simulator's Entra ID (client secret, one tenant); each user's tokens minted by it (RS256), the user's own oid."
  fi
  echo "One tenant, one app; $minutes simulated minutes of ${MINUTE_MS} ms; seed $seed. Simulator: --per-app $PER_APP --per-tenant $PER_TENANT --window-ms $WINDOW_MS."
  echo "Gateway: ${GATEWAY_FLAGS[*]} (reserve 4, the default). Gateways N > 1: N replicas sharing one cache on one redis-server (--save \"\" --appendonly no), each user's requests round-robin over them."
  echo
  if ((app)); then
    echo "| gateways | users | requests | answers | Graph report calls | Graph 429s | requests not 200 | floor (periods' calls) | calls / floor | Entra ID token requests + JWKS fetches |"
  else
    echo "| gateways | users | requests | answers | Graph report calls | Graph 429s | validated tokens not 200 | floor (tokens + revalidations) | calls / floor | calls deferred (budget) |"
  fi
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "What a token's first request met:"
  echo
  echo "| gateways | users | new tokens | first answer | 429 | median Retry-After | median wait to a 200 | never 200 | minutes not asked (waiting) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${new_rows[@]}"
  if ((app)); then
    echo
    echo "Graph's report calls per user count: ${calls_of[*]}; the ceiling (4 periods x $((ceiling / 4)) fresh windows of the day): $ceiling."
  fi
  echo
  echo "Release build ${build_seconds}s; whole run $((SECONDS - started_at))s."
} >"$work/results.md"
publish_results workday
if ((app)); then
  echo "workday: no Graph 429, every request answered 200, Graph's calls within the ceiling$( ((quick)) && echo ", the same for every user count")"
else
  echo "workday: no Graph 429, every validated token answered 200"
fi
