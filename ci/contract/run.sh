#!/usr/bin/env bash
# Contract check: schemathesis, every check on, against a running `--demo` gateway and
# the OpenAPI document it serves at /openapi.json. It must report no failure: no 5xx, every
# status, content type, body and header as documented, invalid input refused, the bearer token
# enforced, an undocumented method answered 405 with `Allow`. openapi-spec-validator first gives
# a second opinion on the document's validity (tests/api/contract.rs gives the first).
#
# Usage: bash ci/contract/run.sh   (from anywhere; needs python3 >= 3.11, curl and PyPI)
#   GATEWAY_BIN           the binary (default target/debug/skype-gateway, under CARGO_TARGET_DIR
#                         when that is set; built with cargo when missing)
#   CONTRACT_MAX_TIME     seconds of generated traffic (default 60)
#   CONTRACT_CHECK_VENV   the virtualenv's place; PYTHON the interpreter
# Every wait is bounded; the only network use is `pip install` of requirements.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

max_examples=100
max_time="${CONTRACT_MAX_TIME:-60}"

# shellcheck source=ci/venv.sh
source ci/venv.sh
pinned_venv contract "$here/requirements.txt"
python="${PYTHON:-python3}"

# In CI, `cargo test` has just built it; locally, a stale binary tests stale code.
bin="${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/skype-gateway}"
[[ -x "$bin" ]] || cargo build --locked --bin skype-gateway

work="$(mktemp -d)"
gateway_pid=""
cleanup() {
  if [[ -n "$gateway_pid" ]]; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "contract check FAILED: $*" >&2
  echo "--- gateway log (last lines)" >&2
  tail -n 30 "$work/gateway.log" >&2 || true
  exit 1
}

# --shutdown-drain 0s: nothing probes readiness here, so stopping need not wait.
"$bin" --demo --listen 127.0.0.1:0 --workers 2 --shutdown-drain 0s >"$work/gateway.log" 2>&1 &
gateway_pid=$!
deadline=$((SECONDS + 30))
until grep -qs '(port [0-9]*)' "$work/gateway.log"; do
  kill -0 "$gateway_pid" 2>/dev/null || fail "the gateway exited before it listened"
  ((SECONDS < deadline)) || fail "gave up after 30s waiting for the gateway to log its port"
  sleep 0.2
done
port="$(grep -o '(port [0-9]*)' "$work/gateway.log" | head -n1 | tr -dc 0-9)"
sim="$(grep -o 'Graph simulator at http://127.0.0.1:[0-9]*' "$work/gateway.log" | head -n1 | awk '{print $NF}')"
gateway="http://127.0.0.1:$port"
[[ -n "$sim" ]] || fail "the demo log does not name the simulator"
echo "gateway $gateway ($bin), simulator $sim"

# schemathesis' ignored_auth check resends a successful request with this credential (its
# INVALID_AUTH_HEADERS for a bearer scheme) and expects 401/403. Real Graph refuses it; the demo
# simulator accepts any token unless told otherwise.
curl -sf -X POST "$sim/_simulator/rejected-tokens" -d '{"token":"SCHEMATHESIS-INVALID-VALUE"}' \
  || fail "cannot tell the simulator to reject schemathesis' invalid token"
# A JWT-shaped token, valid for an hour: any token works in demo, a JWT exercises the tid path.
token="$("$python" -c '
import base64, json, time
b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
print(b64({"alg": "none", "typ": "JWT"}) + "." + b64({"tid": "contract-ci", "exp": int(time.time()) + 3600}) + ".sig")')"

curl -sf "$gateway/openapi.json" -o "$work/openapi.json" || fail "GET /openapi.json"
echo "== openapi-spec-validator $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("openapi-spec-validator"))')"
"$venv/bin/openapi-spec-validator" "$work/openapi.json" || fail "the document is not valid OpenAPI"

echo "== $("$venv/bin/st" --version) against $gateway/openapi.json"
# Run from the scratch folder: nothing (reports, example database) lands in the repository.
# No stateful phase: the document declares no links, and the one schemathesis infers, from the
# routes `/reports` lists as templates (`/skype/activity-counts/{period}`), sends the template's
# own text as the period, a request no schema allows.
# --max-time bounds the fuzzing, which repeats until the budget is spent; timeout bounds the rest.
status=0
(
  cd "$work"
  timeout --kill-after=10 $((max_time + 90)) "$venv/bin/st" run "$gateway/openapi.json" \
    --checks all \
    --mode all \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --max-time "$max_time" \
    --max-response-time 5 \
    --request-timeout 10 \
    --workers 2 \
    --generation-database none \
    --no-color \
    --header "Authorization: Bearer $token"
) || status=$?
if [[ $status -ne 0 ]]; then
  fail "schemathesis exit status $status (failures above; 124 means it ran out of time)"
fi
echo "contract check: openapi-spec-validator OK, schemathesis found no failures"
