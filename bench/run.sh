#!/usr/bin/env bash
# The load benchmark of skype-gateway (BENCHMARKS.md explains the figures and holds a full run).
#
# Builds in release, installs wrk, curl, redis-server and jq from Debian when missing, starts the
# Graph simulator (crates/graph-simulator/examples/simulator.rs), the gateway, a redis-server and
# a minimal actix-web baseline (examples/baseline.rs) on loopback, and measures:
#   1. the hit path under wrk, gateway (access log on and off, and off with a shared cache on
#      Redis) against the baseline, alternating, several rounds: ratios of requests/s and of p99
#      latency, and of the gateway with Redis against without; the quiet gateway is also asked
#      with `Accept-Encoding: br` in the same rounds (against itself in identity), and the
#      bytes on the wire of D7 and D180 in identity, gzip and br are counted; and a gateway in
#      app-only mode (--graph-auth app against the simulator's Entra ID, a caller token minted
#      by it) against the pass-through gateway asked with a token of the same length;
#   2. the miss path: sequential cold requests (each a new tenant) against the same calls made
#      straight to the simulator (302 + download): the gateway's own overhead, and what Redis
#      adds to it;
#   3. coalescing: 1000 concurrent cold requests with one token: the simulator must count exactly
#      1 report call + 1 download;
#   4. memory: RSS after 10,000 tenants x 4 periods, at the default --cache-max-bytes and at a
#      small bound: RSS must stay within the bound + 64 MiB.
# It prints a markdown table and writes it to --out. Exit status: 0 when coalescing and both
# memory bounds hold and the hit-path runs were valid (all 200 HIT, no Redis command but the
# gateway's pings while the Redis-configured one answered them, and no call to Graph or Entra
# ID during the rounds); 1 otherwise. Throughput
# and latency targets are reported, not enforced: on a shared 2-core machine they are noisy.
#
# Usage: bench/run.sh [--quick] [--out FILE]
#   --quick   the same steps with short durations and a 500-tenant fill (CI: a few minutes)
#   --out     where the table goes (default: bench/results.md, ignored by git)
# BENCH_TOKEN_BYTES=N sets the tokens' size (default 1600, a real Graph token's; 0: ~130 bytes).
# Honours CARGO_TARGET_DIR. Everything listens on 127.0.0.1; every loop is bounded.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

quick=0
out="$repo/bench/results.md"
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    *) echo "usage: bench/run.sh [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done

# ---- settings (printed with the results) --------------------------------------------------
# One gateway worker and one wrk thread: on 2 cores the server gets one core and the load
# generator the other. The baseline gets the same single worker.
WORKERS=1
WRK_THREADS=1
WRK_CONNECTIONS=64
COALESCE_COUNT=1000
COALESCE_DELAY_MS=3000 # the one report call is held this long, so that all requests meet it
# Graph access tokens are 1.5-2.5 KB; what the hit path does per request on a token (check it,
# fingerprint it) grows with its length, so the benchmark's tokens have a realistic size.
TOKEN_BYTES="${BENCH_TOKEN_BYTES:-1600}"
FILL_CONCURRENCY=32
DEFAULT_BOUND=268435456 # the default --cache-max-bytes, 256 MiB
SMALL_BOUND=16777216    # 16 MiB
RSS_SLACK=67108864      # the target: RSS within the bound + 64 MiB
if ((quick)); then
  MODE=quick WRK_SECONDS=2 WARMUP_SECONDS=1 ROUNDS=2 MISS_COUNT=100 FILL_TENANTS=500
else
  MODE=full WRK_SECONDS=10 WARMUP_SECONDS=2 ROUNDS=3 MISS_COUNT=500 FILL_TENANTS=10000
fi

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
started_at=$SECONDS

# The coalescing burst holds COALESCE_COUNT client sockets and as many accepted ones open at once.
open_files="$(ulimit -n)"
if [[ "$open_files" != unlimited ]] && ((open_files < 3 * COALESCE_COUNT)); then
  ulimit -n $((3 * COALESCE_COUNT)) 2>/dev/null ||
    echo "warning: open files limited to $(ulimit -n); the coalescing burst may fail" >&2
