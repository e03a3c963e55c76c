"""Annotation propagation as each node runtime does it: CRI-O (pod annotations reach every container) and containerd
(only pod annotations matched by the pod_annotations allowlist, with Go's path.Match); image annotations never do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wasmlab.runtime.errors import BadPattern, UsageError
from wasmlab.runtime.spec.pod import Container, Pod

PROPAGATIONS = ("crio", "containerd")
DEFAULT_PROPAGATION = "crio"
# What works, unlike the seed's ["module.wasm.image/variant.*"] (measured with containerd 1.6.20).
DEFAULT_POD_ANNOTATIONS = ("module.wasm.image/*",)
ORIGINS = ("pod", "image", "lab")
ROLES = ("sandbox", "init", "container")

# What each CRI adds to every container's config.json itself: the container type (crun runs a `sandbox` natively),
# and who the container is.
_CRI_KEYS = {
    "crio": {"type": "io.kubernetes.cri-o.ContainerType", "pod": "io.kubernetes.pod.name",
             "namespace": "io.kubernetes.pod.namespace", "container": "io.kubernetes.container.name",
             "image": "io.kubernetes.cri-o.ImageName"},
    "containerd": {"type": "io.kubernetes.cri.container-type", "pod": "io.kubernetes.cri.sandbox-name",
                   "namespace": "io.kubernetes.cri.sandbox-namespace", "container": "io.kubernetes.cri.container-name",
                   "image": "io.kubernetes.cri.image-name"},
}
_IMAGE_REASON = ("image annotations never reach the runtime under a CRI (cri-o issue 6906; containerd's CRI "
                 "neither); only the pod's annotations do")


# Go's path.Match (src/path/match.go), on code points: '*' is any run of non-'/' characters, '?' one non-'/'
# character, '[...]' / '[^...]' a class of characters and ranges, '\\' escapes; a malformed pattern is ErrBadPattern.
class _ErrBadPattern(Exception):
    pass


def path_match(pattern: str, name: str) -> bool:
    """Whether name matches the whole of pattern, as Go's path.Match answers; BadPattern where Go says ErrBadPattern."""
    try:
        return _match(pattern, name)
    except _ErrBadPattern:
        raise BadPattern(f"{pattern!r} is not a valid pattern (Go's path.Match: syntax error in pattern)",
                         "close every '[' with ']', escape '-' and ']' inside [...] with '\\', and do not end with "
                         "a lone '\\'") from None


def _match(pattern: str, name: str) -> bool:
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return "/" not in name  # a trailing '*' takes the rest, unless it holds a '/'
        rest, ok = _match_chunk(chunk, name)
        if ok and (not rest or pattern):
            name = rest
            continue
        if star:
            # '*' takes 1, 2, ... more characters, never a '/'.
            skipped = False
            for i in range(len(name)):
                if name[i] == "/":
                    break
                rest, ok = _match_chunk(chunk, name[i + 1:])
                if ok:
                    if not pattern and rest:
                        continue  # the last chunk must use up the name
                    name, skipped = rest, True
                    break
            if skipped:
                continue
        # No match: still refuse a malformed remainder, as Go does.
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return not name


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    """The leading stars, then the text up to the next '*' outside a class."""
    stripped = pattern.lstrip("*")
    star = len(stripped) != len(pattern)
    in_class = False
    i = 0
    while i < len(stripped):
        c = stripped[i]
        if c == "\\":
            i += 1 if i + 1 < len(stripped) else 0
        elif c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "*" and not in_class:
            return star, stripped[:i], stripped[i:]
        i += 1
    return star, stripped, ""


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """Match a star-free chunk at the start of s: (what is left of s, matched). Reads the whole chunk even after a
    mismatch, so a malformed chunk is always refused."""
    failed = False
    i = 0
    while i < len(chunk):
        if not failed and not s:
            failed = True
        c = chunk[i]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            i += 1
            negated = i < len(chunk) and chunk[i] == "^"
            if negated:
                i += 1
            matched = False
            ranges = 0
            while True:
                if i < len(chunk) and chunk[i] == "]" and ranges > 0:
                    i += 1
                    break
                lo, i = _class_char(chunk, i)
                hi = lo
                if chunk[i] == "-":
                    hi, i = _class_char(chunk, i + 1)
                if not failed and lo <= r <= hi:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                failed = s[0] == "/"
                s = s[1:]
            i += 1
        else:
            if c == "\\":
                i += 1
                if i >= len(chunk):
                    raise _ErrBadPattern
                c = chunk[i]
            if not failed:
                failed = c != s[0]
                s = s[1:]
            i += 1
    return ("", False) if failed else (s, True)


