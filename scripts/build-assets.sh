#!/usr/bin/env bash
# Rebuild the sample workloads in assets/built/ from assets/src/*.c, reproducibly, and write SHA256SUMS.
#
# Each program is compiled twice with the pinned Zig toolchain from PyPI (ziglang==0.17.1):
#   wasm32-wasi            -> assets/built/wasm/<name>.wasm
#   x86_64-linux-musl      -> assets/built/linux/<name>   (static)
# and copied next to the seed Containerfile (assets/containerfiles/seed/hello.wasm).
# The pod's infra process (pause) is built for Linux only: it waits for signals and reaps, which WASI cannot.
#
# Reproducible: the compiler always runs in assets/src with relative file names, with the
# Zig caches in a fresh temporary directory, -ffile-prefix-map and -fno-ident, so a rebuild on
# any checkout path gives identical bytes. `--check` rebuilds into a temporary directory and
# compares with the committed files instead of overwriting them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
WANT_ZIG=0.17.1
PROGRAMS="hello argsenv sys files cpu memgrow loop exitcode trap cwd"
# Linux only: the pod's infra process (signals and waitpid, which WASI preview 1 has not).
LINUX_ONLY="pause"

check=0
if [ "${1:-}" = "--check" ]; then check=1; fi

zig_version=$("$PY" -m ziglang version 2>/dev/null || true)
if [ "$zig_version" != "$WANT_ZIG" ]; then
  echo "build-assets: need ziglang $WANT_ZIG in $PY (found '${zig_version:-none}')." >&2
  echo "  fix: $PY -m pip install ziglang==$WANT_ZIG   (or: make setup)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ZIG_GLOBAL_CACHE_DIR=$work/zig-global-cache
export ZIG_LOCAL_CACHE_DIR=$work/zig-local-cache
export SOURCE_DATE_EPOCH=0
# The same flags for both targets. -s strips symbols and debug info (which is where paths live).
COMMON=(-O2 -s -fno-ident "-ffile-prefix-map=$ROOT/assets/src=." "-ffile-prefix-map=$work=/zig")
# Zig's wasm default stack is 16 MiB, which makes every instance start with 16 MiB of linear memory;
# 1 MiB (what wasi-sdk uses) keeps the initial memory at 17 pages and memory limits meaningful.
WASM_FLAGS=(-Wl,-z,stack-size=1048576)

if [ $check = 1 ]; then out=$work/out; else out=$ROOT/assets/built; fi
mkdir -p "$out/wasm" "$out/linux"

cd "$ROOT/assets/src"
for name in $PROGRAMS; do
  "$PY" -m ziglang cc -target wasm32-wasi "${COMMON[@]}" "${WASM_FLAGS[@]}" -o "$out/wasm/$name.wasm" "$name.c"
  "$PY" -m ziglang cc -target x86_64-linux-musl -static "${COMMON[@]}" -o "$out/linux/$name" "$name.c"
  chmod 0644 "$out/wasm/$name.wasm"
  chmod 0755 "$out/linux/$name"
  echo "built $name"
done
for name in $LINUX_ONLY; do
  "$PY" -m ziglang cc -target x86_64-linux-musl -static "${COMMON[@]}" -o "$out/linux/$name" "$name.c"
  chmod 0755 "$out/linux/$name"
  echo "built $name (linux only)"
done

cd "$out"
# shellcheck disable=SC2046
sha256sum $(for n in $PROGRAMS; do echo "wasm/$n.wasm"; done) $(for n in $PROGRAMS $LINUX_ONLY; do echo "linux/$n"; done) > SHA256SUMS

if [ $check = 1 ]; then
  if diff -u "$ROOT/assets/built/SHA256SUMS" "$out/SHA256SUMS" &&
     cmp -s "$out/wasm/hello.wasm" "$ROOT/assets/containerfiles/seed/hello.wasm"; then
    echo "build-assets: rebuild is byte-identical to the committed assets/built/"
  else
    echo "build-assets: rebuild DIFFERS from the committed assets/built/ (see diff above)" >&2
    exit 1
  fi
else
  mkdir -p "$ROOT/assets/containerfiles/seed"
  cp "$out/wasm/hello.wasm" "$ROOT/assets/containerfiles/seed/hello.wasm"
  echo "build-assets: wrote assets/built/ and assets/built/SHA256SUMS"
  cat SHA256SUMS
fi
