#!/usr/bin/env bash
# Prepare the build context of the busybox sidecar image: CONTEXT/bin/busybox from Debian's
# busybox-static package, and a relative symlink CONTEXT/bin/<applet> -> busybox for every applet.
# Usage: prepare.sh [CONTEXT]   (default build/busybox-context; needs `apt-get install busybox-static`)
set -euo pipefail
ctx=${1:-build/busybox-context}
bb=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || [ ! -x "$bb" ]; then
  echo "prepare.sh: needs Debian's busybox-static (statically linked /bin/busybox): apt-get install busybox-static" >&2
  exit 1
fi
rm -rf "$ctx/bin"
mkdir -p "$ctx/bin"
cp "$bb" "$ctx/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$ctx/bin/$applet"
done
echo "prepare.sh: $ctx/bin holds busybox and $(($(ls "$ctx/bin" | wc -l) - 1)) applet links"
