#!/usr/bin/env bash
# Installs the system packages sparkgrade needs, only those that are missing, so a second run costs nothing.
# bubblewrap: the sandbox. postgresql: the shared store (tests start a throw-away server).
# A browser renders feedback pages in the browser tests only: on Debian the `chromium` deb; on Ubuntu (DGX OS is
# Ubuntu 24.04) `chromium` is a transitional package that installs a snap, which apt cannot do unattended and which
# cannot read /tmp, so it is left out there and those tests skip with the reason (tests/test_feedback.py).
set -euo pipefail
. /etc/os-release 2>/dev/null || true
want=(bubblewrap postgresql)
case "${ID:-} ${ID_LIKE:-}" in
  *ubuntu*) echo "system-deps: Ubuntu: no chromium deb (snap only): the browser tests will skip" >&2 ;;
  *) want+=(chromium) ;;
esac
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
  echo "sparkgrade needs these packages: ${missing[*]}. Install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
