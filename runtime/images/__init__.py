"""Images: Containerfile builds, the embedded OCI store, archives, registries and unpacking to bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Images", "ImageSummary", "ImageDetails", "RemoveResult", "PruneResult"]

if TYPE_CHECKING:
    from wasmlab.runtime.images.service import ImageDetails, Images, ImageSummary, PruneResult, RemoveResult


def __getattr__(name: str) -> Any:
    # Lazy, so that importing one submodule (say, the Containerfile parser) stays light.
    if name in __all__:
        from wasmlab.runtime.images import service

        return getattr(service, name)
    raise AttributeError(name)
