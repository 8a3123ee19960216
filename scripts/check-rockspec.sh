#!/bin/sh
# Fails when the rockspec and the tree disagree: a Lua module or C source that
# would be left out of an install, or one listed that no longer exists.
set -eu
cd "$(dirname "$0")/.."
spec=$(ls choco-active-order-*.rockspec | head -n 1)
status=0
for f in $(find lua -name '*.lua' | sort) $(ls src/*.c); do
    grep -q "\"$f\"" "$spec" || { echo "$spec does not list $f"; status=1; }
done
for f in $(grep -o '"\(lua\|src\)/[^"]*"' "$spec" | tr -d '"'); do
    [ -f "$f" ] || { echo "$spec lists $f, which does not exist"; status=1; }
done
exit $status
