#!/usr/bin/env bash
# Operational checks against a real `--demo` gateway:
#  1. traffic that yields a MISS, a HIT, a REVALIDATED and a STALE answer, then a /metrics scrape
#     piped through `promtool check metrics`, with every documented metric name present and the
#     cache counters showing all four results;
#  2. a real Prometheus server on loopback scraping the gateway, queried through its HTTP API
#     until `up` is 1 and skype_gateway_http_requests_total has a sample;
#  3. the chart's alerting rules (charts/skype-gateway/files/alerts.yaml): `promtool check
#     rules`, `promtool test rules ci/metrics/alerts.test.yaml` (each alert fired and not), the
#     same tests against two broken copies of the rules (metrics misnamed, `for` dropped), which
#     must fail, and the rules loaded by that Prometheus;
#  4. ci/metrics/check_names.py: every metric (and enumerated label value) that the chart's
#     dashboard and rules use is exported by this gateway or by a second `--demo --graph-auth
#     app` one (app-only mode's series), and Prometheus accepts every dashboard query.
# Every wait is bounded; a failure says what it waited for.
#
# Usage: bash ci/metrics/check.sh   (GATEWAY_BIN overrides the binary; default target/debug, under
# CARGO_TARGET_DIR when that is set)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
bin="${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/skype-gateway}"
[[ -x "$bin" ]] || cargo build --locked --bin skype-gateway

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "== installing Debian's prometheus package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

FAIL_PREFIX="metrics check"
# shellcheck source=ci/lib.sh
source ci/lib.sh

alerts=charts/skype-gateway/files/alerts.yaml
echo "== promtool check rules $alerts"
promtool check rules "$alerts" || fail "promtool check rules $alerts"
echo "== promtool test rules ci/metrics/alerts.test.yaml"
promtool test rules ci/metrics/alerts.test.yaml || fail "the alerting rules' unit tests"

# The unit tests must catch a broken rule: with the metrics misnamed no alert fires, and without
# their `for` the alerts fire too early. Each broken copy must fail them.
broken=$(mktemp -d)
mkdir -p "$broken/ci/metrics" "$broken/charts/skype-gateway/files"
cp ci/metrics/alerts.test.yaml "$broken/ci/metrics/"
for mutation in 's/skype_gateway_/skype_gatewax_/g' '/^ *for: /d'; do
  sed "$mutation" "$alerts" >"$broken/charts/skype-gateway/files/alerts.yaml"
  if promtool test rules "$broken/ci/metrics/alerts.test.yaml" >/dev/null 2>&1; then
    fail "the alerting rules' unit tests pass with a broken rule file (sed '$mutation')"
  fi
  echo "   broken rules (sed '$mutation') fail the unit tests, as they must"
done
rm -rf "$broken"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin" --demo --listen 127.0.0.1:0 --fresh-ttl 1s --max-retries 0 --shutdown-drain 0s \
  >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_for 30 "the gateway to log its port" grep -q '(port [0-9]*)' "$work/gateway.log"
port="$(grep -o '(port [0-9]*)' "$work/gateway.log" | head -n1 | tr -dc 0-9)"
sim="$(grep -o 'Graph simulator at http://127.0.0.1:[0-9]*' "$work/gateway.log" | head -n1 | awk '{print $NF}')"
gateway="http://127.0.0.1:$port"
[[ -n "$sim" ]] || fail "the demo log does not name the simulator"
echo "gateway $gateway, simulator $sim"

# A JWT-shaped token: an opaque token's validation lasts only --fresh-ttl, and a STALE answer
# is for tokens whose validation is still remembered (until the JWT's exp).
token="$(python3 -c '
import base64, json, time
b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
print(b64({"alg": "none"}) + "." + b64({"tid": "ci-tenant", "exp": int(time.time()) + 3600}) + ".sig")')"
cache_status() {
  curl -s -o /dev/null -D - -H "Authorization: Bearer $token" \
    "$gateway/skype/activity-counts/D7" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status"{print $2}'
}
expect() {
  local got
  got="$(cache_status)"
  [[ "$got" == "$1" ]] || fail "expected X-Cache-Status $1, got '${got}'"
  echo "report answer: $got"
}

expect MISS
expect HIT
sleep 1.2
expect REVALIDATED
curl -sf -X POST "$sim/_simulator/faults" -d '{"fault":"status","status":503,"always":true}' \
  || fail "cannot inject a fault into the simulator"
sleep 1.2
expect STALE

