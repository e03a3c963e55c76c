"""Building OCI images from a Containerfile and a build context, into the image store.

A build reads the context, runs the instructions of each stage, and squashes what the
final stage adds into one new layer on top of its base image's layers (as ``buildah build``
does by default). Until a RUN needs a real root file system, COPY and ADD are recorded in
memory, so a ``FROM scratch`` / ``COPY`` / ``CMD`` build never touches a work folder.
Nothing is written to the store until every instruction has succeeded; the store is then
updated in one transaction, so a failed or killed build leaves it as it was. The work folder
(in the store's ``.wasmlab/work``, held by the build's lock) and the RUN containers go with
the build: at once on failure, SIGINT, SIGTERM or SIGHUP; at the next build, load or prune
after a SIGKILL (images/work.py).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import io
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wasmlab.runtime.errors import BuildError, ImageError, WasmlabError
from wasmlab.runtime.handlers.detect import check_variant
from wasmlab.runtime.images import containerfile as cf
from wasmlab.runtime.images.ignore import IgnoreRules
from wasmlab.runtime.images.layers import (
    Entry,
    LayerBlob,
    LayerWriter,
    Meta,
    finish_layer,
    listing,
    snapshot_tree,
    spool_file,
    write_diff,
)
from wasmlab.runtime.images.platform import Platform, host_platform_default, parse_platform, platform_args
from wasmlab.runtime.images.rootfs import disk_readlink, resolve_in_root, write_entry
from wasmlab.runtime.images.runstep import ContainerRunStep, ContainerRuntime, RunOutput
from wasmlab.runtime.images.unpack import ExtractLimits, decompressed, extract_image, extract_layers, resolve_user
from wasmlab.runtime.images.work import Work, stopping_cleanly, sweep_work
from wasmlab.runtime.spec.runtime import DEFAULT_PATH
from wasmlab.runtime.store import media
from wasmlab.runtime.store.atomic import canonical_json, writing_into
from wasmlab.runtime.store.layout import ImageStore, descriptor, digest_of
from wasmlab.runtime.store.reference import normalize

RunStep = Callable[..., int]
"""``run_step(rootfs_dir, argv, env, cwd[, user=(uid, gid)]) -> exit_code`` runs one RUN instruction (as the
stage's USER, when it takes ``user``)."""


def _parameters(fn: Callable[..., object]) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()

CONTAINERFILES = ("Containerfile", "Dockerfile")
DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_ENV_PATH = f"PATH={DEFAULT_PATH}"


@dataclass(frozen=True)
class BuildEvent:
    """Progress of a build: one event per instruction, plus notes and the final commit."""

    kind: str  # "step", "note", "warning", "commit"
    message: str
    step: int = 0
    total: int = 0
    line: int = 0


BuildProgress = Callable[[BuildEvent], None]


@dataclass(frozen=True)
class BuildResult:
    """What a build produced."""

    name: str | None
    digest: str
    id: str
    size: int
    layers: int
    os: str
    architecture: str
    annotations: dict[str, str]
    seconds: float


# -- stages -------------------------------------------------------------------------------


@dataclass
class _Base:
    layers: list[LayerBlob]
    config: dict[str, Any]
    name: str | None = None
    digest: str | None = None


class _Stage:
    """The state of one build stage: its base layers, config, and the changes made so far."""

    def __init__(self, build: _Build, stage: cf.Stage, base: _Base) -> None:
        self.build = build
        self.stage = stage
        self.base = base
        self.config = copy.deepcopy(base.config)
        self.config.setdefault("config", {})
        self.tree: dict[str, Entry] = {}
        self.rootfs: Path | None = None
        self.snapshot: dict[str, tuple[int, int, int, int, int, str]] | None = None
        self.args: dict[str, str] = {}
        self.shell: list[str] = list(DEFAULT_SHELL)
        self.history: list[dict[str, Any]] = []
        self.changed = False
        self._base_view: dict[str, Meta] | None = None
        self._result: list[LayerBlob] | None = None
        self.cmd_set = False

    # -- environment --------------------------------------------------------------------

    @property
    def section(self) -> dict[str, Any]:
        section: dict[str, Any] = self.config["config"]
        return section

    def env_map(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in self.section.get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def expansion_env(self) -> dict[str, str]:
        return {**self.args, **self.env_map()}

    def expand(self, word: str, ins: cf.Instruction) -> str:
        try:
            value: str = cf.expand(word, self.expansion_env(), self.build.file.escape)
        except cf.ExpansionError as exc:
            raise self.build.error(ins, str(exc), "check the quoting and ${...} syntax") from None
        return value

    def workdir(self) -> str:
        return str(self.section.get("WorkingDir") or "/")

    def container_path(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.workdir(), path))

    # -- file system views --------------------------------------------------------------

    def base_view(self) -> dict[str, Meta]:
        """The merged listing of the base layers (only read when needed)."""
        if self._base_view is None:
            self._base_view = listing(self.base.layers)
        return self._base_view

    def lookup(self, rel: str) -> Meta | None:
        if self.rootfs is not None:
            p = self.rootfs / rel
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                return None
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
            return Meta(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                         os.readlink(p) if kind == "symlink" else "")
        entry = self.tree.get(rel)
        if entry is not None:
            return Meta(entry.kind, entry.mode, entry.uid, entry.gid, entry.linkname)
        if self.base.layers:
            return self.base_view().get(rel)
        return None

    def readlink(self, rel: str) -> str | None:
        meta = self.lookup(rel)
        return meta.linkname if meta is not None and meta.kind == "symlink" else None

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        return resolve_in_root(path, self.readlink, follow_last=follow_last)

    def is_dir(self, rel: str) -> bool:
        meta = self.lookup(rel)
        return meta is not None and meta.kind == "dir"

    # -- changes ------------------------------------------------------------------------

    def add_entry(self, rel: str, entry: Entry) -> None:
        """Record (tree mode) or write (rootfs mode) one entry. Symbolic links among its parents are
        followed inside the image (as a chroot would), never on the host."""
        self.changed = True
        parent = posixpath.dirname(rel)
        if parent:
            rel = posixpath.join(self.resolve(parent), posixpath.basename(rel))
        if self.rootfs is not None:
            write_entry(self.rootfs, rel, entry)
            return
        existing = self.tree.get(rel)
        if existing is not None and existing.kind == "dir" and entry.kind != "dir":
            prefix = rel + "/"
            for key in [k for k in self.tree if k.startswith(prefix)]:
                del self.tree[key]
        if existing is not None and existing.kind == "dir" and entry.kind == "dir":
            existing.mode, existing.uid, existing.gid = entry.mode, entry.uid, entry.gid
            return
        self.ensure_parents(rel)
        self.tree[rel] = entry

    def ensure_parents(self, rel: str) -> None:
        parts = rel.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            parent = "/".join(parts[:k])
            if parent in self.tree:
                continue
            meta = self.base_view().get(parent) if self.base.layers else None
            if meta is not None and meta.kind == "dir":
                continue
            self.tree[parent] = Entry("dir", 0o755)

    def mkdirs(self, rel: str, uid: int = 0, gid: int = 0) -> None:
        if not rel or self.is_dir(rel):
            return
        self.add_entry(rel, Entry("dir", 0o755, uid, gid))

    def materialize(self) -> Path:
        """Switch to a real rootfs on disk (for RUN or COPY --from)."""
        if self.rootfs is not None:
            return self.rootfs
        root = self.build.workdir() / f"stage-{self.stage.index}-rootfs"
        root.mkdir(mode=0o755)
        diff_ids = [layer.diff_id for layer in self.base.layers]
        extract_layers([layer.open for layer in self.base.layers], root, diff_ids=diff_ids,
                       limits=self.build.limits)
        self.snapshot = snapshot_tree(root)
        for rel in sorted(self.tree):
            write_entry(root, rel, self.tree[rel])
        self.tree = {}
        self.rootfs = root
        return root

    def layers(self) -> list[LayerBlob]:
        """Base layers plus the one layer of this stage's changes (if any)."""
        if self._result is None:
            self._result = list(self.base.layers)
            if self.changed or not self._result:
                self._result.append(self._new_layer())
        return self._result

    def _new_layer(self) -> LayerBlob:
        mtime = self.build.timestamp
        if self.rootfs is None:
            raw = io.BytesIO()
            writer = LayerWriter(raw)
            for rel in sorted(self.tree):
                entry = self.tree[rel]
                if entry.kind == "file":
                    if entry.data is not None:
                        writer.add(rel, entry, mtime, io.BytesIO(entry.data), len(entry.data))
                    elif entry.source is not None:
                        with open(entry.source, "rb") as fh:
                            size = os.fstat(fh.fileno()).st_size
                            writer.add(rel, entry, mtime, fh, size)
                else:
                    writer.add(rel, entry, mtime)
            writer.close()
            return finish_layer(raw, self.build.compression, None)
        workdir = self.build.workdir()
        spool = spool_file(workdir)
        writer = LayerWriter(spool)
        write_diff(writer, self.rootfs, self.snapshot or {}, mtime)
        writer.close()
        return finish_layer(spool, self.build.compression, workdir)


# -- the build ----------------------------------------------------------------------------


class _Build:
    def __init__(self, store: ImageStore, context: Path, file: cf.Containerfile, *,
                 build_args: Mapping[str, str], platform: Platform | None, run_step: RunStep | None,
                 progress: BuildProgress | None, compression: str, timestamp: int,
                 limits: ExtractLimits, tmpdir: str | None, created_epoch: int | None) -> None:
        self.store = store
        self.context = context
        self.context_real = Path(os.path.realpath(context))
        self.file = file
        self.build_args = dict(build_args)
        self.used_args: set[str] = set()
        self.platform = platform
        # The platform ARGs buildah and BuildKit predefine (TARGETARCH, BUILDPLATFORM, ...), for `ARG NAME`.
        self.platform_args = platform_args(platform or host_platform_default(), host_platform_default())
        self.set_run_step(run_step)
        self.progress = progress
        self.compression = compression
        self.timestamp = timestamp
        self.limits = limits
        self.ignore = IgnoreRules.for_context(context)
        self.stages: list[_Stage] = []
        self.work = Work(store, "build", tmpdir)
        self.global_args: dict[str, str] = {}
        self.created_epoch = created_epoch

    def set_run_step(self, run_step: RunStep | None) -> None:
        self.run_step = run_step
        self.run_step_takes_user = run_step is not None and "user" in _parameters(run_step)

    def error(self, ins: cf.Instruction | None, problem: str, hint: str) -> BuildError:
        if ins is None:
            return BuildError(problem, hint)
        return cf.syntax_error(ins.line, problem, hint, self.file.source)

    def emit(self, kind: str, message: str, **kw: int) -> None:
        if self.progress is not None:
            self.progress(BuildEvent(kind, message, **kw))

    def workdir(self) -> Path:
        """The build's work folder, claimed on first use."""
        return self.work.path

    def cleanup(self) -> None:
        """Delete the RUN containers still there and the work folder."""
        self.work.close()

    # -- driving ------------------------------------------------------------------------

    def run(self, target: str | None) -> _Stage:
        for ins in self.file.global_args:
            for name, default in ins.pairs:
                if name in self.build_args:
                    self.used_args.add(name)
                    self.global_args[name] = self.build_args[name]
                elif default is not None:
                    self.global_args[name] = cf.expand(default, self.global_args, self.file.escape)
        stages = self.file.stages
        if not stages:
            raise BuildError(f"{self.file.source} has no FROM line",
                             "start it with FROM scratch or FROM IMAGE")
        last = len(stages) - 1
        if target is not None:
            matches = [s.index for s in stages if s.name == target.lower()]
            if not matches:
                raise BuildError(f"build target {target!r} is not a stage in {self.file.source}",
                                 "name a stage with FROM IMAGE AS NAME")
            last = matches[0]
        total = sum(1 + len(s.instructions) for s in stages[:last + 1])
        step = 0
        for spec in stages[:last + 1]:
            step += 1
            head = spec.head
            self.emit("step", f"FROM {head.text}", step=step, total=total, line=spec.line)
            stage = _Stage(self, spec, self.base_for(spec, head))
            self.stages.append(stage)
            for ins in spec.instructions:
                step += 1
                self.emit("step", f"{ins.keyword} {ins.text}".rstrip(), step=step, total=total, line=ins.line)
                self.apply(stage, ins)
                stage.history.append({"created_by": f"/bin/sh -c #(nop) {ins.keyword} {ins.text}".rstrip(),
                                      "empty_layer": True})
        for name in sorted(set(self.build_args) - self.used_args):
            self.emit("warning", f"build argument {name} was not consumed by any ARG instruction")
        return self.stages[last]

    def base_for(self, spec: cf.Stage, head: cf.Instruction) -> _Base:
        try:
            ref = cf.expand(spec.base, self.global_args, self.file.escape)
        except cf.ExpansionError as exc:
            raise self.error(head, str(exc), "check the ${...} syntax in FROM") from None
        if not ref:
            raise self.error(head, f"FROM {spec.base!r} expands to an empty image name",
                             "pass the missing value with --build-arg NAME=VALUE")
        if ref.lower() == "scratch":
            return _Base([], _empty_config())
        for prior in self.stages:
            if prior.stage.name == ref.lower():
                return _Base(prior.layers(), copy.deepcopy(_finish_config(prior, self)), None, None)
        try:
            image = self.store.resolve(ref)
        except ImageError:
            raise self.error(head, f"base image {ref!r} is not in the image store",
                             f"pull, load or build it first (wasmlab pull {ref}); `wasmlab images` lists "
                             "what the store has") from None
        manifest = self.store.manifest(image)
        config = self.store.config(manifest)
        base_os, base_arch = str(config.get("os") or ""), str(config.get("architecture") or "")
        want = self.platform
        if want is not None and base_os and base_arch and (
                (want.os.startswith("wasi"), want.architecture) != (base_os.startswith("wasi"), base_arch)
                or (not want.os.startswith("wasi") and want.os != base_os)):
            raise self.error(head, f"base image {ref!r} is {base_os}/{base_arch}, not {want}",
                             "build without --platform, or start from an image for that platform")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers_desc = list(manifest.get("layers") or [])
        if len(diff_ids) != len(layers_desc):
            raise self.error(head, f"base image {ref!r} is damaged (layers and diff_ids differ)",
                             "remove it and pull or load it again")
        layers = []
        for desc, diff_id in zip(layers_desc, diff_ids, strict=True):
            self.store.verify_blob(desc["digest"], size=desc.get("size"))
            layers.append(LayerBlob(dict(desc), diff_id, path=self.store.blob_path(desc["digest"])))
        return _Base(layers, copy.deepcopy(config), image.name or ref, image.digest)

    # -- instructions -------------------------------------------------------------------

    def apply(self, stage: _Stage, ins: cf.Instruction) -> None:
        handler = getattr(self, f"_do_{ins.keyword.lower()}")
        handler(stage, ins)

    def _do_arg(self, stage: _Stage, ins: cf.Instruction) -> None:
        for name, default in ins.pairs:
            if name in self.build_args:
                self.used_args.add(name)
                stage.args[name] = self.build_args[name]
            elif default is not None:
                stage.args[name] = stage.expand(default, ins)
            elif name in self.global_args:
                stage.args[name] = self.global_args[name]
            elif name in self.platform_args:
                stage.args[name] = self.platform_args[name]

    def _do_env(self, stage: _Stage, ins: cf.Instruction) -> None:
        before = stage.expansion_env()
        env = stage.env_map()
        for name, raw in ins.pairs:
            try:
                env[name] = cf.expand(raw or "", before, self.file.escape)
            except cf.ExpansionError as exc:
                raise self.error(ins, str(exc), "check the quoting and ${...} syntax") from None
        stage.section["Env"] = [f"{k}={v}" for k, v in env.items()]

    def _do_label(self, stage: _Stage, ins: cf.Instruction) -> None:
        labels = dict(stage.section.get("Labels") or {})
        for key, raw in ins.pairs:
            labels[stage.expand(key, ins)] = stage.expand(raw or "", ins)
        stage.section["Labels"] = labels

    def _do_maintainer(self, stage: _Stage, ins: cf.Instruction) -> None:
        stage.config["author"] = ins.text

    def _do_workdir(self, stage: _Stage, ins: cf.Instruction) -> None:
        path = stage.container_path(stage.expand(ins.text, ins))
        stage.section["WorkingDir"] = path
        stage.mkdirs(stage.resolve(path))

    def _do_user(self, stage: _Stage, ins: cf.Instruction) -> None:
        stage.section["User"] = stage.expand(ins.args[0], ins)

    def _do_expose(self, stage: _Stage, ins: cf.Instruction) -> None:
        ports = dict(stage.section.get("ExposedPorts") or {})
        for word in ins.args:
            port = stage.expand(word, ins)
            num, _, proto = port.partition("/")
            proto = proto.lower()
            if not num.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                raise self.error(ins, f"invalid port {port!r}", "write EXPOSE 8080 or EXPOSE 8080/udp")
            ports[f"{num}/{proto or 'tcp'}"] = {}
        stage.section["ExposedPorts"] = ports

    def _do_volume(self, stage: _Stage, ins: cf.Instruction) -> None:
        volumes = dict(stage.section.get("Volumes") or {})
        for word in ins.args:
            volumes[stage.expand(word, ins)] = {}
        stage.section["Volumes"] = volumes

    def _do_stopsignal(self, stage: _Stage, ins: cf.Instruction) -> None:
        stage.section["StopSignal"] = stage.expand(ins.args[0], ins)

    def _do_shell(self, stage: _Stage, ins: cf.Instruction) -> None:
        if not ins.args:
            raise self.error(ins, "SHELL needs at least one element", 'write SHELL ["/bin/sh", "-c"]')
        stage.shell = list(ins.args)

    def _command(self, stage: _Stage, ins: cf.Instruction) -> list[str]:
        if ins.exec_form:
            return list(ins.args)
        return [*stage.shell, ins.text] if ins.text else []

    def _do_cmd(self, stage: _Stage, ins: cf.Instruction) -> None:
        stage.section["Cmd"] = self._command(stage, ins)
        stage.cmd_set = True

    def _do_entrypoint(self, stage: _Stage, ins: cf.Instruction) -> None:
        stage.section["Entrypoint"] = self._command(stage, ins)
        if not stage.cmd_set:
            # As Docker does: a new ENTRYPOINT drops the CMD inherited from the base image.
            stage.section.pop("Cmd", None)

    def _do_run(self, stage: _Stage, ins: cf.Instruction) -> None:
        argv = self._command(stage, ins)
        if not argv:
            raise self.error(ins, "RUN has no command", "write RUN COMMAND or RUN [\"prog\", \"arg\"]")
        if self.run_step is None:
            raise self.error(ins, "RUN needs a runner, and this build has none",
                             "build with the wasmlab CLI, or pass run_step= to build()")
        if not stage.base.layers and not stage.tree and not stage.changed:
            what = "a shell" if not ins.exec_form else repr(argv[0])
            raise self.error(ins, f"RUN needs {what}, but the base image is scratch (empty)",
                             "start from an image that has a shell, e.g. FROM busybox, or drop the RUN")
        root = stage.materialize()
        env = [f"{k}={v}" for k, v in stage.args.items() if k not in stage.env_map()]
        env = list(stage.section.get("Env") or []) + env
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_ENV_PATH)
        program = argv[0]
        if not _find_program(root, program, env, stage):
            what = "a shell" if not ins.exec_form else repr(program)
            raise self.error(ins, f"RUN needs {what}, but {program} is not in the image",
                             "start from an image that has it (e.g. FROM busybox) or use the exec form")
        cwd = stage.workdir()
        resolved_cwd = stage.resolve(cwd)
        (root / resolved_cwd).mkdir(parents=True, exist_ok=True)
        try:
            if self.run_step_takes_user:
                uid, gid, _groups = resolve_user(str(stage.section.get("User") or ""), root)
                code = self.run_step(root, argv, env, cwd, user=(uid, gid))
            else:
                code = self.run_step(root, argv, env, cwd)
        except WasmlabError as exc:
            raise self.error(ins, f"RUN failed: {exc.message}", exc.hint) from None
        except OSError as exc:
            raise self.error(ins, f"RUN failed: {exc.strerror or exc}",
                             "check the runner and the rootfs") from None
        stage.changed = True
        if code != 0:
            raise self.error(ins, f"RUN {ins.text[:60]} exited with code {code}",
                             "fix the command; its output above shows what went wrong")

    def _do_copy(self, stage: _Stage, ins: cf.Instruction) -> None:
        self._copy(stage, ins, archive=False)

    def _do_add(self, stage: _Stage, ins: cf.Instruction) -> None:
        self._copy(stage, ins, archive=True)

    # -- COPY / ADD ---------------------------------------------------------------------

    def _owner(self, stage: _Stage, ins: cf.Instruction) -> tuple[int, int]:
        chown = ins.flag("chown")
        if not chown:
            return 0, 0
        text = stage.expand(chown, ins)
        user, _, group = text.partition(":")
        if not user.isdigit() or (group and not group.isdigit()):
            raise self.error(ins, f"--chown={text} uses names", "use numeric IDs, e.g. --chown=1000:1000")
        return int(user), int(group) if group else int(user)

    def _mode(self, stage: _Stage, ins: cf.Instruction) -> int | None:
        chmod = ins.flag("chmod")
        if not chmod:
            return None
        text = stage.expand(chmod, ins)
        try:
            mode = int(text, 8)
        except ValueError:
            raise self.error(ins, f"--chmod={text} is not an octal mode", "write e.g. --chmod=755") from None
        if not 0 <= mode <= 0o7777:
            raise self.error(ins, f"--chmod={text} is out of range", "write e.g. --chmod=755")
        return mode

    def _copy(self, stage: _Stage, ins: cf.Instruction, *, archive: bool) -> None:
        words = [stage.expand(w, ins) for w in ins.args]
        sources, dest = words[:-1], words[-1]
        uid, gid = self._owner(stage, ins)
        mode = self._mode(stage, ins)
        from_ref = ins.flag("from")
        if from_ref is not None:
            root, rules = self._from_root(stage, ins, stage.expand(from_ref, ins)), IgnoreRules()
        else:
            root, rules = self.context_real, self.ignore
        matched: list[tuple[str, Path]] = []
        for src in sources:
            if archive and "://" in src:
                raise self.error(ins, f"ADD from a URL ({src}) is not supported",
                                 "download the file into the build context and COPY it")
            matched.extend(self._match_sources(ins, root, rules, src, from_ref is not None))
        dest_is_dir = dest.endswith("/") or len(matched) > 1 or len(sources) > 1 or \
            any(p.is_dir() for _, p in matched)
        dest_path = stage.container_path(dest)
        dest_rel = stage.resolve(dest_path, follow_last=True)
        if not dest_is_dir and (dest_rel == "" or stage.is_dir(dest_rel)):
            dest_is_dir = True
        if not dest_is_dir:
            dest_rel = stage.resolve(dest_path, follow_last=False)
        for rel, path in matched:
            if path.is_dir():
                stage.mkdirs(dest_rel, uid, gid)
                self._copy_tree(stage, root, rules, path, dest_rel, uid, gid, mode)
            elif archive and _is_archive(path):
                stage.mkdirs(dest_rel, uid, gid)
                self._add_archive(stage, ins, path, dest_rel, uid, gid)
            else:
                # The name the source was given by (a symbolic link's own, not its target's), as buildah.
                name = posixpath.basename(rel) if rel not in ("", ".") else path.name
                target = posixpath.join(dest_rel, name) if dest_is_dir else dest_rel
                target = stage.resolve(target, follow_last=False)
                if not target:
                    raise self.error(ins, f"cannot copy a file onto the root directory ({dest!r})",
                                     "give a file name or a directory ending in /")
                self._copy_file(stage, path, target, uid, gid, mode)

    def _from_root(self, stage: _Stage, ins: cf.Instruction, ref: str) -> Path:
        for prior in self.stages[:-1]:
            if prior.stage.name == ref.lower() or str(prior.stage.index) == ref:
                return prior.materialize()
        if ref.lower() == (stage.stage.name or ""):
            raise self.error(ins, f"COPY --from={ref} names the current stage", "name an earlier stage")
        try:
            image = self.store.resolve(ref)
        except ImageError:
            raise self.error(ins, f"COPY --from={ref}: no earlier stage or stored image has that name",
                             "name an earlier stage (FROM ... AS NAME) or pull the image first") from None
        manifest = self.store.manifest(image)
        config = self.store.config(manifest)
        root = self.workdir() / f"from-{image.digest[7:19]}"
        if not root.exists():
            root.mkdir()
            extract_image(self.store, manifest, config, root, limits=self.limits)
        return root

    def _match_sources(self, ins: cf.Instruction, root: Path, rules: IgnoreRules, src: str,
                       in_image: bool) -> list[tuple[str, Path]]:
        rel = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        if rel == ".." or rel.startswith("../"):
            raise self.error(ins, f"{ins.keyword} source {src!r} is outside the build context",
                             "copy only files inside the context directory (the last argument of build)")
        if any(ch in rel for ch in "*?["):
            found = []
            for cand in _walk_names(root, rules):
                if _glob_match(cand, rel) and (in_image or not rules.ignored(cand)):
                    found.append((cand, root / cand))
            if not found:
                raise self.error(ins, f"{ins.keyword} source {src!r} matches no files in the build context",
                                 "check the pattern; files listed in .containerignore are excluded")
            return sorted(found)
        if in_image:
            rel = resolve_in_root(rel, disk_readlink(root))
            path = root / rel
        else:
            path = root / rel
            real = Path(os.path.realpath(path))
            if real != root and root not in real.parents:
                raise self.error(ins, f"{ins.keyword} source {src!r} is outside the build context "
                                 "(through a symlink)",
                                 "copy only files inside the context directory")
            path = real
        if not os.path.lexists(path) or (not in_image and rel != "." and rules.ignored(rel)):
            where = "the source stage or image" if in_image else "the build context"
            raise self.error(ins, f"{ins.keyword} source {src!r} not found in {where}",
                             f"check the path relative to {root if not in_image else '/'}; "
                             "files listed in .containerignore are excluded")
        return [(rel, path)]

    def _copy_file(self, stage: _Stage, path: Path, target: str, uid: int, gid: int,
                   mode: int | None) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            stage.add_entry(target, Entry("symlink", 0o777, uid, gid, linkname=os.readlink(path)))
        elif stat.S_ISREG(st.st_mode):
            stage.add_entry(target, Entry("file", mode if mode is not None else stat.S_IMODE(st.st_mode),
                                          uid, gid, source=path))

    def _copy_tree(self, stage: _Stage, root: Path, rules: IgnoreRules, src: Path, dest_rel: str,
                   uid: int, gid: int, mode: int | None) -> None:
        rel_base = os.path.relpath(src, root)
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, src)
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                rel_ctx = posixpath.normpath(posixpath.join(rel_base, rel_dir, name))
                if rules and rules.ignored(rel_ctx):
                    if name in dirnames and not any(r.negated for r in rules.rules):
                        dirnames.remove(name)
                    continue
                target = posixpath.normpath(posixpath.join(dest_rel, rel_dir, name))
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    dir_mode = mode if mode is not None else stat.S_IMODE(st.st_mode)
                    stage.add_entry(target, Entry("dir", dir_mode, uid, gid))
                else:
                    self._copy_file(stage, full, target, uid, gid, mode)

    def _add_archive(self, stage: _Stage, ins: cf.Instruction, path: Path, dest_rel: str, uid: int,
                     gid: int) -> None:
        try:
            with _archive_stream(path) as plain, tarfile.open(fileobj=plain, mode="r|") as tar:
                total = 0
                files: dict[str, bytes] = {}
                for m in tar:
                    name = m.name
                    parts = [p for p in name.split("/") if p not in ("", ".")]
                    if name.startswith("/") or ".." in parts:
                        raise self.error(ins, f"ADD archive {path.name} has an unsafe entry {name!r}",
                                         "the archive tries to write outside its destination; fix it")
                    if not parts:
                        continue
                    target = posixpath.join(dest_rel, *parts)
                    owner = (m.uid, m.gid) if ins.flag("chown") is None else (uid, gid)
                    if m.isdir():
                        stage.add_entry(target, Entry("dir", m.mode, *owner))
                    elif m.issym():
                        stage.add_entry(target, Entry("symlink", 0o777, *owner, linkname=m.linkname))
                    elif m.isreg():
                        total += m.size
                        if total > self.limits.max_bytes:
                            raise self.error(ins, f"ADD archive {path.name} expands to too much data",
                                             "the archive looks like an archive bomb")
                        src = tar.extractfile(m)
                        data = src.read() if src else b""
                        files["/".join(parts)] = data
                        stage.add_entry(target, Entry("file", m.mode, *owner, data=data))
                    elif m.islnk():
                        # A hard link to a file earlier in the archive: the same content at this name too.
                        linked = "/".join(p for p in m.linkname.split("/") if p not in ("", "."))
                        if linked not in files:
                            raise self.error(ins, f"ADD archive {path.name} has a hard link {name!r} to "
                                                  f"{m.linkname!r}, which it does not hold",
                                             "fix the archive")
                        stage.add_entry(target, Entry("file", m.mode, *owner, data=files[linked]))
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, BuildError):
                raise
            raise self.error(ins, f"ADD cannot read the archive {path.name}: {exc}",
                             "check that it is a valid tar, tar.gz or tar.zst file") from None


