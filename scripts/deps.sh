#!/bin/sh
# Installs the Debian packages this project needs, when any is missing.
# As root it runs apt-get itself; otherwise it names what to install and fails.
set -eu

PACKAGES=$(cat "$(dirname "$0")/debian-packages.txt")

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
# Debian starts the packaged nginx on port 80; this project runs its own instances.
if [ -x /usr/sbin/service ]; then service nginx stop >/dev/null 2>&1 || true; fi
