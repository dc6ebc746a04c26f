#!/usr/bin/env bash
# Field tests: real programs under real load generators, on loopback, bounded in time.
# See field/README.md. Usage: field/run.sh [options] [scenario|group ...]
set -euo pipefail
shopt -s nullglob

FIELD=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<'EOF'
usage: field/run.sh [options] [scenario|group ...]     (default: all)

scenarios:
  redis-expiring   healthy  mini-redis, SET key:__rand_int__ <100 B> PX 2000 at full speed
  redis-mixed      healthy  mini-redis, redis-benchmark -t set,get -r 100000 -d 100 in a loop
  redis-leak       leaking  mini-redis, SET of random keys (10^9 key space) with no expiry
  http-cache       healthy  axum + LRU cache, wrk: GET /item/{random} x3, POST /session x1
  http-leak-20k    leaking  the same, /session keeps bodies at 20 KB/s
  http-leak-80k    leaking  ... at 80 KB/s
  http-leak-1m     leaking  ... at 1 MB/s
  bench-redis      throughput  mini-redis, redis-benchmark -t set,get (issue 18's benchmark)
  bench-http       throughput  field-http, wrk with the http-cache traffic
groups: all, healthy, leaking, bench, redis, http

options:
  --interval D     LEAKSCOPE_INTERVAL for the field scenarios (default 250ms)
  --window D       LEAKSCOPE_LEAK_WINDOW for the field scenarios (default 6s); run times scale with it
  --build B        build the field scenarios run: none, alloc or layer (default layer)
  --env VAR=VALUE  extra environment for the servers of the field scenarios (repeatable)
  --rounds N       interleaved rounds of the bench scenarios (default 5)
  --requests N     redis-benchmark -n of bench-redis (default 200000)
  --seconds N      wrk duration of one bench-http run (default 8)
  --callgrind N    bench scenarios: instructions of the server per request under callgrind
                   (N requests counted after a warm-up, each configuration once, and the
                   allocator alone with LEAKSCOPE=1) instead of wall-clock rounds
  --no-taskset     do not pin servers to CPU 0 and load generators to CPU 1
  --repeat N       run the field scenarios N times each (default 1); a summary counts the PASSes
  --no-build       use the binaries already built in field/target/variants
  -h, --help
Results: printed, and written to field/target/results/<time>.txt (latest.txt links to it);
each run's output files under field/target/runs/<time>/<scenario>/.
EOF
}

# ---------------------------------------------------------------- options
INTERVAL=250ms
WINDOW=6s
BUILD=layer
ROUNDS=5
REQUESTS=200000
BENCH_SECONDS=8
TASKSET=1
DO_BUILD=1
REPEAT=1
CALLGRIND=0
EXTRA_ENV=()
SCENARIOS=()
while (($#)); do
    case "$1" in
        --interval) INTERVAL=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --build) BUILD=$2; shift 2 ;;
        --env) EXTRA_ENV+=("$2"); shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --seconds) BENCH_SECONDS=$2; shift 2 ;;
        --callgrind) CALLGRIND=$2; shift 2 ;;
        --no-taskset) TASKSET=0; shift ;;
        --no-build) DO_BUILD=0; shift ;;
        --repeat) REPEAT=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) SCENARIOS+=("$1"); shift ;;
    esac
done
case "$BUILD" in none | alloc | layer) ;; *) echo "run.sh: --build must be none, alloc or layer" >&2; exit 2 ;; esac

ALL_HEALTHY=(redis-expiring redis-mixed http-cache)
ALL_LEAKING=(redis-leak http-leak-20k http-leak-80k http-leak-1m)
ALL_BENCH=(bench-redis bench-http)
expanded=()
for s in "${SCENARIOS[@]:-all}"; do
    case "$s" in
        all) expanded+=("${ALL_HEALTHY[@]}" "${ALL_LEAKING[@]}" "${ALL_BENCH[@]}") ;;
        healthy) expanded+=("${ALL_HEALTHY[@]}") ;;
        leaking) expanded+=("${ALL_LEAKING[@]}") ;;
        bench) expanded+=("${ALL_BENCH[@]}") ;;
        redis) expanded+=(redis-expiring redis-mixed redis-leak bench-redis) ;;
        http) expanded+=(http-cache http-leak-20k http-leak-80k http-leak-1m bench-http) ;;
        redis-expiring | redis-mixed | redis-leak | http-cache | http-leak-20k | http-leak-80k | \
            http-leak-1m | bench-redis | bench-http) expanded+=("$s") ;;
        *) echo "run.sh: unknown scenario $s" >&2; usage >&2; exit 2 ;;
    esac
