"""The zygote stays lean: a live zygote (either pool) holds none of the modules it never uses to fork."""

from __future__ import annotations

from typing import Any

import pytest

# What import-linter cannot see: a third-party package importing these would put them in every fork.
NEVER = ("argparse", "shutil", "tempfile", "gzip", "bz2", "lzma", "zlib", "zstandard", "sqlite3",
         "wasmlab.runtime.lifecycle", "wasmlab.runtime.store.history", "wasmlab.runtime.recording",
         "textual", "ipywidgets", "matplotlib")


@pytest.mark.parametrize("pool", ["main", "wasmer"])
def test_a_live_zygote_imports_nothing_it_does_not_fork_with(runtime: Any, wasm_bundle: Any, pool: str) -> None:
    annotations = {"wasmlab.io/engine": "wasmer"} if pool == "wasmer" else None
    # A container first, so that what running one imports (the handler's engine) is loaded too.
    assert runtime.run("lean", str(wasm_bundle), annotations=annotations).exit_code == 0
    modules = runtime.zygote(pool).modules()
    assert "wasmlab.runtime.zygote.server" in modules  # the answer really is the zygote's
    assert ("wasmer_sdk" in modules) == (pool == "wasmer")
    loaded = sorted(m for m in modules if m.split(".")[0] in NEVER or m in NEVER or m.startswith(NEVER))
    assert loaded == []