def _walk_names(root: Path, rules: IgnoreRules) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            yield name if rel_dir == "." else f"{rel_dir}/{name}"


def _glob_match(name: str, pattern: str) -> bool:
    """COPY's globs, as Go's filepath.Match has them: `*`, `?` and `[...]` never cross a `/`."""
    names, patterns = name.split("/"), pattern.split("/")
    return len(names) == len(patterns) and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, patterns, strict=True))


def _is_archive(path: Path) -> bool:
    """A tar, possibly gzip-, bzip2-, xz- or zstd-compressed: what ADD unpacks (anything else is copied)."""
    try:
        with _archive_stream(path) as plain:
            head = plain.read(512)
    except Exception:  # not compressed as its magic says (bz2, lzma, zstd and gzip errors alike): a file
        return False
    return len(head) >= 262 and head[257:262] == b"ustar"


@contextlib.contextmanager
def _archive_stream(path: Path) -> Iterator[Any]:
    """The uncompressed bytes of an ADD source, by magic number."""
    with open(path, "rb") as fh:
        head = fh.read(6)
        fh.seek(0)
        if head[:3] == b"BZh":
            import bz2

            with bz2.BZ2File(fh) as plain:
                yield plain
        elif head == b"\xfd7zXZ\x00":
            import lzma

            with lzma.LZMAFile(fh) as plain:
                yield plain
        else:
            with decompressed(fh) as plain:
                yield plain


