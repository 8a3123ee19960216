#!/bin/sh
# The gateway emulator's throughput (valid PUTs, wrk -t2 -c16) against a plain
# nginx + Lua handler; see bench/emulator.lua. AO_BENCH_JSON=<file> appends one JSON line.
set -eu
cd "$(dirname "$0")/.."
LUA="${LUA:-lua5.4}"
LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/?.lua;;" exec "$LUA" bench/emulator.lua "$@"
