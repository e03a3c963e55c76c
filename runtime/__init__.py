"""wasmlab.runtime: an embedded OCI runtime with Wasm handlers, and its public API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasmlab.runtime.errors import WasmlabError

__all__ = ["Runtime", "RunResult", "WasmlabError", "__version__"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from wasmlab.runtime.lifecycle import RunResult, Runtime


def __getattr__(name: str) -> Any:
    # Lazy, so that `wasmlab-oci --version` and light imports stay fast.
    if name in ("Runtime", "RunResult"):
        from wasmlab.runtime import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(name)
