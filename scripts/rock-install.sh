#!/bin/sh
# Proves the rockspec: installs into fresh trees for Lua 5.4 and 5.1 with
# `luarocks make --deps-mode=none` (no extra flags), then uses the installed
# library and CLI from outside the checkout, and checks that the module exports
# nothing but luaopen_*.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
rockspec=$(ls "$root"/choco-active-order-*.rockspec | head -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

for v in 5.4 5.1; do
    tree="$work/tree-$v"
    echo "== luarocks --lua-version=$v make into $tree"
    (cd "$root" && luarocks --lua-version="$v" --tree="$tree" make --deps-mode=none "$rockspec") >"$work/log-$v" 2>&1 || {
        cat "$work/log-$v"; exit 1; }
    so="$tree/lib/lua/$v/choco/active_order/core.so"
    extra=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^luaopen_' || true)
    if [ -n "$extra" ]; then
        echo "the installed module exports more than luaopen_*:"; echo "$extra"; exit 1
    fi
    cd "$work"
    LUA_PATH="$tree/share/lua/$v/?.lua;$tree/share/lua/$v/?/init.lua;;" \
    LUA_CPATH="$tree/lib/lua/$v/?.so;;" \
    "lua$v" -e '
        local ao = require "choco.active_order"
        local source = debug.getinfo(ao.new, "S").source
        assert(source:find("'"$tree"'", 1, true), "loaded from " .. source .. ", not from the tree")
        local body = assert(ao.encode({
            merchant_order_id = "A-1", user_id = 7, external_status = "created",
            deeplinks = { { link = "https://rahmetapp.kz/1", type = "active_order_card" } },
            external_data = { expired_at = "2030-01-01 00:00:00", title_active_order_card = "Заказ",
                              title_call_to_action = "К заказу", need_timer = false, countdown_timer = false },
        }))
        assert(body:find("\"merchant_order_id\":\"A-1\"", 1, true), body)
        print("lua'"$v"': installed module encodes: " .. #body .. " bytes")'
    LUA_PATH="$tree/share/lua/$v/?.lua;$tree/share/lua/$v/?/init.lua;;" \
    LUA_CPATH="$tree/lib/lua/$v/?.so;;" \
        "$tree/bin/choco-active-order" --help >/dev/null
    echo "lua$v: installed CLI answers --help"
    cd "$root"
done
echo "rock-install: ok"
