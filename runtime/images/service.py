"""The Images service: one facade over build, store, archives, registries and unpacking.

Every method returns plain dataclasses (``dataclasses.asdict`` gives JSON-ready data), so
the CLI, the TUI and the notebook widgets render the same results.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmlab.runtime.errors import WasmlabError
from wasmlab.runtime.images.sizes import on_disk
from wasmlab.runtime.store import media
from wasmlab.runtime.store.home import checked_home, images_root, lab_home
from wasmlab.runtime.store.layout import ImageStore, PruneReport, StoredImage

# The machinery of build, registries, archives and unpacking is imported by the methods that use it: listing
# and inspecting images (`wasmlab images`, `ps`) read the store alone (issue 16, quickverbs).
if TYPE_CHECKING:
    from wasmlab.runtime.images import archive
    from wasmlab.runtime.images.archive import LoadResult, SaveResult
    from wasmlab.runtime.images.build import BuildProgress, BuildResult, RunStep
    from wasmlab.runtime.images.registry import PullResult, PushResult, TransferProgress
    from wasmlab.runtime.images.runstep import ContainerRuntime, RunOutput
    from wasmlab.runtime.images.snapshots import Snapshots
    from wasmlab.runtime.images.unpack import ConfigEdit, ExtractLimits, UnpackResult


@dataclass(frozen=True)
class ImageSummary:
    """One row of ``wasmlab images``."""

    name: str | None
    names: list[str]
    id: str
    digest: str
    created: str
    size: int
    os: str
    architecture: str
    wasm: bool
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    variant: str = ""   # how `run` treats it: "compat", "compat-smart" or "" (Linux); see wasm_variant

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class LayerInfo:
    digest: str
    media_type: str
    size: int
    diff_id: str


@dataclass(frozen=True)
class ImageDetails:
    """What ``wasmlab inspect`` shows: the summary plus the manifest, the config and the layers."""

    summary: ImageSummary
    manifest: dict[str, Any]
    config: dict[str, Any]
    layers: list[LayerInfo]
    command: list[str]
    env: list[str]
    workdir: str
    user: str


@dataclass(frozen=True)
class RemoveResult:
    untagged: list[str]
    deleted: str | None          # the removed image's manifest digest (None: it keeps other names)
    reclaimed: int
    deleted_id: str | None = None  # its image id (the config's digest), as `images` lists it


@dataclass(frozen=True)
class PruneResult:
    images: list[str]
    blobs: int
    reclaimed: int
    leftovers: int = 0   # work and staging folders of killed builds and loads


def is_wasm(manifest: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """A Wasm image: the compat annotation, or the wasm architecture / wasi OS in the config (which `run`
    turns into the compat annotation). compat-smart images are not: they run natively unless their
    entrypoint is Wasm (see wasm_variant)."""
    return wasm_variant(manifest, config) == media.WASM_VARIANT_COMPAT


def wasm_variant(manifest: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """How `run` treats the image: "compat" (always Wasm), "compat-smart" (Wasm if the entrypoint is),
    or "" (a Linux image)."""
    variant = str((manifest.get("annotations") or {}).get(media.WASM_VARIANT) or "")
    if variant:
        return variant
    if config.get("architecture") == "wasm" or str(config.get("os", "")).startswith("wasi"):
        return media.WASM_VARIANT_COMPAT
    return ""


class Images:
    """The image service for one lab home (default: :func:`lab_home`)."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = checked_home(home) if home is not None else lab_home()
        self.store = ImageStore(images_root(self.home))

    @cached_property
    def snapshots(self) -> Snapshots:
        from wasmlab.runtime.images.snapshots import Snapshots

        return Snapshots(self.home)

    # -- building -----------------------------------------------------------------------

    def build(self, context_dir: str | os.PathLike[str], containerfile: str | os.PathLike[str] | None = None,
              *, tag: str | None = None, annotations: Mapping[str, str] | Sequence[str] | None = None,
              labels: Mapping[str, str] | Sequence[str] | None = None, platform: str | None = None,
              build_args: Mapping[str, str] | Sequence[str] | None = None,
              progress: BuildProgress | None = None, run_step: RunStep | None = None,
              target: str | None = None, compression: str = "none",
              timestamp: int | None = None, runtime: ContainerRuntime | None = None,
              run_output: int | RunOutput = 2) -> BuildResult:
        """Build an image (see :func:`wasmlab.runtime.images.build.build`). RUN instructions run in containers
        of RUNTIME (deleted with the build, however it ends), or through RUN_STEP."""
        from wasmlab.runtime.images.build import build as build_image

        return build_image(context_dir, containerfile, tag=tag, annotations=annotations, labels=labels,
                           platform=platform, build_args=build_args, progress=progress, run_step=run_step,
                           store=self.store, target=target, compression=compression, timestamp=timestamp,
                           runtime=runtime, run_output=run_output)

    # -- the store ----------------------------------------------------------------------

    def _summary(self, image: StoredImage) -> ImageSummary:
        manifest = self.store.manifest(image)
        config = self.store.config(manifest)
        size = on_disk(image.size, manifest)
        return ImageSummary(
            name=image.name, names=list(image.names), id=str(manifest["config"]["digest"]),
            digest=image.digest,
            created=str(config.get("created", "")), size=size, os=str(config.get("os", "")),
            architecture=str(config.get("architecture", "")), wasm=is_wasm(manifest, config),
            variant=wasm_variant(manifest, config),
            annotations={str(k): str(v) for k, v in (manifest.get("annotations") or {}).items()},
            labels={str(k): str(v) for k, v in ((config.get("config") or {}).get("Labels") or {}).items()})

    def list(self, *, all: bool = False) -> builtins.list[ImageSummary]:
        """Images with a name (``all=True`` adds dangling ones), newest first."""
        rows = [self._summary(img) for img in self.store.images() if all or img.names]
        return sorted(rows, key=lambda r: r.created, reverse=True)

    def exists(self, name: str) -> bool:
        try:
            self.store.resolve(name)
        except WasmlabError:
            return False
        return True

    def inspect(self, name: str) -> ImageDetails:
        image = self.store.resolve(name)
        manifest = self.store.manifest(image)
        config = self.store.config(manifest)
        section = config.get("config") or {}
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers = [LayerInfo(str(d["digest"]), str(d.get("mediaType", "")), int(d.get("size", 0)),
                            diff_ids[i] if i < len(diff_ids) else "")
                  for i, d in enumerate(manifest.get("layers") or [])]
        return ImageDetails(self._summary(image), manifest, config, layers,
                            list(section.get("Entrypoint") or []) + list(section.get("Cmd") or []),
                            list(section.get("Env") or []), str(section.get("WorkingDir") or "/"),
                            str(section.get("User") or ""))

    def sizes(self, name: str, *, gzip_cache: Path | None = None) -> tuple[int, int]:
        """The image's size on disk (its blobs as the store holds them: what `images` shows) and compressed (its
        layers gzip-compressed, as a push sends them): see runtime/images/sizes.py, the one definition of both.
        GZIP_CACHE keeps the layers' gzip sizes elsewhere than the store (the bench's cached bloated root)."""
        from wasmlab.runtime.images.sizes import image_sizes

        image = self.store.resolve(name)
        return image_sizes(self.store.blob_path, self.store.manifest(image), image.size,
                           gzip_cache or self.store.state_dir / "gzip-sizes")

    def tag(self, source: str, target: str) -> ImageSummary:
        """Add the name TARGET to image SOURCE."""
        self.store.tag(source, target)
        return self._summary(self.store.resolve(target))

    def remove(self, name: str) -> RemoveResult:
        """Remove a name (the image goes with its last name); by ID, remove the image and all its names."""
        before = self.store.resolve(name)
        image_id = str(self.store.manifest(before)["config"]["digest"])
        report_before = self._blob_bytes()
        self.store.untag(name)
        remaining = [img for img in self.store.images() if img.digest == before.digest]
        removed_names = [n for n in before.names if not remaining or n not in remaining[0].names]
        snapshot_bytes = 0 if remaining else self._prune_snapshots()[1]  # they go with their last image
        return RemoveResult(removed_names, None if remaining else before.digest,
                            max(0, report_before - self._blob_bytes()) + snapshot_bytes,
                            None if remaining else image_id)

    def leftovers(self) -> builtins.list[tuple[Path, bool]]:
        """Work folders of builds and loads, staging folders of store transactions, and snapshots being unpacked:
        each with True while its owner is at work, False once its owner is gone (killed). What a killed one
        left is removed by the next build, load or unpack, and by `prune`."""
        from wasmlab.runtime.store.work import CLAIM_PREFIX, owner_alive

        out: builtins.list[tuple[Path, bool]] = []
        for base in (self.store.work_dir, self.store.staging_dir):
            try:
                entries = [e for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(CLAIM_PREFIX):
                    out.append((Path(entry.path), True))  # a claim under way (or swept once old: see work.py)
                elif not entry.name.startswith("."):
                    out.append((Path(entry.path), owner_alive(entry.path)))
        return out + self.snapshots.work()

    def _prune_snapshots(self) -> tuple[int, int]:
        return self.snapshots.prune(self.snapshots.used_by(self.store, self.store.images()))

    def _blob_bytes(self) -> int:
        if not self.store.blobs_dir.is_dir():
            return 0
        return sum(e.stat().st_size for e in os.scandir(self.store.blobs_dir) if e.is_file())

    def prune(self, *, dangling: bool = True) -> PruneResult:
        """Remove dangling images (if DANGLING), every unreferenced blob, and what killed builds and loads left
        (their staging and work folders, their RUN containers). ``reclaimed`` counts all of it, in bytes."""
        from wasmlab.runtime.images.work import sweep_work

        work = sweep_work(self.store)
        report: PruneReport = self.store.prune(dangling=dangling)
        _count, snapshot_bytes = self._prune_snapshots()
        return PruneResult(report.images, len(report.blobs), report.bytes + work.bytes + snapshot_bytes,
                           report.staging + len(work.folders))

    # -- moving images ------------------------------------------------------------------

    def save(self, names: str | Sequence[str], path: str | os.PathLike[str], *,
             format: str = "oci-archive", progress: archive.Progress | None = None) -> SaveResult:
        """``podman save``: write images to an oci-archive (default), docker-archive or oci-dir."""
        from wasmlab.runtime.images import archive

        wanted = [names] if isinstance(names, str) else list(names)
        return archive.save(self.store, wanted, path, format=format, progress=progress)

    def load(self, path: str | os.PathLike[str], *, name: str | None = None,
             progress: archive.Progress | None = None) -> LoadResult:
        """``podman load``: read an oci-archive, docker-archive, OCI layout or Wasm artifact."""
        from wasmlab.runtime.images import archive

        return archive.load(self.store, path, name=name, progress=progress)

    def export_wasm(self, name: str, path: str | os.PathLike[str]) -> SaveResult:
        """Write a compat image's module as a CNCF Wasm OCI artifact (layout dir, or .tar archive)."""
        from wasmlab.runtime.images import artifact

        return artifact.export_wasm_artifact(self.store, name, path)

    def import_wasm(self, path: str | os.PathLike[str], name: str | None = None) -> LoadResult:
        """Load a Wasm OCI artifact as a runnable compat image."""
        from wasmlab.runtime.images import artifact

        return artifact.import_wasm_artifact(self.store, path, name)

    def push(self, name: str, dest: str | None = None, *, tls_verify: bool = True,
             credentials: tuple[str, str] | None = None,
             progress: TransferProgress | None = None) -> PushResult:
        from wasmlab.runtime.images import registry

        return registry.push(self.store, name, dest, tls_verify=tls_verify, credentials=credentials,
                             progress=progress)

    def pull(self, ref: str, *, tls_verify: bool = True, credentials: tuple[str, str] | None = None,
             platform: tuple[str, str] | None = None,
             progress: TransferProgress | None = None) -> PullResult:
        from wasmlab.runtime.images import registry
        from wasmlab.runtime.images.work import stopping_cleanly
        from wasmlab.runtime.store.atomic import writing_into

        with stopping_cleanly(), writing_into(self.store.root):
            return registry.pull(self.store, ref, tls_verify=tls_verify, credentials=credentials,
                                 platform=platform, progress=progress)

    # -- running ------------------------------------------------------------------------

    def unpack(self, name: str, bundle_dir: str | os.PathLike[str], args: Sequence[str] | None = None,
               env: Sequence[str] | Mapping[str, str] | None = None,
               annotations: Mapping[str, str] | None = None, *, entrypoint: Sequence[str] | None = None,
               readonly: bool = False, limits: ExtractLimits | None = None) -> UnpackResult:
        """Make an OCI bundle (``rootfs/`` + ``config.json``) from an image, ready for the runtime."""
        from wasmlab.runtime.images.unpack import unpack_bundle
        from wasmlab.runtime.store.atomic import writing_into

        with writing_into(bundle_dir):
            return unpack_bundle(self.store, name, bundle_dir, args=args, entrypoint=entrypoint, env=env,
                                 annotations=annotations, readonly=readonly, limits=limits)

    def prepare(self, name: str, bundle_dir: str | os.PathLike[str], args: Sequence[str] | None = None,
                env: Sequence[str] | Mapping[str, str] | None = None,
                annotations: Mapping[str, str] | None = None, *, entrypoint: Sequence[str] | None = None,
                readonly: bool = False, edit: ConfigEdit | None = None, ahead: bool = False) -> UnpackResult:
        """A bundle for a container: its root an overlay of the image's snapshots (each layer unpacked once)
        and a private upper folder; a copy where overlayfs is not allowed (see `root_mode`). EDIT makes the
        caller's changes to config.json before it is written, once. AHEAD: bundle_dir is an empty bundle
        made ahead by `make_bundle_skeleton` (filled in place)."""
        from wasmlab.runtime.images.unpack import prepare_bundle
        from wasmlab.runtime.store.atomic import writing_into

        with writing_into(bundle_dir):
            return prepare_bundle(self.store, name, bundle_dir, self.snapshots, args=args, entrypoint=entrypoint,
                                  env=env, annotations=annotations, readonly=readonly, edit=edit, ahead=ahead)

    def root_mode(self) -> str:
        """How container roots are made here: "overlay" (snapshots), or "copy" where overlayfs is not allowed."""
        return self.snapshots.mode()

