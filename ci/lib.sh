# Shared by the scripts that start servers on loopback (ci/metrics/check.sh, bench/run.sh,
# bench/profile.sh); sourced, not run. It gives them:
#  - `work`, a scratch directory removed on exit, and `pids`, processes killed on exit;
#  - `fail MESSAGE`: the message and the last lines of every $work/*.log, then exit 1;
#  - `wait_for SECONDS DESCRIPTION COMMAND...`: COMMAND retried every 0.1 s, then `fail`.
# Set FAIL_PREFIX (e.g. "bench") before sourcing: it starts every failure line.

work="$(mktemp -d)"
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "${FAIL_PREFIX:-check} FAILED: $*" >&2
  local log
  for log in "$work"/*.log; do
    [[ -e "$log" ]] || continue
    echo "--- $log (last lines)" >&2
    tail -n 20 "$log" >&2 || true
  done
  exit 1
}

wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "gave up after ${seconds}s waiting for $what"
    sleep 0.1
  done
}
