#!/bin/sh
# `make bench`: every benchmark, each figure measured side by side with its anchor
# in the same run, then one table (bench/report.lua). Needs build/lua5.4 and
# build/luajit (the Makefile builds them first). Exits non-zero only when a
# benchmark could not run; a missed target is printed as MISSED.
#   sh bench/run.sh [BENCH...]     BENCH: encode decode push batch emulator openresty (default: all)
#   AO_BENCH_JSON=<file> keeps the JSON lines there (default build/bench/results.jsonl, rewritten)
set -u
cd "$(dirname "$0")/.."
ROOT="$PWD"
mkdir -p build/bench
JSON="${AO_BENCH_JSON:-$ROOT/build/bench/results.jsonl}"
: > "$JSON"
export AO_BENCH_JSON="$JSON" AO_ROOT="$ROOT" AO_LUAJIT_CPATH="$ROOT/build/luajit/?.so"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/?.lua;;"
for t in lua5.4 luajit; do
    [ -f "build/$t/choco/active_order/core.so" ] || { echo "bench: build/$t is missing (run make bench)" >&2; exit 2; }
done

BENCHES="${*:-encode decode push batch emulator openresty}"
FAILED=""
STARTED=$(date +%s)

# run NAME LUA SCRIPT [ARGS...]: one bench on one interpreter, its own build on LUA_CPATH
run() {
    name=$1 lua=$2 script=$3
    shift 3
    echo "== $name ($lua)"
    t0=$(date +%s)
    if LUA_CPATH="$ROOT/build/$lua/?.so;;" AO_LUA="$lua" "$lua" "$script" "$@"; then
        echo "   ($(( $(date +%s) - t0 )) s)"
    else
        echo "bench: $name ($lua) could not run" >&2
        FAILED="$FAILED $name/$lua"
    fi
}

for b in $BENCHES; do
    case $b in
        encode)    run encode lua5.4 bench/encode.lua; run encode luajit bench/encode.lua ;;
        decode)    run decode lua5.4 bench/decode.lua; run decode luajit bench/decode.lua ;;
        push)      run push lua5.4 bench/push.lua --rounds 7 --seconds 1 --many 0; run push luajit bench/push.lua --rounds 7 --seconds 1 --many 0 ;;
        batch)     run batch lua5.4 bench/batch.lua ;;
        emulator)  run emulator lua5.4 bench/emulator.lua ;;
        openresty) run openresty lua5.4 bench/openresty.lua ;;
        *) echo "bench: unknown benchmark $b" >&2; FAILED="$FAILED $b" ;;
    esac
done

echo
echo "make bench: $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - STARTED )) s; JSON lines in $JSON"
lua5.4 bench/report.lua "$JSON" || FAILED="$FAILED report"
if [ -n "$FAILED" ]; then
    echo "bench: could not run:$FAILED" >&2
    exit 1
fi
