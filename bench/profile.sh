#!/usr/bin/env bash
# Profile of the hit path in instructions, with valgrind's callgrind: deterministic, so two builds
# can be compared on a busy machine where req/s cannot. BENCHMARKS.md quotes its figures.
#
# Usage: bench/profile.sh [gateway|baseline] [SECONDS]   (default: gateway 8)
# Starts the simulator and the target (--workers 1, access log off) with the target under
# callgrind, makes one warm-up request, zeroes the counters, runs wrk (1 thread, 8 connections,
# the same 1600-byte token as bench/run.sh) for SECONDS, then prints the instructions per request
# and the functions that spent them. Needs valgrind (Debian: valgrind) and wrk; builds release.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${1:-gateway}"
seconds="${2:-8}"
[[ "$target" == gateway || "$target" == baseline ]] || {
  echo "usage: bench/profile.sh [gateway|baseline] [SECONDS]" >&2
  exit 2
}
for tool in valgrind wrk curl; do
  command -v "$tool" >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind wrk curl >/dev/null
    break
  }
done

cargo build --release --locked --bin skype-gateway --example simulator --example baseline \
  --example bench_client
release="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$release" = /* ]] || release="$repo/$release"
release="$release/release"

FAIL_PREFIX=profile
# shellcheck source=ci/lib.sh
source ci/lib.sh
# wait_for_line FILE PATTERN: up to 60 s (valgrind starts slowly).
wait_for_line() { wait_for 60 "'$2' in $1" grep -q "$2" "$1"; }

"$release/examples/simulator" >"$work/simulator.log" 2>&1 &
pids+=($!)
wait_for_line "$work/simulator.log" '^simulator origin'
sim="$(awk '/^simulator origin/{print $3; exit}' "$work/simulator.log")"
token="$("$release/examples/bench_client" token --tenant profile-tenant --token-bytes 1600)"
export BENCH_TOKEN="$token"
url_path=/skype/activity-counts/D7

# The baseline answers the gateway's body: take it from a gateway run outside valgrind.
RUST_LOG=info "$release/skype-gateway" --listen 127.0.0.1:0 --workers 1 \
  --graph-base-url "$sim/v1.0" --download-allowlist "$sim" --shutdown-drain 0s \
  >"$work/body-gateway.log" 2>&1 &
body_pid=$!
pids+=("$body_pid")
wait_for_line "$work/body-gateway.log" '(port [0-9]*)'
port="$(grep -o '(port [0-9]*)' "$work/body-gateway.log" | head -n1 | tr -dc 0-9)"
curl -sf -o "$work/body.json" -H "Authorization: Bearer $token" "http://127.0.0.1:$port$url_path"
kill "$body_pid"

out="$work/callgrind.out"
if [[ "$target" == gateway ]]; then
  RUST_LOG='info,skype_gateway::access=warn' valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$release/skype-gateway" --listen 127.0.0.1:0 --workers 1 --graph-base-url "$sim/v1.0" \
    --download-allowlist "$sim" --shutdown-drain 0s >"$work/target.log" 2>&1 &
  pids+=($!)
  wait_for_line "$work/target.log" '(port [0-9]*)'
  port="$(grep -o '(port [0-9]*)' "$work/target.log" | head -n1 | tr -dc 0-9)"
else
  valgrind --tool=callgrind --callgrind-out-file="$out" "$release/examples/baseline" \
    --body "$work/body.json" --workers 1 >"$work/target.log" 2>&1 &
  pids+=($!)
  wait_for_line "$work/target.log" 'listening on port'
  port="$(awk '/listening on port/{print $NF; exit}' "$work/target.log")"
fi
vg_pid="${pids[-1]}"
for _ in 1 2; do
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port$url_path"
done
callgrind_control -z "$vg_pid" >/dev/null
line="$(wrk -t1 -c8 -d"${seconds}s" -s bench/report.lua "http://127.0.0.1:$port$url_path" | grep '^WRK ')"
callgrind_control -d "$vg_pid" >/dev/null
requests="$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")"
non2xx="$(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<<"$line")"
dump="$(ls -t "$out".* | head -n1)"
total="$(awk '/^summary:/{print $2}' "$dump")"
cp "$dump" "$repo/bench/callgrind.$target.out"
echo "$target: $requests requests ($non2xx non-2xx), $total instructions in all threads"
echo "$target: $((total / requests)) instructions per request (callgrind: user space only)"
echo "(callgrind_annotate bench/callgrind.$target.out for the whole profile)"
# Self cost per function, straight from the callgrind file (callgrind_annotate folds the
# tokio/actix frames into inclusive totals here): a cost line after `calls=` belongs to the
# callee, every other cost line to the current `fn=`. Names are compressed as `(id) name`.
awk -v n="$requests" '
  function name(spec,   id) {
    id = spec; sub(/\).*/, "", id); sub(/^\(/, "", id)
    if (spec ~ /\) /) { sub(/^\([0-9]+\) /, "", spec); names[id] = spec }
    return id
  }
  /^fn=/ { cur = name(substr($0, 4)); call = 0; next }
  /^cfn=/ { name(substr($0, 5)); next }
  /^calls=/ { call = 1; next }
  /^[0-9+*-]/ { if (call) call = 0; else self[cur] += $2 }
  END { for (f in self) printf "%8d /req  %s\n", self[f] / n, substr(names[f], 1, 140) }
' "$dump" | sort -rn | head -n 40
