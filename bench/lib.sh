# Shared by the benchmark scripts that start servers (bench/run.sh, flood.sh, workday.sh,
# replicas.sh); sourced after
# ci/lib.sh, not run. It gives them:
#  - `release_dir`: where `cargo build --release` put the binaries (honours CARGO_TARGET_DIR);
#  - `pid_of`, processes by name, and `stop NAME`: SIGTERM, then wait for it;
#  - `start_simulator [FLAGS...]` (sets `sim`, its origin) and `start_gateway NAME RUST_LOG
#    [FLAGS...]` (sets `gw`, its base URL), both on 127.0.0.1 with kernel-picked ports. Neither
#    may run in a subshell: the pids are remembered for `stop` and ci/lib.sh's cleanup;
#  - `start_redis` (sets `redis_url`; needs redis-server: `need_redis` installs it) and
#    `redis_flags`, the gateway flags that share the cache on it, with a secret in $work;
#  - `field KEY FILE` (a key=value line's value), `metric_sum FILE NAME MATCH` (the sum of the
#    series of NAME in a /metrics dump whose labels contain MATCH), `calc EXPR [DECIMALS]`,
#    `mib BYTES [DECIMALS]`, and `machine`, the one-line description of the machine that heads a
#    results table.

release_dir() {
  local target="${CARGO_TARGET_DIR:-$repo/target}"
  [[ "$target" = /* ]] || target="$repo/$target"
  echo "$target/release"
}

declare -A pid_of=()

stop() { # stop NAME: SIGTERM, then wait for it (a gateway drains for its --shutdown-drain)
  local pid="${pid_of[$1]:-}"
  [[ -n "$pid" ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "pid_of[$1]"
}

# A log is emptied before its process starts: the `>` of a background command truncates it in
# the child, maybe after `wait_for` has already read a line a previous process left there.
start_simulator() {
  : >"$work/simulator.log"
  "$(release_dir)/examples/simulator" "$@" >"$work/simulator.log" 2>&1 &
  pid_of[simulator]=$!
  pids+=($!)
  wait_for 30 "the simulator to print its origin" grep -q '^simulator origin' "$work/simulator.log"
  sim="$(awk '/^simulator origin/{print $3; exit}' "$work/simulator.log")"
  echo "simulator at $sim"
}

start_gateway() {
  local name=$1 log=$2
  shift 2
  : >"$work/$name.log"
  RUST_LOG="$log" "$(release_dir)/skype-gateway" --listen 127.0.0.1:0 --graph-base-url "$sim/v1.0" \
    --download-allowlist "$sim" --shutdown-drain 0s --shutdown-timeout 5s "$@" \
    >"$work/$name.log" 2>&1 &
  pid_of[$name]=$!
  pids+=($!)
  wait_for 30 "gateway $name to log its port" grep -q '(port [0-9]*)' "$work/$name.log"
  gw="http://127.0.0.1:$(grep -o '(port [0-9]*)' "$work/$name.log" | head -n1 | tr -dc 0-9)"
}

need_redis() { # installs Debian's redis-server when it is missing
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  echo "installing from Debian: redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

# start_redis: an empty redis-server on a free loopback port, keeping nothing on disk. Redis
# cannot be asked for a kernel-picked port, so a random free one is tried, a few times over.
start_redis() {
  local port try
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue # taken
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning \
      --dir "$work" >"$work/redis.log" 2>&1 &
    pid_of[redis]=$!
    pids+=($!)
    local deadline=$((SECONDS + 10))
    until redis-cli -p "$port" ping >/dev/null 2>&1; do
      if ! kill -0 "${pid_of[redis]}" 2>/dev/null || ((SECONDS >= deadline)); then
        stop redis
        continue 2
      fi
      sleep 0.05
    done
    redis_port=$port
    redis_url="redis://127.0.0.1:$port/0"
    [[ -s "$work/shared-secret" ]] || head -c 48 /dev/urandom | base64 -w0 >"$work/shared-secret"
    redis_flags=(--redis-url "$redis_url" --shared-secret-file "$work/shared-secret")
    return 0
  done
  fail "redis-server did not start on a free port ($try tries)"
}

field() { awk -F= -v k="$1" '$1==k{print substr($0, length(k)+2); exit}' "$2"; }
metric_sum() { # metric_sum FILE NAME MATCH: the sum of NAME's series whose labels contain MATCH
  awk -v n="$2" -v m="$3" 'index($1, n "{")==1 && index($1, m) {s+=$2} END{printf "%d", s}' "$1"
}
calc() { awk "BEGIN{ printf \"%.${2:-2}f\", $1 }"; }
mib() { calc "$1/1048576" "${2:-1}"; }

machine() {
  echo "$(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
}

# publish_results NAME: copies $work/results.md to $out and prints it; exits 1, naming each of
# $failures, when there are any.
publish_results() {
  mkdir -p "$(dirname "$out")"
  cp "$work/results.md" "$out"
  cat "$out"
  echo
  echo "(written to $out)"
  if ((${#failures[@]})); then
    printf '%s FAILED: %s\n' "$1" "${failures[@]}" >&2
    exit 1
  fi
}
