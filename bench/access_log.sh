#!/usr/bin/env bash
# What the access log costs the hit path: two gateways (--workers 1), one with the access log on
# (RUST_LOG=info, its lines to a file as bench/run.sh writes them) and one with it off
# (RUST_LOG=info,skype_gateway::access=warn), driven in turn by wrk with a realistic token, the
# order alternating each round so that neither always runs first. Prints each round and the
# medians: req/s and server CPU per request, on against off (BENCHMARKS.md's target: >= 0.95).
# Checks that every request was a 200 HIT and that the logged gateway wrote one line per answer.
#
# Usage: bench/access_log.sh [ROUNDS] [SECONDS]   (default 5 rounds of 10 s)
# Needs the release build of bench/run.sh (it does not build) and wrk. Honours CARGO_TARGET_DIR.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
ROUNDS="${1:-5}"
SECONDS_PER_RUN="${2:-10}"
FAIL_PREFIX=access-log-bench
# shellcheck source=ci/lib.sh
source ci/lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
release="$(release_dir)"
command -v wrk >/dev/null || fail "wrk is missing (bench/run.sh installs it)"

start_simulator --workers 1
start_gateway gw-on info --workers 1
on="$gw"
start_gateway gw-off 'info,skype_gateway::access=warn' --workers 1
off="$gw"
BENCH_TOKEN="$("$release/examples/bench_client" token --tenant bench-hit-tenant --token-bytes 1600)"
export BENCH_TOKEN
for url in "$on" "$off"; do
  curl -sf -o /dev/null -H "Authorization: Bearer $BENCH_TOKEN" "$url/skype/activity-counts/D7"
  wrk -t1 -c64 -d2s -s bench/report.lua "$url/skype/activity-counts/D7" >/dev/null
done

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
lines_before=$(grep -c ' skype_gateway::access\] ' "$work/gw-on.log" || true)
: >"$work/rounds.tsv"
answered_on=0
for ((round = 1; round <= ROUNDS; round++)); do
  if ((round % 2)); then order=(gw-on gw-off); else order=(gw-off gw-on); fi
  for name in "${order[@]}"; do
    url=$on
    [[ $name == gw-off ]] && url=$off
    t0=$(cpu_ticks "${pid_of[$name]}")
    line="$(wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" -s bench/report.lua "$url/skype/activity-counts/D7" | grep '^WRK ')"
    t1=$(cpu_ticks "${pid_of[$name]}")
    requests=$(field requests <<<"$line")
    errors=$(($(field socket_errors <<<"$line") + $(field non2xx <<<"$line")))
    ((errors == 0)) || fail "$name: $errors errors or non-2xx answers"
    [[ $name == gw-on ]] && answered_on=$((answered_on + requests))
    rps=$(field rps <<<"$line")
    cpu=$(calc "($t1 - $t0) / $hz * 1000000 / $requests")
    printf '%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$cpu" >>"$work/rounds.tsv"
    printf 'round %d %-6s %8.0f req/s  cpu %5.2f us/req\n' "$round" "$name" "$rps" "$cpu"
  done
done

median() { sort -g | awk '{v[NR]=$1} END{ if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }
col() { awk -F'\t' -v n="$1" -v c="$2" '$2==n{print $c}' "$work/rounds.tsv" | median; }
rps_on=$(col gw-on 3) rps_off=$(col gw-off 3) cpu_on=$(col gw-on 4) cpu_off=$(col gw-off 4)
sleep 0.2 # one writer interval: the last lines reach the file
lines=$(($(grep -c ' skype_gateway::access\] ' "$work/gw-on.log") - lines_before))
echo "machine: $(machine); commit $(git rev-parse --short HEAD); $ROUNDS rounds of ${SECONDS_PER_RUN}s, 64 connections"
echo "access log lines written: $lines for $answered_on answers wrk counted (wrk's own in-flight ones at the end of a run are answered but not counted)"
((lines >= answered_on)) || fail "the logged gateway wrote $lines lines for $answered_on answers"
printf '| hit path req/s, access log on / off | %.0f / %.0f = **%s** |\n' "$rps_on" "$rps_off" "$(calc "$rps_on / $rps_off")"
printf '| hit path server CPU per request, on / off | %s us / %s us = %s |\n' "$cpu_on" "$cpu_off" "$(calc "$cpu_on / $cpu_off")"