fi

# ---- tools --------------------------------------------------------------------------------
step "tools"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  echo "installing from Debian: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
wrk --version 2>&1 | head -n1 || true

# ---- build --------------------------------------------------------------------------------
step "cargo build --release (gateway, simulator, baseline, bench client)"
build_started=$SECONDS
cargo build --release --locked --bin skype-gateway \
  --example simulator --example baseline --example bench_client
build_seconds=$((SECONDS - build_started))

# ---- processes ----------------------------------------------------------------------------
FAIL_PREFIX=bench
# shellcheck source=ci/lib.sh
source ci/lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
release="$(release_dir)"
client_bin="$release/examples/bench_client"

step "simulator"
start_simulator --workers 1

metric() { # metric URL SERIES: the value of one series in /metrics (0 when absent)
  curl -sf "$1/metrics" | awk -v s="$2" '$1==s{v=$2} END{print (v==""?0:v)}'
}
lookups() { # lookups URL: "hits others" of skype_gateway_cache_lookups_total
  local series=skype_gateway_cache_lookups_total
  curl -sf "$1/metrics" | awk -v p="$series" '
    index($1, p "{")==1 { if ($1 ~ /result="hit"/) h+=$2; else o+=$2 }
    END { printf "%d %d\n", h, o }'
}
median() { sort -g | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }
ms() { calc "$1/1000" "${2:-2}"; } # microseconds -> milliseconds
failures=()

# ---- 1. hit path --------------------------------------------------------------------------
step "hit path: gateway (access log on / off / off with Redis / app-only mode) and baseline, $WORKERS worker each"
start_redis
start_gateway gw-logged info --workers "$WORKERS"
gw_on="$gw"
start_gateway gw-quiet 'info,skype_gateway::access=warn' --workers "$WORKERS"
gw_off="$gw"
start_gateway gw-redis 'info,skype_gateway::access=warn' --workers "$WORKERS" "${redis_flags[@]}"
gw_redis="$gw"
# App-only mode: the simulator's Entra ID registers the app and mints the caller's token.
curl -sf -X POST "$sim/_simulator/demo-app" >"$work/demo-app.json" || fail "no demo app from the simulator"
app_tenant="$(jq -r '.tenants[0]' "$work/demo-app.json")"
start_gateway gw-app 'info,skype_gateway::access=warn' --workers "$WORKERS" --graph-auth app \
  --authority-url "$sim" --client-id "$(jq -r .clientId "$work/demo-app.json")" \
  --client-secret "$(jq -r .clientSecret "$work/demo-app.json")" \
  --caller-audience "$(jq -r .audience "$work/demo-app.json")" --tenants "$app_tenant"