curl -sf "$gateway/metrics" >"$work/metrics.txt" || fail "GET /metrics"
echo "== promtool check metrics ($(wc -l <"$work/metrics.txt") lines)"
promtool check metrics <"$work/metrics.txt" || fail "promtool found problems"
echo "promtool: no problems"

for name in skype_gateway_http_requests_total skype_gateway_http_request_duration_seconds \
  skype_gateway_cache_lookups_total skype_gateway_upstream_requests_total \
  skype_gateway_upstream_request_duration_seconds skype_gateway_upstream_retries_total \
  skype_gateway_upstream_deferred_total \
  skype_gateway_cache_entries skype_gateway_cache_bytes skype_gateway_cache_max_bytes \
  process_resident_memory_bytes; do
  grep -q "^# TYPE $name " "$work/metrics.txt" || fail "metric $name missing"
done
for result in hit miss revalidated stale; do
  value="$(awk -v s="skype_gateway_cache_lookups_total{result=\"$result\"}" '$1==s{print $2}' "$work/metrics.txt")"
  [[ "${value:-0}" != 0 ]] || fail "cache_lookups_total{result=\"$result\"} is ${value:-absent}"
  echo "cache_lookups_total{result=\"$result\"} = $value"
done

# App-only mode's series (Entra ID calls, caller token checks) from a second gateway in that
# mode: one verified caller, one refused.
"$bin" --demo --graph-auth app --listen 127.0.0.1:0 --shutdown-drain 0s >"$work/gateway-app.log" 2>&1 &
pids+=($!)
wait_for 30 "the app-mode gateway to log its port" grep -q '(port [0-9]*)' "$work/gateway-app.log"
app_port="$(grep -o '(port [0-9]*)' "$work/gateway-app.log" | head -n1 | tr -dc 0-9)"
app_sim="$(grep -o 'simulated at http://127.0.0.1:[0-9]*' "$work/gateway-app.log" | head -n1 | awk '{print $NF}')"
app_tenant="$(grep -o 'tenants [0-9a-f-]*' "$work/gateway-app.log" | head -n1 | awk '{print $2}')"
[[ -n "$app_sim" && -n "$app_tenant" ]] || fail "the app-mode demo log does not name its simulator and tenant"
caller="$(curl -sf -X POST "$app_sim/_simulator/caller-tokens" -d "{\"tenant\":\"$app_tenant\"}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')" \
  || fail "cannot mint a caller token from the app-mode simulator"
status="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $caller" \
  "http://127.0.0.1:$app_port/skype/activity-counts/D7")"
[[ "$status" == 200 ]] || fail "app mode: a verified caller got $status"
status="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${caller%.*}.AAAA" \
  "http://127.0.0.1:$app_port/skype/activity-counts/D7")"
[[ "$status" == 401 ]] || fail "app mode: a caller with a forged signature got $status"
curl -sf "http://127.0.0.1:$app_port/metrics" >"$work/metrics-app.txt" || fail "GET /metrics (app mode)"
promtool check metrics <"$work/metrics-app.txt" || fail "promtool found problems (app mode)"
echo "app mode: a verified caller 200, a forged one 401; promtool: no problems"

prom_port="$(free_port)"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
rule_files:
  - $repo/$alerts
scrape_configs:
  - job_name: skype-gateway
    static_configs:
      - targets: ["127.0.0.1:$port"]
YAML
promtool check config "$work/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
echo "== Prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}') at $prom"

query_has() { # query_has QUERY EXPECTED_VALUE_OR_EMPTY
  curl -sf --get "$prom/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
want = sys.argv[1]
result = json.load(sys.stdin)["data"]["result"]
ok = bool(result) and (not want or any(r["value"][1] == want for r in result))
sys.exit(0 if ok else 1)' "$2"
}
wait_for 60 "Prometheus to report up == 1 for the gateway" query_has 'up{job="skype-gateway"}' 1
echo "prometheus: up{job=\"skype-gateway\"} = 1"
wait_for 30 "a skype_gateway_http_requests_total sample in Prometheus" \
  query_has 'skype_gateway_http_requests_total{job="skype-gateway"}' ""
echo "prometheus: skype_gateway_http_requests_total has samples"

echo "== the dashboard's and the rules' metrics against both gateways' /metrics"
python3 ci/metrics/check_names.py "$work/metrics.txt" "$work/metrics-app.txt" --prometheus "$prom" \
  || fail "the dashboard or the rules use a metric the gateway does not export"
echo "metrics check: 4 cache results, promtool clean, Prometheus scraped the gateway," \
  "alert rules tested, dashboard and rules use only exported metrics"
