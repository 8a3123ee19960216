#!/bin/sh
# The example app in one command: builds the C core against LuaJIT (nginx's
# Lua) if needed, starts the gateway emulator and the app on 127.0.0.1, prints
# their URLs and an example webhook, and stops both on Ctrl-C.
#
#   examples/openresty/run.sh                 app on a free port
#   PORT=8080 WORKERS=2 THREADS=8 examples/openresty/run.sh
#   CHOCO_AO_BASE_URL=https://gateway.chocodev.kz CHOCO_AO_CLIENT_ID=... \
#   CHOCO_AO_CLIENT_SECRET=... examples/openresty/run.sh   (a real gateway: no emulator)
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LUA=${LUA:-lua5.4}
WORKERS=${WORKERS:-auto}
THREADS=${THREADS:-8}
NGINX=${AO_NGINX:-/usr/sbin/nginx}
export CHOCO_AO_THREADS="$THREADS"
export CHOCO_AO_STATUSES="${CHOCO_AO_STATUSES:-created,cooking,on_the_way,delivered,cancelled}"
export CHOCO_AO_RULES="${CHOCO_AO_RULES:-$ROOT/examples/rules/delivery.lua}"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"

if [ ! -f "$ROOT/build/luajit/choco/active_order/core.so" ]; then
    make -C "$ROOT" --no-print-directory LUA=luajit >/dev/null
fi

free_port() {
    "$LUA" -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); print((select(2, s:getsockname())))'
}

PREFIX=$(mktemp -d "${TMPDIR:-/tmp}/choco-ao-app.XXXXXXXX")
mkdir -p "$PREFIX/conf" "$PREFIX/logs" "$PREFIX/tmp"
EMU_PID=
NGINX_PID=

stop() {
    trap - INT TERM EXIT
    set +e
    if [ -n "$NGINX_PID" ]; then kill -QUIT "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; fi
    if [ -n "$EMU_PID" ]; then kill -TERM "$EMU_PID" 2>/dev/null; wait "$EMU_PID" 2>/dev/null; fi
    rm -rf "$PREFIX"
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

if [ -z "${CHOCO_AO_BASE_URL:-}" ]; then
    "$LUA" "$ROOT/lua/choco/active_order/emulator/launcher.lua" --workers 1 \
        --statuses "$CHOCO_AO_STATUSES" >"$PREFIX/emulator.url" 2>"$PREFIX/emulator.log" &
    EMU_PID=$!
    tries=0
    while [ ! -s "$PREFIX/emulator.url" ]; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ] || ! kill -0 "$EMU_PID" 2>/dev/null; then
            echo "the gateway emulator did not start:" >&2
            cat "$PREFIX/emulator.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    CHOCO_AO_BASE_URL=$(head -n 1 "$PREFIX/emulator.url")
    # the emulator's own test credentials
    CHOCO_AO_CLIENT_ID=test-client
    CHOCO_AO_CLIENT_SECRET=test-secret
fi
export CHOCO_AO_BASE_URL CHOCO_AO_CLIENT_ID CHOCO_AO_CLIENT_SECRET

PORT=${PORT:-$(free_port)}
USER_DIRECTIVE=
[ "$(id -u)" = 0 ] && USER_DIRECTIVE="user root;"
sed -e "s|\${NGINX_MODULES}|/usr/lib/nginx/modules|g" \
    -e "s|\${USER_DIRECTIVE}|$USER_DIRECTIVE|g" \
    -e "s|\${DAEMON}|off|g" \
    -e "s|\${WORKERS}|$WORKERS|g" \
    -e "s|\${THREADS}|$THREADS|g" \
    -e "s|\${PREFIX}|$PREFIX|g" \
    -e "s|\${LOG_LEVEL}|notice|g" \
    -e "s|\${ROOT}|$ROOT|g" \
    -e "s|\${PORT}|$PORT|g" \
    "$ROOT/examples/openresty/nginx.conf" >"$PREFIX/conf/nginx.conf"

env -u LD_PRELOAD "$NGINX" -p "$PREFIX/" -c conf/nginx.conf -e logs/error.log &
NGINX_PID=$!

APP="http://127.0.0.1:$PORT"
tries=0
until curl -s -o /dev/null "$APP/health"; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ] || ! kill -0 "$NGINX_PID" 2>/dev/null; then
        echo "the app did not start:" >&2
        cat "$PREFIX/logs/error.log" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<EOF
gateway: $CHOCO_AO_BASE_URL
app:     $APP        (error log: $PREFIX/logs/error.log)

Send an order event (queued, pushed in order):
  curl -s -XPOST $APP/orders/D-1042/state -d '{"state":"new","user_id":1234567}'
Or push now and see the gateway's answer:
  curl -s -XPOST '$APP/orders/D-1042/state?wait=1' -d '{"state":"accepted","user_id":1234567}'
Counters:   curl -s $APP/stats
Ctrl-C stops the app and the emulator.
EOF

wait "$NGINX_PID"