done
SCENARIOS=("${expanded[@]}")

# A duration (250ms, 6s, 1m, 1h, or plain seconds) in milliseconds.
to_ms() {
    local d=$1
    case "$d" in
        *ms) echo "${d%ms}" ;;
        *s) awk -v v="${d%s}" 'BEGIN { printf "%d", v * 1000 }' ;;
        *m) awk -v v="${d%m}" 'BEGIN { printf "%d", v * 60000 }' ;;
        *h) awk -v v="${d%h}" 'BEGIN { printf "%d", v * 3600000 }' ;;
        *) awk -v v="$d" 'BEGIN { printf "%d", v * 1000 }' ;;
    esac
}
WINDOW_MS=$(to_ms "$WINDOW")
((WINDOW_MS > 0)) || { echo "run.sh: bad --window $WINDOW" >&2; exit 2; }

for tool in redis-benchmark wrk jq awk setsid timeout; do
    command -v "$tool" >/dev/null || {
        echo "run.sh: $tool not found (apt-get install redis-tools wrk jq)" >&2
        exit 2
    }
done
if ((TASKSET)) && { ! command -v taskset >/dev/null || (($(nproc) < 2)); }; then TASKSET=0; fi

STAMP=$(date +%Y%m%d-%H%M%S)
RUNS="$FIELD/target/runs/$STAMP"
RESULTS="$FIELD/target/results/$STAMP.txt"
mkdir -p "$RUNS" "$FIELD/target/results"
ln -sfn "$STAMP.txt" "$FIELD/target/results/latest.txt"

# Everything printed goes to the results file too.
say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

# Verdicts per scenario, for the summary: "name PASS|FAIL".
VERDICTS=()
# verdict NAME PASS|FAIL REASON: prints the verdict line and records it.
verdict() {
    say "   $2: $3"
    VERDICTS+=("$1 $2")
}

