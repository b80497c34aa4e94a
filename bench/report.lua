-- wrk script of bench/run.sh: every request carries the bearer token of $BENCH_TOKEN, and the
-- run ends with one machine-readable line (latencies in microseconds, as wrk measures them).
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
-- $BENCH_ACCEPT_ENCODING, when set, is sent as Accept-Encoding (the hit path in a coding).
local accept = os.getenv("BENCH_ACCEPT_ENCODING")
if accept and accept ~= "" then
  wrk.headers["Accept-Encoding"] = accept
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d socket_errors=%d non2xx=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
