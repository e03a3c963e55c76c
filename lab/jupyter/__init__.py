"""wasmlab.lab.jupyter: the notebook face, ipywidgets over the Lab service (build, run, pods, namespaces, charts)."""

from __future__ import annotations

from typing import Any

__all__ = ["HandlerFaceOff", "ImageBuilder", "LiveChart", "NamespaceInspector", "PodLauncher", "Runner"]

_HOMES = {"ImageBuilder": "build", "Runner": "run", "PodLauncher": "pods", "NamespaceInspector": "namespaces",
          "LiveChart": "live", "HandlerFaceOff": "faceoff"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"wasmlab.lab.jupyter.{home}"), name)