# ---------------------------------------------------------------- processes
# Every server and load generator runs in a session of its own (setsid), so it and its
# children are stopped together; whatever is still running when the script ends, by
# failure or Ctrl-C, is stopped too.
LIVE=()
cleanup() {
    local pid
    for pid in "${LIVE[@]:-}"; do
        [[ -n "$pid" ]] && kill -KILL -- "-$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

forget() {
    local pid=$1 i
    for i in "${!LIVE[@]}"; do [[ "${LIVE[$i]}" == "$pid" ]] && unset 'LIVE[i]'; done
    LIVE=("${LIVE[@]:-}")
}

SERVER_CPU=() LOAD_CPU=()
if ((TASKSET)); then SERVER_CPU=(taskset -c 0) LOAD_CPU=(taskset -c 1); fi

# start_server DIR BINARY [VAR=VALUE ...]: sets SERVER_PID and SERVER_ADDR.
start_server() {
    local dir=$1 bin=$2
    shift 2
    mkdir -p "$dir/out"
    setsid env LEAKSCOPE_DIR="$dir/out" "$@" "${SERVER_CPU[@]}" "$bin" \
        >"$dir/server.stdout" 2>"$dir/server.stderr" </dev/null &
    SERVER_PID=$!
    LIVE+=("$SERVER_PID")
    local i
    for ((i = 0; i < 200; i++)); do
        SERVER_ADDR=$(sed -n 's/^listening on //p' "$dir/server.stdout" 2>/dev/null)
        [[ -n "$SERVER_ADDR" ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "run.sh: $(basename "$bin") did not start; $dir/server.stderr:" >&2
    tail -5 "$dir/server.stderr" >&2
    return 1
}

# The server's high-water RSS (VmHWM) in KiB, or nothing once it is gone.
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# stop_server: SIGTERM (graceful: the leakscope session writes its exit files), then
# SIGKILL after 30 s. Sets PEAK_LOAD_KIB (high-water RSS at the stop) and PEAK_EXIT_KIB
# (the last reading before it exited).
stop_server() {
    local pid=$SERVER_PID i h
    PEAK_LOAD_KIB=$(hwm_kib "$pid")
    PEAK_EXIT_KIB=$PEAK_LOAD_KIB
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        h=$(hwm_kib "$pid")
        [[ -z "$h" ]] && break
        PEAK_EXIT_KIB=$h
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# start_load DIR COMMAND...: a load generator in its own session; sets LOAD_PID.
start_load() {
    local dir=$1
    shift
    setsid "${LOAD_CPU[@]}" "$@" >"$dir/load.out" 2>"$dir/load.err" </dev/null &
    LOAD_PID=$!
    LIVE+=("$LOAD_PID")
}

stop_load() {
    kill -INT -- "-$LOAD_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 40; i++)); do
        kill -0 "$LOAD_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL -- "-$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
    forget "$LOAD_PID"
}

now_ms() { date +%s%3N; }
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }

# ---------------------------------------------------------------- sources
# mini-redis is the program under test, so it is built from its own source, as its
# authors build it (Cargo.toml's [patch.crates-io]): the crate is unpacked from cargo's
# registry cache into target/src/ (fetched by cargo first if it is not there) and the
# patches in redis/patches/ are applied. Its frames are then the program's own.
MINI_REDIS=mini-redis-0.4.1
unpack_sources() {
    local dest="$FIELD/target/src/$MINI_REDIS"
    [[ -f "$dest/Cargo.toml" ]] && return 0
    local cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache" crates
    crates=("$cache"/*/"$MINI_REDIS.crate")
    if ((${#crates[@]} == 0)); then
        # A throwaway package that depends on the crate: `cargo fetch` puts it in the cache.
        local f="$FIELD/target/fetch"
        mkdir -p "$f/src"
        printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\nmini-redis = "=0.4.1"\n\n[workspace]\n' >"$f/Cargo.toml"
        : >"$f/src/lib.rs"
        cargo fetch --quiet --manifest-path "$f/Cargo.toml"
        crates=("$cache"/*/"$MINI_REDIS.crate")
    fi
    ((${#crates[@]})) || { echo "run.sh: $MINI_REDIS.crate is not in $cache" >&2; exit 2; }
    mkdir -p "$FIELD/target/src"
    tar -xzf "${crates[0]}" -C "$FIELD/target/src"
    local p
    for p in "$FIELD"/redis/patches/*.patch; do patch --quiet -d "$dest" -p1 <"$p"; done
}

# ---------------------------------------------------------------- builds
# Three builds of each program: none (plain System allocator, no leakscope), alloc
# (leakscope as the global allocator), layer (that plus leakscope::layer()).
VARIANTS="$FIELD/target/variants"
build_all() {
    mkdir -p "$VARIANTS"
    local pkg build features
    for pkg in field-redis field-http; do
        for build in none alloc layer; do
            features=()
            [[ $build != none ]] && features=(--features "$build")
            echo "run.sh: building $pkg ($build)" >&2
            (cd "$FIELD" && cargo build --release --quiet -p "$pkg" "${features[@]}")
            cp "$FIELD/target/release/$pkg" "$VARIANTS/$pkg-$build"
        done
    done
}
if ((DO_BUILD)); then
    unpack_sources
    build_all
fi
for pkg in field-redis field-http; do
    for build in none alloc layer; do
        [[ -x "$VARIANTS/$pkg-$build" ]] || { echo "run.sh: $VARIANTS/$pkg-$build missing (run without --no-build)" >&2; exit 2; }
    done
done

# ---------------------------------------------------------------- field scenarios
# What a leaking run's first suspect must be: set by run_field for each scenario.
EXPECT=""
EXPECT_SHOWN=""
# A command run after the server started and before the load (@PORT@ replaced).
PREPARE=()

# Alerts of a run, from the reports in DIR/out: one line each,
# "<seq> <kind> <time_unix_ms> <json path>", in the order they were written.
alert_reports() {
    local f
    for f in "$1"/out/leakscope-*-*.json; do
        jq -r --arg f "$f" 'select(.kind != "exit" and .kind != "snapshot")
            | "\($f | capture("-(?<s>[0-9]+)-[a-z_]+\\.json$").s) \(.kind) \(.time_unix_ms) \($f)"' "$f"
    done | sort -n
}

# field_scenario NAME KIND(healthy|leaking) PKG DESCRIPTION LOAD_SECONDS SERVER_ENV LOAD_CMD...
# SERVER_ENV is a space-separated list of VAR=VALUE (no spaces in values).
field_scenario() {
    local name=$1 kind=$2 pkg=$3 what=$4 load_ms=$5 server_env=$6
    shift 6
    local dir="$RUNS/$name$REP_SUFFIX"
    mkdir -p "$dir"
    local env=(LEAKSCOPE=1 "LEAKSCOPE_INTERVAL=$INTERVAL" "LEAKSCOPE_LEAK_WINDOW=$WINDOW")
    [[ -n "$server_env" ]] && read -r -a extra <<<"$server_env" && env+=("${extra[@]}")
    env+=("${EXTRA_ENV[@]}")

    say ""
    say "== $name${REP_SUFFIX:+ (run ${REP_SUFFIX#.} of $REPEAT)} · $kind · $what"
    start_server "$dir" "$VARIANTS/$pkg-$BUILD" "${env[@]}" || { verdict "$name" FAIL "the server did not start"; return; }
    local port=${SERVER_ADDR##*:}
    local cmd=() a prep=()
    if ((${#PREPARE[@]})); then
        for a in "${PREPARE[@]}"; do prep+=("${a//@PORT@/$port}"); done
        "${prep[@]}" >"$dir/prepare.out" 2>&1 || { verdict "$name" FAIL "${prep[*]} failed (see $dir/prepare.out)"; stop_server; return; }
        # One window for the monitor to see the prepared level before the load starts.
        sleep "$(awk -v w="$WINDOW_MS" 'BEGIN { print w / 1000 }')"
    fi
    # The load generator's command, with the port put in for @PORT@.
    for a in "$@"; do cmd+=("${a//@PORT@/$port}"); done
    local t0 t_end
    t0=$(now_ms)
    start_load "$dir" "${cmd[@]}"
    t_end=$((t0 + load_ms))
    local found=""
    while (($(now_ms) < t_end)); do
        sleep 0.25
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then found=crash; break; fi
        # A leaking run stops once its first memory_leak report is written.
        if [[ $kind == leaking ]] && alert_reports "$dir" | grep -q ' memory_leak '; then
            sleep 1
            found=alert
            break
        fi
    done
    local t_stop
    t_stop=$(now_ms)
    local ran_ms=$((t_stop - t0))
    local crashed=0
    if [[ $found == crash ]]; then crashed=1; fi
    stop_load
    stop_server
    local rate
    rate=$(load_rate "$dir")

    local env_shown="${env[*]}"
    say "   build $BUILD; $env_shown"
    ((${#prep[@]})) && say "   before the load: ${prep[*]}, then one window idle (an alert then counts too, at a negative time)"
    local shown="${cmd[*]}"
    say "   load $(secs "$ran_ms") ($(awk -v r="$ran_ms" -v w="$WINDOW_MS" 'BEGIN { printf "%.1f", r / w }') windows): ${shown//$VALUE100/<100 B>}${rate:+; $rate}"
    local alerts n=0 line seq akind atime json
    alerts=$(alert_reports "$dir")
    local first_leak_ms="" first_suspect=""
    if [[ -z "$alerts" ]]; then
        say "   alerts: none"
    else
        say "   alerts: $(wc -l <<<"$alerts")"
        declare -A nth=()
        while read -r seq akind atime json; do
            n=$((${nth[$akind]:-0} + 1))
            nth[$akind]=$n
            # The n-th stderr line of this kind, exactly as printed.
            line=$(grep -E "^leakscope: $akind: " "$dir/server.stderr" | sed -n "${n}p" || true)
            say "   - $akind at $(secs $((atime - t0))) after load started ($(awk -v d=$((atime - t0)) -v w="$WINDOW_MS" 'BEGIN { printf "%.2f", d / w }') windows)"
            say "     ${line:-(no stderr line found)}"
            jq -r '.suspects[:3] | to_entries[] | "     suspect \(.key + 1): \(.value.function) (\(.value.location // "no location"))"
                + (if .value.growth_bytes_per_sec then " +\(.value.growth_bytes_per_sec / 1024 | floor) KiB/s" else "" end)
                + (if .value.live_bytes then ", \(.value.live_bytes / 1048576 * 10 | floor / 10) MiB live" else "" end)
                + (if .value.live_tasks then ", \(.value.live_tasks) live tasks" else "" end)' "$json" | tee -a "$RESULTS"
            if [[ $akind == memory_leak && -z $first_leak_ms ]]; then
                first_leak_ms=$((atime - t0))
                first_suspect=$(jq -r '.suspects[0].function // ""' "$json")
            fi
        done <<<"$alerts"
    fi
    say "   peak RSS: $(mib "$PEAK_LOAD_KIB") under load, $(mib "$PEAK_EXIT_KIB") with the exit files"

    # The verdict.
    local windows_needed=5
    if ((crashed)); then
        verdict "$name" FAIL "the server exited during the load (see $dir/server.stderr)"
    elif [[ $kind == healthy ]]; then
        if [[ -n "$alerts" ]]; then
            verdict "$name" FAIL "$(wc -l <<<"$alerts") alert(s) on a healthy run, the first $(secs $(($(head -1 <<<"$alerts" | cut -d' ' -f3) - t0))) after load started"
        elif ((ran_ms < windows_needed * WINDOW_MS)); then
            verdict "$name" FAIL "ran only $(secs "$ran_ms"), less than $windows_needed windows"
        else
            verdict "$name" PASS "no alert in $(secs "$ran_ms") of load (at least $windows_needed windows of $WINDOW)"
        fi
    else
        if [[ -z $first_leak_ms ]]; then
            verdict "$name" FAIL "no memory_leak alert in $(secs "$ran_ms") of load (needed within 2 windows = $(secs $((2 * WINDOW_MS))))"
        elif ((first_leak_ms > 2 * WINDOW_MS)); then
            verdict "$name" FAIL "memory_leak $(secs "$first_leak_ms") after load started, later than 2 windows ($(secs $((2 * WINDOW_MS))))"
        elif [[ ! $first_suspect =~ $EXPECT ]]; then
            verdict "$name" FAIL "memory_leak at $(secs "$first_leak_ms"), but the first suspect is ${first_suspect:-(none)}, not $EXPECT_SHOWN"
        else
            verdict "$name" PASS "memory_leak at $(secs "$first_leak_ms") (within 2 windows = $(secs $((2 * WINDOW_MS)))), first suspect $first_suspect ($EXPECT_SHOWN)"
        fi
    fi
    say "   files: $dir"
}

# The load generator's request rate, from its output so far.
load_rate() {
    local dir=$1 r
    # redis-benchmark's progress lines: "...: rps=51234.0 (overall: 50123.4) avg_msec=..."
    r=$(tr '\r' '\n' <"$dir/load.out" | sed -n 's/.*rps=[0-9.]* (overall: \([0-9.]*\)).*/\1/p' | tail -1)
    [[ -n "$r" ]] && { awk -v r="$r" 'BEGIN { printf "%.0f requests/s", r }'; return; }
    r=$(awk '/^Requests\/sec:/ { print $2 }' "$dir/load.out" | tail -1)
    [[ -n "$r" ]] && awk -v r="$r" 'BEGIN { printf "%.0f requests/s", r }'
    return 0
}

# Load lengths: a healthy run lasts six windows (the first fills the monitor's window,
# five more are judged); a leaking run at most three (it stops at its first alert).
HEALTHY_MS=$((6 * WINDOW_MS))
LEAKING_MS=$((3 * WINDOW_MS))
VALUE100=$(printf 'v%.0s' {1..100})
# Load generators that run until stopped.
RB=(redis-benchmark -h 127.0.0.1 -p @PORT@ -c 50 -n 2000000000)

run_field() {
    PREPARE=()
    case "$1" in
        redis-*) EXPECT='^<?mini_redis::db::Db::set' EXPECT_SHOWN="the storing function mini_redis::db::Db::set (or its closure)" ;;
        http-*) EXPECT='^field_http::remember_session' EXPECT_SHOWN="the leaking function field_http::remember_session" ;;
    esac
    case "$1" in
        redis-expiring)
            field_scenario redis-expiring healthy field-redis \
                "mini-redis, SET key:__rand_int__ <100 B> PX 2000, 10^6 keys, 50 connections, full speed" \
                "$HEALTHY_MS" "" "${RB[@]}" -r 1000000 SET key:__rand_int__ "$VALUE100" PX 2000 ;;
        redis-mixed)
            PREPARE=(python3 "$FIELD/load/prefill.py" @PORT@ 100000 100)
            field_scenario redis-mixed healthy field-redis \
                "mini-redis, its 10^5 keys set first, then redis-benchmark -t set,get -n 200000 -r 100000 -d 100 in a loop (no expiry: overwrites)" \
                "$HEALTHY_MS" "" bash -c 'while :; do redis-benchmark -h 127.0.0.1 -p @PORT@ -c 50 -t set,get -n 200000 -r 100000 -d 100 || exit; done' ;;
        redis-leak)
            field_scenario redis-leak leaking field-redis \
                "mini-redis, SET key:__rand_int__ <100 B> with no expiry, 10^9 keys (the database grows without bound)" \
                "$LEAKING_MS" "" "${RB[@]}" -r 1000000000 SET key:__rand_int__ "$VALUE100" ;;
        http-cache)
            field_scenario http-cache healthy field-http \
                "field-http (axum, LRU cache of 4096 pages), wrk -t1 -c32: GET /item/{1..20000} x3, POST /session 1 KiB x1, no leak" \
                "$HEALTHY_MS" "" wrk -t1 -c32 -d 1h -s "$FIELD/load/http_mixed.lua" "http://127.0.0.1:@PORT@" ;;
        http-leak-20k | http-leak-80k | http-leak-1m)
            local rate
            case "$1" in http-leak-20k) rate=20000 ;; http-leak-80k) rate=80000 ;; http-leak-1m) rate=1000000 ;; esac
            field_scenario "$1" leaking field-http \
                "field-http, the http-cache traffic, /session keeps bodies in a global map at $rate B/s (remember_session)" \
                "$LEAKING_MS" "FIELD_LEAK_BYTES_PER_SEC=$rate" wrk -t1 -c32 -d 1h -s "$FIELD/load/http_mixed.lua" "http://127.0.0.1:@PORT@" ;;
    esac
}

