"""Image references: parsing ``[registry/]repo[:tag][@digest]`` and podman-style normalisation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wasmlab.runtime.errors import ImageError

DEFAULT_TAG = "latest"
LOCAL_REGISTRY = "localhost"
DOCKER_HUB = "docker.io"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")

_HINT = "image names look like localhost/mywasm-image:latest or quay.io/org/name:tag"


def is_digest(value: str) -> bool:
    """True for a digest string such as ``sha256:<64 hex>``."""
    return bool(_SHA256.match(value))


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``str()`` gives the full normalised form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the registry API calls the reference: the digest if any, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_registry(component: str) -> bool:
    return "." in component or ":" in component or component == LOCAL_REGISTRY or component.startswith("[")


def parse(text: str, *, default_registry: str = LOCAL_REGISTRY) -> Reference:
    """Parse and normalise an image reference, the way podman names local images.

    ``mywasm-image`` becomes ``localhost/mywasm-image:latest``; ``quay.io/x/y`` becomes
    ``quay.io/x/y:latest``; ``docker.io/alpine`` becomes ``docker.io/library/alpine:latest``.
    """
    raw = text.strip()
    if not raw:
        raise ImageError("the image name is empty", _HINT)
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageError(f"invalid digest in image reference {text!r}",
                             "digests look like sha256:<64 hex digits>")
    first, sep, rest = raw.partition("/")
    if sep and _looks_like_registry(first):
        registry, remainder = first, rest
        if not _HOST.match(registry):
            raise ImageError(f"invalid registry host {registry!r} in {text!r}", _HINT)
    else:
        registry, remainder = default_registry, raw
    tag = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.match(tag):
            raise ImageError(f"invalid tag {tag!r} in image reference {text!r}",
                             "tags use letters, digits, '_', '.' and '-' (at most 128 characters)")
    if not remainder:
        raise ImageError(f"image reference {text!r} has no repository name", _HINT)
    for component in remainder.split("/"):
        if not _COMPONENT.match(component):
            lower = "; repository names must be lowercase" if component.lower() != component else ""
            raise ImageError(f"invalid repository name {remainder!r} in {text!r}{lower}", _HINT)
    if registry == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, remainder, tag, digest)


def normalize(text: str) -> str:
    """The full normalised name as stored in the index: ``localhost/name:latest``."""
    return str(parse(text))


def has_registry(text: str) -> bool:
    """True if TEXT names its registry explicitly (``quay.io/...``, ``localhost/...``)."""
    first, sep, _ = text.partition("/")
    return bool(sep) and _looks_like_registry(first)