gw_app="$gw"
app_token="$(curl -sf -d "{\"tenant\":\"$app_tenant\"}" "$sim/_simulator/caller-tokens" | jq -r .accessToken)"
[[ "$app_token" == *.*.* ]] || fail "the simulator minted no caller token"
token="$("$client_bin" token --tenant bench-hit-tenant --token-bytes "$TOKEN_BYTES")"
# What the hit path does per request on a token grows with its length: app-only mode is compared
# with the pass-through gateway asked with a token as long as the caller's.
pass_token="$("$client_bin" token --tenant bench-hit-tenant-short --token-bytes "${#app_token}")"
echo "tokens: pass-through $TOKEN_BYTES requested, ${#token} bytes; caller token ${#app_token} bytes, pass-through of its length ${#pass_token} bytes"
export BENCH_TOKEN="$token"
warm() { # warm URL TOKEN: the first request must be a MISS
  local first
  first="$(curl -s -o "$work/body.json" -D - -H "Authorization: Bearer $2" \
    "$1/skype/activity-counts/D7" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status"{print $2}')"
  [[ "$first" == MISS ]] || fail "warming $1: expected MISS, got '$first'"
}
warm "$gw_app" "$app_token"
cp "$work/body.json" "$work/app-body.json"
warm "$gw_off" "$pass_token"
for gw in "$gw_on" "$gw_off" "$gw_redis"; do warm "$gw" "$token"; done
cmp -s "$work/body.json" "$work/app-body.json" ||
  echo "note: app-only mode answers $(wc -c <"$work/app-body.json") bytes (another tenant's report), pass-through $(wc -c <"$work/body.json")"
curl -s -D "$work/gw.headers" -o /dev/null -H "Authorization: Bearer $token" "$gw_off/skype/activity-counts/D7"
grep -qi '^x-cache-status: HIT' "$work/gw.headers" || fail "the second request is not a HIT"

"$release/examples/baseline" --body "$work/body.json" --workers "$WORKERS" >"$work/baseline.log" 2>&1 &
pid_of[baseline]=$!
pids+=($!)
wait_for 30 "the baseline to print its port" grep -q 'listening on port' "$work/baseline.log"
base="http://127.0.0.1:$(awk '/listening on port/{print $NF; exit}' "$work/baseline.log")"
curl -s -D "$work/base.headers" -o "$work/base.body" "$base/skype/activity-counts/D7"
cmp -s "$work/body.json" "$work/base.body" || fail "the baseline does not answer the gateway's bytes"
header_count() { grep -c ': ' "$1"; }
gw_headers=$(header_count "$work/gw.headers")
base_headers=$(header_count "$work/base.headers")
header_bytes() { awk 'NR>1' "$1" | wc -c; }
echo "body $(wc -c <"$work/body.json") bytes; headers: gateway $gw_headers ($(header_bytes "$work/gw.headers") bytes), baseline $base_headers ($(header_bytes "$work/base.headers") bytes)"
((gw_headers == base_headers)) || fail "header count differs: gateway $gw_headers, baseline $base_headers"

wrk_run() { # wrk_run URL SECONDS [TOKEN] [ACCEPT_ENCODING]: the WRK line of report.lua
  BENCH_TOKEN="${3:-$BENCH_TOKEN}" BENCH_ACCEPT_ENCODING="${4:-}" wrk -t"$WRK_THREADS" \
    -c"$WRK_CONNECTIONS" -d"${2}s" -s bench/report.lua "$1/skype/activity-counts/D7" | grep '^WRK '
}

# Bytes on the wire: each period's body as sent in each coding (curl does not decode it).
: >"$work/wire.tsv"
for period in D7 D180; do
  for coding in identity gzip br; do
    bytes=$(curl -s -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $token" \
      -H "Accept-Encoding: $coding" "$gw_off/skype/activity-counts/$period")
    printf '%s\t%s\t%s\n' "$period" "$coding" "$bytes" >>"$work/wire.tsv"
  done
done
wire() { awk -F'\t' -v p="$1" -v c="$2" '$1==p && $2==c {print $3}' "$work/wire.tsv"; }
wire_row() { # wire_row PERIOD: one table row
  local id gz br
  id=$(wire "$1" identity)
  gz=$(wire "$1" gzip)
  br=$(wire "$1" br)
  printf '| bytes on the wire, %s body | identity %s, gzip **%s** (%s x smaller), br **%s** (%s x smaller) | - | - |\n' \
    "$1" "$id" "$gz" "$(calc "$id/$gz" 1)" "$br" "$(calc "$id/$br" 1)"
}
cat "$work/wire.tsv"
wrk_field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # user and system time of a process
ticks_per_second=$(getconf CLK_TCK)

# redis_commands: the commands Redis has run, PING and INFO (the gateway's health pings, and this
# question) left out.
redis_commands() {
  redis-cli -p "$redis_port" info commandstats |
    awk -F'[:=,]' '/^cmdstat_/ && $1!="cmdstat_ping" && $1!="cmdstat_info" {s+=$3} END{print s+0}'
}

# sim_calls: "report calls, token requests, JWKS fetches" the simulator has answered.
sim_calls() { curl -sf "$sim/_simulator/stats" | jq -r '"\(.reportCalls) \(.tokenRequests) \(.jwksFetches)"'; }

# gw-pass is the pass-through gateway gw-quiet, asked with a token as long as gw-app's; gw-br is
# gw-quiet asked with Accept-Encoding: br.
targets=(baseline gw-quiet gw-br gw-logged gw-redis gw-pass gw-app)
declare -A url_of=([baseline]="$base" [gw-quiet]="$gw_off" [gw-br]="$gw_off" [gw-logged]="$gw_on"
  [gw-redis]="$gw_redis" [gw-pass]="$gw_off" [gw-app]="$gw_app")
declare -A token_of=([gw-pass]="$pass_token" [gw-app]="$app_token")
declare -A accept_of=([gw-br]=br)
declare -A pid_for=([baseline]="${pid_of[baseline]}" [gw-quiet]="${pid_of[gw-quiet]}"
  [gw-br]="${pid_of[gw-quiet]}" [gw-logged]="${pid_of[gw-logged]}" [gw-redis]="${pid_of[gw-redis]}"
  [gw-pass]="${pid_of[gw-quiet]}" [gw-app]="${pid_of[gw-app]}")
for t in "${targets[@]}"; do
  wrk_run "${url_of[$t]}" "$WARMUP_SECONDS" "${token_of[$t]:-}" "${accept_of[$t]:-}" >/dev/null
done
read -r on_hits0 on_others0 < <(lookups "$gw_on")
read -r off_hits0 off_others0 < <(lookups "$gw_off")
read -r redis_hits0 redis_others0 < <(lookups "$gw_redis")
read -r app_hits0 app_others0 < <(lookups "$gw_app")
read -r sim_reports0 sim_tokens0 sim_jwks0 < <(sim_calls)
redis_commands0=$(redis_commands)
: >"$work/hit.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
  # Alternate the order each round so neither side always runs first after a pause.
  if ((round % 2)); then
    order=(baseline gw-quiet gw-br gw-logged gw-redis gw-pass gw-app)
  else
    order=(gw-app gw-pass gw-redis gw-logged gw-br gw-quiet baseline)
  fi
  for t in "${order[@]}"; do
    read -r user0 sys0 < <(cpu_ticks "${pid_for[$t]}")
    line="$(wrk_run "${url_of[$t]}" "$WRK_SECONDS" "${token_of[$t]:-}" "${accept_of[$t]:-}")"
    read -r user1 sys1 < <(cpu_ticks "${pid_for[$t]}")
    rps=$(wrk_field rps <<<"$line")
    p99=$(wrk_field p99_us <<<"$line")
    p50=$(wrk_field p50_us <<<"$line")
    reqs=$(wrk_field requests <<<"$line")
    errs=$(($(wrk_field socket_errors <<<"$line") + $(wrk_field non2xx <<<"$line")))
    # The server's CPU time per answer: less sensitive than req/s to whatever else runs.
    per_req() { calc "($1) / $ticks_per_second * 1000000 / $reqs"; }
    cpu_us=$(per_req "$user1 + $sys1 - $user0 - $sys0")
    user_us=$(per_req "$user1 - $user0")
    sys_us=$(per_req "$sys1 - $sys0")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$rps" "$p50" "$p99" "$reqs" "$errs" "$cpu_us" "$user_us" "$sys_us" >>"$work/hit.tsv"
    printf 'round %d %-9s %10.0f req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %5.2f us/req (user %5.2f, sys %5.2f)  errors %d\n' \
      "$round" "$t" "$rps" "$(ms "$p50" 3)" "$(ms "$p99" 3)" "$cpu_us" "$user_us" "$sys_us" "$errs"
  done
done
read -r on_hits1 on_others1 < <(lookups "$gw_on")
read -r off_hits1 off_others1 < <(lookups "$gw_off")
read -r redis_hits1 redis_others1 < <(lookups "$gw_redis")
read -r app_hits1 app_others1 < <(lookups "$gw_app")
read -r sim_reports1 sim_tokens1 sim_jwks1 < <(sim_calls)
hit_redis_commands=$(($(redis_commands) - redis_commands0))
hit_sim_calls="$((sim_reports1 - sim_reports0)) report calls, $((sim_tokens1 - sim_tokens0)) token requests, $((sim_jwks1 - sim_jwks0)) JWKS fetches"
col() { awk -F'\t' -v t="$1" -v c="$2" '$2==t{print $c}' "$work/hit.tsv"; }
sum() { awk '{s+=$1} END{print s+0}'; }
hit_valid=yes
for t in "${targets[@]}"; do
  [[ "$(col "$t" 7 | sum)" == 0 ]] || hit_valid="no: $t had socket errors or non-2xx answers"
done
for pair in "gw-logged $((on_hits1 - on_hits0)) $((on_others1 - on_others0))" \
  "gw-quiet $((off_hits1 - off_hits0)) $((off_others1 - off_others0))" \
  "gw-redis $((redis_hits1 - redis_hits0)) $((redis_others1 - redis_others0))" \
  "gw-app $((app_hits1 - app_hits0)) $((app_others1 - app_others0))"; do
  read -r t hits others <<<"$pair"
  counted=$(col "$t" 6 | sum)
  [[ "$t" == gw-quiet ]] && counted=$((counted + $(col gw-pass 6 | sum) + $(col gw-br 6 | sum)))
  echo "$t: wrk counted $counted answers, the gateway counted $hits hits and $others other lookups"
  ((others == 0 && hits >= counted)) || hit_valid="no: $t answered $others requests other than HIT"
done
echo "gw-redis: Redis ran $hit_redis_commands commands other than PING during the rounds"
((hit_redis_commands == 0)) || hit_valid="no: Redis ran $hit_redis_commands commands while gw-redis answered hits"
echo "the simulator answered $hit_sim_calls during the rounds"
[[ "$hit_sim_calls" == "0 report calls, 0 token requests, 0 JWKS fetches" ]] ||
  hit_valid="no: the simulator answered $hit_sim_calls during the hit-path rounds"
[[ "$hit_valid" == yes ]] || failures+=("hit path runs invalid ($hit_valid)")

base_rps=$(col baseline 3 | median)
base_p99=$(col baseline 5 | median)
base_cpu=$(col baseline 8 | median)
hit_row() { # hit_row NAME LABEL: two table rows for one gateway
  local rps p99 r_rps r_p99 v_rps v_p99
  rps=$(col "$1" 3 | median)
  p99=$(col "$1" 5 | median)
  r_rps=$(calc "$rps/$base_rps")
  r_p99=$(calc "$p99/$base_p99")
  v_rps=$(awk -v r="$r_rps" 'BEGIN{print (r>=0.9 ? "met" : sprintf("missed by %.0f%%", (0.9-r)/0.9*100))}')
  v_p99=$(awk -v r="$r_p99" 'BEGIN{print (r<=1.2 ? "met" : sprintf("missed by %.0f%%", (r-1.2)/1.2*100))}')
  printf '| hit path req/s, %s | %.0f / %.0f = **%s** | >= 0.9 | %s |\n' "$2" "$rps" "$base_rps" "$r_rps" "$v_rps"
  printf '| hit path p99, %s | %s ms / %s ms = **%s** | <= 1.2 | %s |\n' "$2" "$(ms "$p99")" "$(ms "$base_p99")" "$r_p99" "$v_p99"
  cpu=$(col "$1" 8 | median)
  printf '| hit path server CPU per request, %s | %s us / %s us = %s | (explains the above) | - |\n' "$2" "$cpu" "$base_cpu" "$(calc "$cpu/$base_cpu")"
}
pair_rows() { # pair_rows T REF LABEL: T's req/s over REF's (target >= 0.95), then p99 and CPU
  local rps ref r p99 ref_p99 cpu ref_cpu
  rps=$(col "$1" 3 | median)
  ref=$(col "$2" 3 | median)
  r=$(calc "$rps/$ref")
  printf '| hit path req/s, %s | %.0f / %.0f = **%s** | >= 0.95 | %s |\n' "$3" "$rps" "$ref" "$r" \
    "$(awk -v r="$r" 'BEGIN{print (r>=0.95 ? "met" : sprintf("missed by %.0f%%", (0.95-r)/0.95*100))}')"
  p99=$(col "$1" 5 | median)
  ref_p99=$(col "$2" 5 | median)
  cpu=$(col "$1" 8 | median)
  ref_cpu=$(col "$2" 8 | median)
  printf '| hit path p99 and CPU per request, %s | p99 %s ms / %s ms = %s; CPU %s us / %s us = %s | (explains the above) | - |\n' \
    "${3%% (*}" "$(ms "$p99")" "$(ms "$ref_p99")" "$(calc "$p99/$ref_p99")" "$cpu" "$ref_cpu" "$(calc "$cpu/$ref_cpu")"
}
redis_hit_rows() { # the gateway with a shared cache on Redis against the same without
  pair_rows gw-redis gw-quiet "Redis configured / not (access log off)"
  printf '| Redis commands while the Redis-configured gateway answered %s hits | **%s** (its once-a-second PING left out) | 0 | %s |\n' \
    "$(col gw-redis 6 | sum)" "$hit_redis_commands" "$( ((hit_redis_commands == 0)) && echo met || echo FAILED)"
}
app_hit_rows() { # app-only mode against pass-through, tokens of the same length
  pair_rows gw-app gw-pass "app-only mode / pass-through (access log off, tokens of ${#app_token} and ${#pass_token} bytes)"
  printf '| calls to Graph and Entra ID while the gateways answered %s hits | **%s** | 0 | %s |\n' \
    "$(awk -F'\t' '$2!="baseline"{s+=$6} END{print s+0}' "$work/hit.tsv")" "$hit_sim_calls" \
    "$([[ "$hit_sim_calls" == "0 report calls, 0 token requests, 0 JWKS fetches" ]] && echo met || echo FAILED)"
}

br_hit_row() { # the quiet gateway in br against itself in identity
  local rps id r cpu id_cpu
  rps=$(col gw-br 3 | median)
  id=$(col gw-quiet 3 | median)
  r=$(calc "$rps/$id")
  cpu=$(col gw-br 8 | median)
  id_cpu=$(col gw-quiet 8 | median)
  printf '| hit path req/s, Accept-Encoding: br / identity (access log off) | %.0f / %.0f = **%s** (CPU %s / %s us per request) | >= 0.95 | %s |\n' \
    "$rps" "$id" "$r" "$cpu" "$id_cpu" \
    "$(awk -v r="$r" 'BEGIN{print (r>=0.95 ? "met" : sprintf("missed by %.0f%%", (0.95-r)/0.95*100))}')"
}

# ---- 2. miss path -------------------------------------------------------------------------
step "miss path: $MISS_COUNT sequential cold requests vs. direct calls to the simulator"
# The Redis-configured gateway is asked in the same rounds as the quiet one: what Redis adds is
# then measured under the same load, whatever else the machine runs meanwhile.
"$client_bin" miss --gateway "$gw_off" --also "$gw_redis" --sim "$sim" --count "$MISS_COUNT" \
  --token-bytes "$TOKEN_BYTES" >"$work/miss-quiet.txt" || fail "miss path against the quiet and Redis gateways"
cat "$work/miss-quiet.txt"
"$client_bin" miss --gateway "$gw_on" --sim "$sim" --count "$MISS_COUNT" --token-bytes "$TOKEN_BYTES" >"$work/miss-logged.txt" ||
  fail "miss path against the logging gateway"
cat "$work/miss-logged.txt"
miss_row() { # miss_row FILE LABEL [SIDE]: SIDE "gateway" (the default) or "also"
  local f=$1 side=${3:-gateway} g d o
  g=$(field "${side}_median_us" "$f")
  d=$(field direct_median_us "$f")
  o=$((g - d))
  printf '| miss path overhead, median, %s | %s ms - %s ms = **%s ms** (p99 %s vs %s ms) | < 1 ms | %s |\n' \
    "$2" "$(ms "$g")" "$(ms "$d")" "$(ms "$o")" "$(ms "$(field "${side}_p99_us" "$f")")" \
    "$(ms "$(field direct_p99_us "$f")")" "$(awk -v o="$o" 'BEGIN{print (o<1000 ? "met" : sprintf("missed by %.2f ms", (o-1000)/1000))}')"
}
redis_miss_row() { # what Redis adds to a miss: the gateway's median with Redis minus without
  local f="$work/miss-quiet.txt" with without added
  with=$(field also_median_us "$f")
  without=$(field gateway_median_us "$f")
  added=$((with - without))
  printf '| miss path, what Redis adds, median, %s x D7 | %s ms - %s ms = **%s ms** (p99 %s vs %s ms) | < 1 ms | %s |\n' \
    "$MISS_COUNT" "$(ms "$with")" "$(ms "$without")" "$(ms "$added")" "$(ms "$(field also_p99_us "$f")")" \
    "$(ms "$(field gateway_p99_us "$f")")" "$(awk -v o="$added" 'BEGIN{print (o<1000 ? "met" : sprintf("missed by %.2f ms", (o-1000)/1000))}')"
}

# ---- 3. coalescing ------------------------------------------------------------------------
step "coalescing: $COALESCE_COUNT concurrent cold requests with one token"
"$client_bin" coalesce --gateway "$gw_off" --sim "$sim" --count "$COALESCE_COUNT" \
  --delay-ms "$COALESCE_DELAY_MS" --token-bytes "$TOKEN_BYTES" >"$work/coalesce.txt" || fail "the coalescing client failed"
cat "$work/coalesce.txt"
co_reports=$(field report_calls "$work/coalesce.txt")
co_downloads=$(field download_calls "$work/coalesce.txt")
co_answers=$(field answers "$work/coalesce.txt")
co_ok=yes
[[ "$co_reports" == 1 && "$co_downloads" == 1 ]] || co_ok=no
[[ "$co_answers" =~ ^(200_(MISS|HIT):[0-9]+,?)+$ ]] || co_ok=no
[[ "$co_ok" == yes ]] || failures+=("coalescing: $co_reports report + $co_downloads download calls, answers $co_answers")

for name in gw-logged gw-quiet gw-redis gw-app baseline redis; do stop "$name"; done

# ---- 4. memory ----------------------------------------------------------------------------
rss_kib() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; }
mem_rows=()
for bound in "$DEFAULT_BOUND" "$SMALL_BOUND"; do
  step "memory: $FILL_TENANTS tenants x 4 periods, --cache-max-bytes $bound (default workers)"
  name="gw-mem-$bound"
  start_gateway "$name" 'info,skype_gateway::access=warn' --cache-max-bytes "$bound"
  idle=$(rss_kib "${pid_of[$name]}" VmRSS)
  "$client_bin" fill --gateway "$gw" --tenants "$FILL_TENANTS" --concurrency "$FILL_CONCURRENCY" \
    --token-bytes "$TOKEN_BYTES" >"$work/fill-$bound.txt" || fail "the fill client failed"
  cat "$work/fill-$bound.txt"
  [[ "$(field failed "$work/fill-$bound.txt")" == 0 ]] || failures+=("fill at $bound: some requests failed")
  entries=$(metric "$gw" skype_gateway_cache_entries)
  cbytes=$(metric "$gw" skype_gateway_cache_bytes)
  rss=$(rss_kib "${pid_of[$name]}" VmRSS)
  hwm=$(rss_kib "${pid_of[$name]}" VmHWM)
  limit=$((bound + RSS_SLACK))
  echo "idle RSS $((idle / 1024)) MiB; after the fill: RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB), cache $entries entries, $cbytes bytes"
  verdict=met
  if ((rss * 1024 > limit)); then
    verdict="MISSED by $(mib $((rss * 1024 - limit))) MiB"
    failures+=("RSS $((rss / 1024)) MiB over $(mib "$bound") MiB + 64 MiB")
  fi
  mem_rows+=("$(printf '| RSS after %s tenants x 4, cache-max-bytes %s MiB | **%s MiB** (peak %s, idle %s; cache %s entries, %s MiB weighed) | <= %s MiB | %s |' \
    "$FILL_TENANTS" "$(mib "$bound" 0)" "$(mib $((rss * 1024)))" "$(mib $((hwm * 1024)))" \
    "$(mib $((idle * 1024)))" "$entries" "$(mib "$cbytes")" "$(mib "$limit" 0)" "$verdict")")
  stop "$name"
done

# ---- results ------------------------------------------------------------------------------
step "results"
{
  echo "### skype-gateway benchmark, $MODE mode, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(machine)."
  echo "Load: wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s, $ROUNDS alternating rounds after a ${WARMUP_SECONDS}s warm-up;"
  echo "gateway and baseline --workers $WORKERS; tokens of $TOKEN_BYTES bytes; simulator latency 0; medians over the rounds."
  echo "gw-redis: --redis-url to $(redis-server --version | awk '{print $1, $2, $3}') on loopback (--save \"\" --appendonly no), --shared-secret-file, defaults otherwise."
  echo "gw-app: --graph-auth app against the simulator's Entra ID (client secret, one tenant), a caller token of ${#app_token} bytes (RS256) from it; gw-pass: gw-quiet asked with a pass-through token of ${#pass_token} bytes."
  echo
  echo "| figure | measured | target | verdict |"
  echo "|---|---|---|---|"
  hit_row gw-quiet "access log off"
  hit_row gw-logged "access log on"
  hit_row gw-redis "access log off, Redis configured"
  redis_hit_rows
  app_hit_rows
  br_hit_row
  wire_row D7
  wire_row D180
  miss_row "$work/miss-quiet.txt" "access log off, $MISS_COUNT x D7"
  miss_row "$work/miss-logged.txt" "access log on, $MISS_COUNT x D7"
  miss_row "$work/miss-quiet.txt" "access log off, Redis configured, $MISS_COUNT x D7" also
  redis_miss_row
  printf '| coalescing, %s concurrent cold requests, one token | **%s report + %s download** calls; answers %s; %s ms | 1 + 1 | %s |\n' \
    "$COALESCE_COUNT" "$co_reports" "$co_downloads" "$co_answers" "$(field elapsed_ms "$work/coalesce.txt")" \
    "$([[ $co_ok == yes ]] && echo met || echo FAILED)"
  printf '%s\n' "${mem_rows[@]}"
  echo
  echo "Hit-path rounds (gw-quiet: access log off; gw-br: the same gateway asked with Accept-Encoding: br; gw-logged: access log on; gw-redis: access log off, --redis-url on a local redis-server; gw-app: access log off, --graph-auth app, a caller token of ${#app_token} bytes; gw-pass: gw-quiet asked with a token of ${#pass_token} bytes; CPU: the server's user + system time per answer):"
  echo
  echo "| round | target | req/s | p50 ms | p99 ms | CPU us/req | user | system |"
  echo "|---|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r round t rps p50 p99 _ _ cpu user sys; do
    printf '| %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$round" "$t" "$rps" "$(ms "$p50" 3)" "$(ms "$p99" 3)" "$cpu" "$user" "$sys"
  done <"$work/hit.tsv"
  echo
  echo "Hit path valid (every answer 200 HIT): $hit_valid. Release build ${build_seconds}s; whole run $((SECONDS - started_at))s."
} >"$work/results.md"
publish_results bench
echo "bench: coalescing and memory bounds hold"