def _class_char(chunk: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a class; something must follow it (at least the closing ']')."""
    if i >= len(chunk) or chunk[i] in "-]":
        raise _ErrBadPattern
    if chunk[i] == "\\":
        i += 1
        if i >= len(chunk):
            raise _ErrBadPattern
    if i + 1 >= len(chunk):
        raise _ErrBadPattern
    return chunk[i], i + 1


@dataclass(frozen=True)
class AnnotationTrace:
    """One annotation a container could see: its origin, whether it reaches the container's config.json, and why."""

    key: str
    value: str
    origin: str  # "pod", "image" or "lab" (what the CRI itself adds)
    passed: bool
    reason: str
    allowed_by: str | None = None  # containerd: the pod_annotations entry that let it through


@dataclass(frozen=True)
class ContainerAnnotations:
    """Every annotation of one container of a pod (the sandbox too), as the chosen node runtime would pass them."""

    name: str
    role: str  # "sandbox", "init" or "container"
    image: str | None
    traces: tuple[AnnotationTrace, ...]

    @property
    def annotations(self) -> dict[str, str]:
        """What reaches the runtime: the config.json annotations."""
        return {t.key: t.value for t in self.traces if t.passed}

    def trace(self, key: str) -> AnnotationTrace:
        for t in self.traces:
            if t.key == key:
                return t
        raise KeyError(key)


@dataclass(frozen=True)
class PodAnnotations:
    """The propagation of one pod: its sandbox, its containers (init containers first) and the warnings."""

    pod: str  # namespace/name
    propagation: str
    pod_annotations: tuple[str, ...]  # containerd's allowlist; empty for crio
    sandbox: ContainerAnnotations
    containers: tuple[ContainerAnnotations, ...]
    warnings: tuple[str, ...] = field(default=())

    def container(self, name: str) -> ContainerAnnotations:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)


def check_propagation(propagation: str, pod_annotations: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    """The mode and the allowlist, checked once before any pod: a malformed entry is refused (containerd itself
    ignores path.Match's error, so such an entry silently matches nothing there)."""
    if propagation not in PROPAGATIONS:
        raise UsageError(f"unknown propagation {propagation!r}",
                         f"use one of {', '.join(PROPAGATIONS)} (how CRI-O or containerd pass pod annotations on)")
    allowlist = tuple(DEFAULT_POD_ANNOTATIONS if pod_annotations is None else pod_annotations)
    if propagation == "crio":
        return propagation, ()
    for entry in allowlist:
        try:
            path_match(entry, "")
        except BadPattern as exc:
            raise BadPattern(f"pod_annotations entry {exc.message}",
                             exc.hint + "; containerd would ignore the error and match nothing with it") from None
    return propagation, allowlist


def propagate(pod: Pod, *, propagation: str = DEFAULT_PROPAGATION, pod_annotations: Sequence[str] | None = None,
              image_annotations: Mapping[str, Mapping[str, str]] | None = None) -> PodAnnotations:
    """What each container of the pod would see under CRI-O or containerd. image_annotations maps an image name to
    its manifest annotations (listed, never passed on); pod_annotations is containerd's allowlist (default
    module.wasm.image/*)."""
    mode, allowlist = check_propagation(propagation, pod_annotations)
    images = image_annotations or {}
    decisions = {key: _decide(mode, allowlist, key) for key in pod.annotations}

    def traces(name: str, role: str, container: Container | None) -> ContainerAnnotations:
        out = []
        for key, value in pod.annotations.items():
            passed, allowed_by, reason = decisions[key]
            out.append(AnnotationTrace(key, value, "pod", passed, reason, allowed_by))
        if container is not None:
            for key, value in (images.get(container.image) or {}).items():
                out.append(AnnotationTrace(key, value, "image", False, _IMAGE_REASON))
        keys = _CRI_KEYS[mode]
        cri = {keys["type"]: "sandbox" if role == "sandbox" else "container",
               keys["pod"]: pod.name, keys["namespace"]: pod.namespace}
        if container is not None:
            cri[keys["container"]] = container.name
            cri[keys["image"]] = container.image
        who = "CRI-O" if mode == "crio" else "containerd's CRI"
        for key, value in cri.items():
            out.append(AnnotationTrace(key, value, "lab", True, f"{who} sets it on every {role} it creates"))
        return ContainerAnnotations(name, role, None if container is None else container.image, tuple(out))

    containers = tuple(traces(c.name, "init" if c.init else "container", c) for c in pod.all_containers)
    sandbox = traces(f"{pod.name}-infra", "sandbox", None)
    return PodAnnotations(pod=pod.identity, propagation=mode, pod_annotations=allowlist, sandbox=sandbox,
                          containers=containers, warnings=tuple(_warnings(pod, mode, allowlist, decisions)))


def _decide(mode: str, allowlist: tuple[str, ...], key: str) -> tuple[bool, str | None, str]:
    if mode == "crio":
        return True, None, "CRI-O passes every pod annotation to every container of the pod"
    for entry in allowlist:
        if path_match(entry, key):
            return True, entry, f"containerd's pod_annotations entry {entry!r} matches it"
    listed = ", ".join(repr(e) for e in allowlist) or "empty"
    return False, None, f"no pod_annotations entry matches it (allowlist: {listed}; path.Match: '*' never crosses '/')"


def _warnings(pod: Pod, mode: str, allowlist: tuple[str, ...],
              decisions: Mapping[str, tuple[bool, str | None, str]]) -> list[str]:
    """containerd: one line per allowlist entry that lets nothing of this pod through while something is held back,
    with the entry that would work."""
    if mode != "containerd":
        return []
    blocked = [key for key, (passed, _, _) in decisions.items() if not passed]
    if not blocked:
        return []
    out = []
    for entry in allowlist:
        if any(path_match(entry, key) for key in pod.annotations):
            continue
        key = max(blocked, key=lambda k: (_common_prefix(entry, k), k))
        prefix, slash, _ = key.rpartition("/")
        fix = f"{prefix}/*" if slash else key
        out.append(f"pod {pod.identity}: containerd pod_annotations entry {entry!r} matches no annotation of the "
                   f"pod, so {key!r} never reaches its containers (path.Match needs the whole key, and '*' never "
                   f"crosses '/'); fix: pod_annotations = [\"{fix}\"]")
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
