#!/usr/bin/env bash
# Set up a fresh machine for wasmlab: Debian packages (as root), then .venv with wasmlab in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# What the tests drive: the container tools of the interop tests, busybox for Linux bundles, libseccomp for
# seccomp filters, Debian's python3 (the rootless tests run wasmlab as `nobody`, who cannot enter /root),
# chromium for the notebooks' browser test (Playwright drives Debian's build; `playwright install` cannot here), crun
# (the bench's second anchor; it refuses hybrid cgroups here, and the bench says so) and debootstrap (its bloated image);
# tmux for the TUI's real-terminal test (chromium also drives its `wasmlab serve` browser test).
DEB_PACKAGES="podman buildah runc skopeo umoci containerd busybox-static docker-registry libseccomp2 python3 catatonit chromium crun debootstrap tmux"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $DEB_PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi
if [ -x .venv/bin/python ] && [ -n "${PYTHON:-}" ]; then
  # PYTHON names the interpreter the venv must be made from (rootless: one other users can run). A venv made
  # from another one is made again; it would otherwise be kept without a word.
  want=$("$PY" -c 'import sys, os; print(os.path.realpath(sys.executable))')
  have=$(.venv/bin/python -c 'import sys, os; print(os.path.realpath(sys._base_executable))')
  if [ "$want" != "$have" ]; then
    echo "setup: .venv was made from $have; making it again from $want (PYTHON)"
    rm -rf .venv
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.wasmlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[lab,dev,notebooks]"
  touch "$stamp"
fi