# ---------------------------------------------------------------- throughput
# The four configurations, in the order of the first round (later rounds rotate it).
CONFIGS=("none|" "alloc|" "layer|" "layer|LEAKSCOPE=1")
config_name() {
    case "$1" in
        "none|") echo "no leakscope (System)" ;;
        "alloc|") echo "allocator only, LEAKSCOPE unset" ;;
        "layer|") echo "allocator + layer, LEAKSCOPE unset" ;;
        "layer|LEAKSCOPE=1") echo "allocator + layer, LEAKSCOPE=1" ;;
        "alloc|LEAKSCOPE=1") echo "allocator only, LEAKSCOPE=1" ;;
    esac
}

# values DIR TEST K: the figures of TEST for configuration K, one per round.
values() { cat "$1"/r*-c"$3"/rates | awk -v t="$2" '$1 == t { print $2 }'; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# bench PKG NAME DESCRIPTION TESTS: runs bench_once PKG DIR for every configuration and
# round; bench_once writes "<test> <requests/s>" lines to DIR/rates.
bench() {
    local pkg=$1 name=$2 what=$3 tests=$4
    local dir="$RUNS/$name"
    mkdir -p "$dir"
    say ""
    say "== $name · throughput · $what"
    say "   $ROUNDS rounds, configurations interleaved (order rotated each round); $([[ $TASKSET == 1 ]] && echo "server on CPU 0, load generator on CPU 1 (taskset)" || echo "no taskset")"
    local round i c k cfg build env_kv d
    declare -A RATIO=()
    for ((round = 0; round < ROUNDS; round++)); do
        for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
            k=$(((i + round) % ${#CONFIGS[@]}))
            cfg=${CONFIGS[$k]}
            build=${cfg%%|*}
            env_kv=${cfg#*|}
            d="$dir/r$round-c$k"
            mkdir -p "$d"
            local env=()
            [[ -n $env_kv ]] && env+=("$env_kv")
            start_server "$d" "$VARIANTS/$pkg-$build" "${env[@]}" || { verdict "$name" FAIL "$pkg-$build did not start"; return; }
            bench_once "$pkg" "$d"
            # The server's CPU time (user + system, clock ticks) per request served.
            awk -v hz="$(getconf CLK_TCK)" -v n="$(cat "$d/requests")" \
                '{ if (n > 0) printf "CPU %.2f\n", ($14 + $15) / hz * 1e6 / n }' "/proc/$SERVER_PID/stat" >>"$d/rates"
            stop_server
            echo "round $round config $k ($(config_name "$cfg")): $(tr '\n' ' ' <"$d/rates")" >>"$dir/rounds.txt"
        done
    done
    local t base m line lo hi pr
    for t in $tests CPU; do
        if [[ $t == CPU ]]; then
            say "$(printf '   %-38s %10s %8s %9s   %s' "server CPU per request" "us" "ratio" "per round" "rounds (min-max)")"
        else
            say "$(printf '   %-38s %10s %8s %9s   %s' "$t" "req/s" "ratio" "per round" "rounds (min-max)")"
        fi
        base=$(values "$dir" "$t" 0 | median)
        for ((k = 0; k < ${#CONFIGS[@]}; k++)); do
            m=$(values "$dir" "$t" "$k" | median)
            lo=$(values "$dir" "$t" "$k" | sort -g | head -1)
            hi=$(values "$dir" "$t" "$k" | sort -g | tail -1)
            # Ratio of the medians, and the median of the ratios within each round.
            RATIO[$t.$k]=$(awk -v m="$m" -v b="$base" 'BEGIN { printf "%.3f", (b > 0 ? m / b : 0) }')
            pr=$(for f in "$dir"/r*-c$k/rates; do
                awk -v t="$t" '$1 == t { print $2 }' "$f" | paste - <(awk -v t="$t" '$1 == t { print $2 }' "${f%-c*}-c0/rates")
            done | awk '$2 > 0 { print $1 / $2 }' | median)
            say "$(printf '   %-38s %10.1f %7.3fx %8.3fx   %.1f-%.1f' "$(config_name "${CONFIGS[$k]}")" "$m" "${RATIO[$t.$k]}" "${pr:-0}" "$lo" "$hi")"
        done
    done
    # Issue 18's bars: LEAKSCOPE unset >= 0.98x (goal 0.99x), LEAKSCOPE=1 >= 0.95x (goal 0.97x).
    local verdict=PASS reasons=() r
    for t in $tests; do
        r=${RATIO[$t.2]}
        awk -v r="$r" 'BEGIN { exit !(r < 0.98) }' && { verdict=FAIL; reasons+=("$t layer unset ${r}x < 0.98x"); }
        r=${RATIO[$t.3]}
        awk -v r="$r" 'BEGIN { exit !(r < 0.95) }' && { verdict=FAIL; reasons+=("$t LEAKSCOPE=1 ${r}x < 0.95x"); }
    done
    if [[ $verdict == PASS ]]; then
        verdict "$name" PASS "layer with LEAKSCOPE unset >= 0.98x and LEAKSCOPE=1 >= 0.95x of no leakscope (issue 18's bars)"
    else
        local IFS=';'
        verdict "$name" FAIL "${reasons[*]} (issue 18's bars)"
    fi
    say "   per round: $dir/rounds.txt"
}

# bench_callgrind PKG NAME DESCRIPTION: each configuration once under valgrind's
# callgrind, counting the instructions of the server process (all its threads, user
# space) while the load generator sends CALLGRIND requests after a warm-up; prints
# instructions per request and the ratio to the none build. Valgrind runs the server
# about 50 times slower and one thread at a time: the layer's timing, which adapts to
# elapsed time, then times a far larger share of entries than natively, so the
# LEAKSCOPE=1 figures overstate the timing's part.
bench_callgrind() {
    local pkg=$1 name=$2 what=$3
    local dir="$RUNS/$name-callgrind"
    mkdir -p "$dir"
    command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || {
        verdict "$name" FAIL "valgrind (callgrind_control) not found"
        return
    }
    say ""
    say "== $name · instructions under callgrind · $what, $CALLGRIND requests counted after a warm-up"
    local k cfg build env_kv d port vpid base="" per
    # The four configurations, and the allocator alone with LEAKSCOPE=1 (what the
    # session costs without the layer).
    local cfgs=("${CONFIGS[@]}" "alloc|LEAKSCOPE=1")
    for ((k = 0; k < ${#cfgs[@]}; k++)); do
        cfg=${cfgs[$k]}
        build=${cfg%%|*}
        env_kv=${cfg#*|}
        d="$dir/c$k"
        mkdir -p "$d/out"
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        local env=(LEAKSCOPE_DIR="$d/out" FIELD_ADDR="127.0.0.1:$port")
        [[ -n $env_kv ]] && env+=("$env_kv")
        setsid env "${env[@]}" "${SERVER_CPU[@]}" valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$d/callgrind.out" "$VARIANTS/$pkg-$build" \
            >"$d/server.stdout" 2>"$d/server.stderr" </dev/null &
        vpid=$!
        LIVE+=("$vpid")
        local i
        for ((i = 0; i < 600; i++)); do
            grep -q '^listening on' "$d/server.stdout" 2>/dev/null && break
            sleep 0.1
        done
        case "$pkg" in
            field-redis)
                "${LOAD_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n 2000 -c 50 -r 100000 -d 100 -q >/dev/null 2>&1 || true
                callgrind_control -i on "$vpid" >/dev/null
                "${LOAD_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$CALLGRIND" -c 50 \
                    -r 100000 -d 100 --csv >"$d/load.out" 2>&1 </dev/null || true
                echo $((2 * CALLGRIND)) >"$d/requests" ;;
            field-http)
                "${LOAD_CPU[@]}" wrk -t1 -c32 -d 3s -s "$FIELD/load/http_mixed.lua" "http://127.0.0.1:$port" >/dev/null 2>&1 || true
                callgrind_control -i on "$vpid" >/dev/null
                # wrk runs for a time: ask for about CALLGRIND requests at the warm-up's rate.
                "${LOAD_CPU[@]}" wrk -t1 -c32 -d "$((CALLGRIND / 500 + 5))s" -s "$FIELD/load/http_mixed.lua" \
                    "http://127.0.0.1:$port" >"$d/load.out" 2>&1 </dev/null || true
                awk '/ requests in / { print $1 }' "$d/load.out" >"$d/requests" ;;
        esac
        callgrind_control -d "$vpid" >/dev/null
        kill -TERM "$vpid" 2>/dev/null || true
        wait "$vpid" 2>/dev/null || true
        forget "$vpid"
        local dump instr n
        dump=$(ls -t "$d"/callgrind.out.* 2>/dev/null | head -1)
        instr=$(awk '/^summary:/ { print $2 } /^totals:/ { print $2 }' "$dump" 2>/dev/null | head -1)
        n=$(cat "$d/requests" 2>/dev/null)
        per=$(awk -v i="${instr:-0}" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.0f", i / n; else print 0 }')
        [[ -z $base ]] && base=$per
        say "$(printf '   %-38s %12s instructions per request (%s requests) %7.3fx' "$(config_name "$cfg")" "$per" "$n" \
            "$(awk -v p="$per" -v b="$base" 'BEGIN { printf "%.3f", (b > 0 ? p / b : 0) }')")"
    done
    say "   dumps: $dir/c*/callgrind.out.*"
}

bench_once() {
    local pkg=$1 d=$2 port=${SERVER_ADDR##*:}
    case "$pkg" in
        field-redis)
            # --csv: "SET","51234.57",... per test
            "${LOAD_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$REQUESTS" -c 50 \
                -r 100000 -d 100 --csv >"$d/load.out" 2>"$d/load.err" </dev/null || true
            tr -d '"' <"$d/load.out" | awk -F, '$1 == "SET" || $1 == "GET" { print $1, $2 }' >"$d/rates"
            echo $((2 * REQUESTS)) >"$d/requests" ;;
        field-http)
            "${LOAD_CPU[@]}" wrk -t1 -c32 -d "${BENCH_SECONDS}s" -s "$FIELD/load/http_mixed.lua" \
                "http://127.0.0.1:$port" >"$d/load.out" 2>"$d/load.err" </dev/null || true
            awk '/^Requests\/sec:/ { print "HTTP", $2 }' "$d/load.out" >"$d/rates"
            awk '/ requests in / { print $1 }' "$d/load.out" >"$d/requests" ;;
    esac
}

# ---------------------------------------------------------------- main
say "leakscope field tests, $(date -u '+%Y-%m-%d %H:%M UTC'), leakscope $(git -C "$FIELD" describe --always --dirty 2>/dev/null || echo '?'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "monitor: LEAKSCOPE_INTERVAL=$INTERVAL LEAKSCOPE_LEAK_WINDOW=$WINDOW; healthy runs $(secs "$HEALTHY_MS"), leaking runs at most $(secs "$LEAKING_MS")"
REP_SUFFIX=""
for s in "${SCENARIOS[@]}"; do
    case "$s" in
        bench-*) ;;
        *)
            for ((rep = 1; rep <= REPEAT; rep++)); do
                ((REPEAT > 1)) && REP_SUFFIX=".$rep"
                run_field "$s"
            done
            continue ;;
    esac
    case "$s" in
        bench-redis)
            if ((CALLGRIND > 0)); then
                bench_callgrind field-redis bench-redis "mini-redis, redis-benchmark -t set,get -c 50 -r 100000 -d 100"
            else
                bench field-redis bench-redis "mini-redis, redis-benchmark -t set,get -n $REQUESTS -c 50 -r 100000 -d 100" "SET GET"
            fi ;;
        bench-http)
            if ((CALLGRIND > 0)); then
                bench_callgrind field-http bench-http "field-http, wrk -t1 -c32 with the http-cache traffic"
            else
                bench field-http bench-http "field-http, wrk -t1 -c32 -d ${BENCH_SECONDS}s with the http-cache traffic" "HTTP"
            fi ;;
    esac
done
say ""
say "summary:"
for s in $(printf '%s\n' "${SCENARIOS[@]}" | awk '!seen[$0]++'); do
    v=$(printf '%s\n' "${VERDICTS[@]:-}" | awk -v s="$s" '$1 == s { print $2 }' | paste -sd' ')
    # Instruction counts (--callgrind) give figures, no verdict.
    [[ -z $v ]] && { say "$(printf '   %-16s measured, no verdict' "$s")"; continue; }
    say "$(printf '   %-16s %s PASS of %s   %s' "$s" "$(grep -o PASS <<<"$v" | wc -l)" "$(wc -w <<<"$v")" "$v")"
done
say "results: $RESULTS"
