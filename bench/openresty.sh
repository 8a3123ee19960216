#!/bin/sh
# Pushes from inside nginx: the example app against the emulator directly and
# against nginx's own proxy_pass relay; see bench/openresty.lua.
#   sh bench/openresty.sh [--seconds N] [--rounds N] [--json]   (AO_BENCH_JSON=<file> appends one JSON line)
set -eu
cd "$(dirname "$0")/.."
LUA="${LUA:-lua5.4}"
[ -f build/luajit/choco/active_order/core.so ] || make --no-print-directory LUA=luajit >/dev/null
AO_ROOT="$PWD" LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/?.lua;;" exec "$LUA" bench/openresty.lua "$@"