def _find_program(root: Path, program: str, env: list[str], stage: _Stage) -> bool:
    def exists(container_path: str) -> bool:
        try:
            rel = stage.resolve(container_path)
        except BuildError:
            return False
        p = root / rel
        return p.is_file() and not p.is_symlink()

    if "/" in program:
        return exists(program if program.startswith("/") else stage.container_path(program))
    path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_ENV_PATH[5:])
    return any(exists(posixpath.join(d, program)) for d in path.split(":") if d.startswith("/"))


def _empty_config() -> dict[str, Any]:
    return {"config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


def _created(timestamp: int | None) -> str:
    if timestamp is not None:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _finish_config(stage: _Stage, build: _Build) -> dict[str, Any]:
    cfg = copy.deepcopy(stage.config)
    layers = stage.layers()
    base_platform = (cfg.get("os"), cfg.get("architecture"))
    plat = build.platform
    if plat is None:
        if all(base_platform):
            plat = Platform(str(base_platform[0]), str(base_platform[1]), cfg.get("variant"))
        else:
            plat = host_platform_default()
    cfg["os"], cfg["architecture"] = plat.os, plat.architecture
    if plat.variant:
        cfg["variant"] = plat.variant
    else:
        cfg.pop("variant", None)
    cfg["created"] = _created(build.created_epoch)
    section = cfg.setdefault("config", {})
    if not section.get("Env") and plat.os == "linux":
        section["Env"] = [DEFAULT_ENV_PATH]
    for key in [k for k, v in section.items() if v in (None, {}, [])]:
        if key not in ("Cmd", "Entrypoint"):
            del section[key]
    cfg["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    history = list(cfg.get("history") or [])
    for item in stage.history:
        history.append({"created": cfg["created"], **item})
    if len(layers) > len(stage.base.layers):
        history.append({"created": cfg["created"], "created_by": "wasmlab build",
                        "comment": "squashed layer"})
    cfg["history"] = history
    return cfg


def _pairs(value: Mapping[str, str] | Sequence[str] | None, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for item in value:
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise BuildError(f"invalid {what} {item!r}", f"write {what}s as KEY=VALUE")
        out[key] = val
    return out


def find_containerfile(context: Path, containerfile: str | os.PathLike[str] | None) -> Path:
    """The Containerfile to use: the given path, else ``Containerfile`` or ``Dockerfile`` in CONTEXT."""
    if containerfile is not None:
        given = Path(containerfile)
        for cand in (given, context / given):
            if cand.is_file():
                return cand
        raise BuildError(f"Containerfile {str(containerfile)!r} not found",
                         "pass the path of an existing file with -f")
    for name in CONTAINERFILES:
        cand = context / name
        if cand.is_file():
            return cand
    raise BuildError(f"no Containerfile or Dockerfile in {context}",
                     "create one (FROM scratch / COPY hello.wasm / / CMD [\"/hello.wasm\"]) or pass -f PATH")


def build(context_dir: str | os.PathLike[str], containerfile: str | os.PathLike[str] | None = None, *,
          tag: str | None = None, annotations: Mapping[str, str] | Sequence[str] | None = None,
          labels: Mapping[str, str] | Sequence[str] | None = None, platform: str | None = None,
          build_args: Mapping[str, str] | Sequence[str] | None = None,
          progress: BuildProgress | None = None, run_step: RunStep | None = None,
          store: ImageStore | None = None, target: str | None = None, compression: str = "none",
          timestamp: int | None = None, limits: ExtractLimits | None = None,
          tmpdir: str | None = None, runtime: ContainerRuntime | None = None,
          run_output: int | RunOutput = 2) -> BuildResult:
    """Build an image from CONTEXT_DIR and store it; returns its name, digest and ID.

    ``annotations`` go into the manifest (e.g. ``module.wasm.image/variant=compat``),
    ``labels`` into the config. ``platform="wasi/wasm"`` marks a Wasm image
    (os ``wasip1``, architecture ``wasm``). ``run_step`` runs RUN instructions; without one,
    they run in containers of RUNTIME (a :class:`wasmlab.runtime.lifecycle.Runtime`), their
    output going to RUN_OUTPUT (a file descriptor, or ``on_output(argv, chunk)``).
    ``timestamp`` (or ``$SOURCE_DATE_EPOCH``) fixes the creation time for reproducible builds.
    ``tmpdir`` puts the work folder there instead of in the store's ``.wasmlab/work``.
    On any failure the store is unchanged; a full disk raises DiskFull.
    """
    store = store or ImageStore()
    with stopping_cleanly(), writing_into(store.root):
        return _build(context_dir, containerfile, tag=tag, annotations=annotations, labels=labels,
                      platform=platform, build_args=build_args, progress=progress, run_step=run_step,
                      store=store, target=target, compression=compression, timestamp=timestamp,
                      limits=limits, tmpdir=tmpdir, runtime=runtime, run_output=run_output)


def _build(context_dir: str | os.PathLike[str], containerfile: str | os.PathLike[str] | None, *,
           tag: str | None, annotations: Mapping[str, str] | Sequence[str] | None,
           labels: Mapping[str, str] | Sequence[str] | None, platform: str | None,
           build_args: Mapping[str, str] | Sequence[str] | None, progress: BuildProgress | None,
           run_step: RunStep | None, store: ImageStore, target: str | None, compression: str,
           timestamp: int | None, limits: ExtractLimits | None, tmpdir: str | None,
           runtime: ContainerRuntime | None, run_output: int | RunOutput) -> BuildResult:
    started = time.perf_counter()
    context = Path(context_dir)
    if not context.is_dir():
        raise BuildError(f"build context {context} is not a directory",
                         "pass the directory holding your files")
    name = normalize(tag) if tag else None
    plat = parse_platform(platform)
    extra_annotations = _pairs(annotations, "annotation")
    check_variant(extra_annotations, BuildError)  # a typo (compatt) is refused here, not when the image runs
    extra_labels = _pairs(labels, "label")
    path = find_containerfile(context, containerfile)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read {path}: {exc}", "check the file is readable UTF-8 text") from None
    parsed = cf.parse(text, source=path.name)
    if timestamp is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        timestamp = int(os.environ["SOURCE_DATE_EPOCH"])
    # A killed build's or load's work (and RUN containers) goes now, before this one adds its own.
    sweep_work(store)
    job = _Build(store, context, parsed, build_args=_pairs(build_args, "build argument"), platform=plat,
                 run_step=run_step, progress=progress, compression=compression,
                 timestamp=timestamp or 0, limits=limits or ExtractLimits(), tmpdir=tmpdir,
                 created_epoch=timestamp)
    if run_step is None and runtime is not None:
        job.set_run_step(ContainerRunStep(runtime, job.work, run_output))
    try:
        final = job.run(target)
        layers = final.layers()
        config = _finish_config(final, job)
        if extra_labels:
            config["config"]["Labels"] = {**config["config"].get("Labels", {}), **extra_labels}
        config_bytes = canonical_json(config)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": descriptor(media.OCI_CONFIG, config_bytes),
            "layers": [layer.descriptor for layer in layers],
        }
        notes: dict[str, str] = {}
        if final.base.name and final.base.digest:
            notes[media.BASE_NAME] = final.base.name
            notes[media.BASE_DIGEST] = final.base.digest
        notes.update(extra_annotations)
        if notes:
            manifest["annotations"] = notes
        manifest_bytes = canonical_json(manifest)
        job.emit("note", "writing image")
        with store.transaction() as txn:
            for layer in layers:
                if layer.data is not None:
                    txn.put_blob(layer.data, layer.descriptor["digest"])
                elif layer.path is not None and not txn.has_blob(layer.descriptor["digest"]):
                    txn.put_file(layer.path, layer.descriptor["digest"])
            txn.put_blob(config_bytes)
            m = txn.put_blob(manifest_bytes)
            txn.add_image(m["digest"], name, media_type=media.OCI_MANIFEST, size=m["size"])
    finally:
        job.cleanup()
    size = len(manifest_bytes) + len(config_bytes) + sum(int(x.descriptor["size"]) for x in layers)
    result = BuildResult(name, digest_of(manifest_bytes), digest_of(config_bytes), size, len(layers),
                         config["os"], config["architecture"], dict(notes), time.perf_counter() - started)
    job.emit("commit", f"{name or '<none>'} {result.id[7:19]}")
    return result
