"""The Kubernetes subset wasmlab plays (Pod, Deployment): YAML into dataclasses, each refusal naming its YAML path."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from wasmlab.runtime.errors import PodSpecError

if TYPE_CHECKING:
    import yaml

# kind -> the apiVersion Kubernetes serves it under.
KINDS = {"Pod": "v1", "Deployment": "apps/v1"}
DEFAULT_NAMESPACE = "default"
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")
EMPTY_DIR_MEDIA = ("", "Memory")
# Read and without effect here, but required by Kubernetes (a Deployment's selector must match its template's
# labels): listing them as ignored would warn on every valid Deployment.
SILENT_FIELDS = frozenset({"metadata.labels", "spec.selector", "spec.template.metadata.labels"})

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL = re.compile(rf"^{_LABEL}$")
DNS_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

# A Kubernetes quantity: a signed decimal number and one suffix (binary SI, decimal SI, or a decimal exponent).
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|m|k|M|G|T|P|E|)$")
_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
QUANTITY_HINT = ("write a number with an optional suffix, e.g. 512Mi, 1Gi, 100m (cpu), 0.5, 1e3 "
                 "(binary Ki Mi Gi Ti Pi Ei; decimal m k M G T P E)")
_MAX_DIGITS = 40
_MAX_EXPONENT = 40


class QuantityError(ValueError):
    """Raised by parse_quantity; the model turns it into a PodSpecError naming the YAML path."""


def parse_quantity(value: object) -> Fraction:
    """A Kubernetes resource quantity (`1Gi`, `512Mi`, `100m`, `0.5`, `1e3`) as an exact number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuantityError(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, float) and not math.isfinite(value):
        raise QuantityError(f"{value!r} is not a Kubernetes quantity")
    text = str(value) if not isinstance(value, str) else value
    m = _QUANTITY.match(text)
    if m is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity")
    sign, number, suffix = m.groups()
    if len(number) > _MAX_DIGITS:
        raise QuantityError(f"{text!r} has too many digits for a quantity")
    amount = Fraction(number if not number.endswith(".") else number[:-1])
    if suffix in _BINARY:
        amount *= _BINARY[suffix]
    else:
        exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r} is out of range for a quantity")
        amount *= Fraction(10) ** exponent
    return -amount if sign == "-" else amount


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    host_port: int | None = None
    host_ip: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class Resources:
    """resources.limits: memory in bytes and cpu in millicores, both rounded up as Kubernetes does."""

    memory_bytes: int | None = None
    cpu_millis: int | None = None


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    working_dir: str | None = None
    volume_mounts: tuple[VolumeMount, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    resources: Resources = Resources()
    init: bool = False


@dataclass(frozen=True)
class EmptyDir:
    size_limit_bytes: int | None = None
    medium: str = ""


@dataclass(frozen=True)
class HostPath:
    path: str
    type: str = ""


@dataclass(frozen=True)
class Volume:
    name: str
    empty_dir: EmptyDir | None = None
    host_path: HostPath | None = None


@dataclass(frozen=True)
class Pod:
    """One pod to play. A Deployment of n replicas gives n of these, named `<deployment>-pod-<i>` as podman 4.3."""

    name: str
    namespace: str
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[Volume, ...] = ()
    restart_policy: str = "Always"
    share_process_namespace: bool = False
    runtime_class_name: str | None = None
    kind: str = "Pod"
    owner: str | None = None  # the Deployment's name
    document: int = 0

    @property
    def identity(self) -> str:
        """A pod's Kubernetes namespace is part of its identity: `namespace/name`."""
        return f"{self.namespace}/{self.name}"

    @property
    def all_containers(self) -> tuple[Container, ...]:
        """Init containers first, in order, then the app containers."""
        return self.init_containers + self.containers

    def container(self, name: str) -> Container:
        for c in self.all_containers:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class PodFile:
    """What one YAML file holds: the pods, the fields wasmlab ignored, and the raw documents (for kube generate)."""

    source: str
    pods: tuple[Pod, ...]
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    documents: tuple[dict[str, Any], ...] = ()

    @property
    def warnings(self) -> list[str]:
        """One line for all ignored fields (as `podman kube play` warns), then the notes."""
        out = []
        if self.ignored:
            out.append(f"{self.source or 'the YAML'}: ignored {len(self.ignored)} field(s) wasmlab does not model: "
                       + ", ".join(self.ignored))
        out.extend(self.notes)
        return out


class _Document:
    """One YAML document being read: where errors point, and the fields left unread."""

    def __init__(self, source: str, index: int, count: int) -> None:
        self.source = source
        self.label = f"{source} (document {index + 1})" if count > 1 else source
        self.index = index
        self.ignored: list[str] = []
        self.notes: list[str] = []

    def fail(self, path: str, problem: str, hint: str = "") -> NoReturn:
        raise PodSpecError(path, problem, hint, source=self.label)


class _Fields:
    """One YAML mapping: each key read is consumed; `done` lists the others as ignored."""

    def __init__(self, doc: _Document, value: object, path: str, *, what: str = "a mapping") -> None:
        if not isinstance(value, dict):
            doc.fail(path or "(document)", f"must be {what}, got {_describe(value)}")
        self.doc = doc
        self.data: dict[Any, Any] = value
        self.path = path
        self.taken: set[Any] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        self.taken.add(key)
        return self.data.get(key)

    def done(self) -> None:
        for key in self.data:
            if key not in self.taken:
                path = self.at(str(key))
                if path not in SILENT_FIELDS:
                    self.doc.ignored.append(path)


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _string(doc: _Document, value: object, path: str, *, required: bool = False, hint: str = "") -> str | None:
    if value is None or value == "":
        if required:
            doc.fail(path, "is missing", hint)
        return None
    if not isinstance(value, str):
        doc.fail(path, f"must be a string, got {_describe(value)}", hint or "quote it in the YAML")
    return value


def _strings(doc: _Document, value: object, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        doc.fail(path, f"must be a list of strings, got {_describe(value)}", 'write it as ["/bin/sh", "-c", "..."]')
    for i, item in enumerate(value):
        if not isinstance(item, str):
            doc.fail(f"{path}[{i}]", f"must be a string, got {_describe(item)}", "quote it in the YAML")
    return tuple(value)


def _list(doc: _Document, value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        doc.fail(path, f"must be a list, got {_describe(value)}", "start each item with '- '")
    return value


def _bool(doc: _Document, value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        doc.fail(path, f"must be true or false, got {_describe(value)}")
    return value


def _port(doc: _Document, value: object, path: str, *, required: bool = False) -> int | None:
    if value is None:
        if required:
            doc.fail(path, "is missing", "give the port the program listens on, e.g. containerPort: 8080")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        doc.fail(path, f"must be a port number from 1 to 65535, got {_describe(value)}")
    return value


def _dns_name(doc: _Document, value: object, path: str, what: str, *, subdomain: bool = False) -> str:
    name = _string(doc, value, path, required=True, hint=f"give the {what} a name, e.g. name: app")
    assert name is not None
    pattern, limit = (DNS_SUBDOMAIN, 253) if subdomain else (DNS_LABEL, 63)
    if len(name) > limit or not pattern.match(name):
        kind = "DNS-1123 subdomain" if subdomain else "DNS-1123 label"
        doc.fail(path, f"{name!r} is not a valid {what} name (a {kind})",
                 f"use lowercase letters, digits and '-'{', and dots' if subdomain else ''}, starting and ending "
                 f"with a letter or digit, at most {limit} characters")
    return name


def _quantity(doc: _Document, value: object, path: str) -> Fraction:
    try:
        amount = parse_quantity(value)
    except QuantityError as exc:
        doc.fail(path, str(exc), QUANTITY_HINT)
    if amount < 0:
        doc.fail(path, f"{value!r} is negative", "a limit is zero or more")
    return amount


def _annotations(doc: _Document, value: object, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        doc.fail(path, f"must be a mapping of key: value, got {_describe(value)}")
    out: dict[str, str] = {}
    for key, val in value.items():
        where = f"{path}[{key!r}]"
        if not isinstance(key, str) or not _qualified_key(key):
            doc.fail(where, f"{key!r} is not a valid annotation key",
                     "an optional DNS prefix and '/', then letters, digits, '-', '_' or '.' (e.g. "
                     "module.wasm.image/variant)")
        if not isinstance(val, str):
            doc.fail(where, f"the value must be a string, got {_describe(val)}", f'quote it: {key}: "{val}"')
        out[key] = val
    return out


def _qualified_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _container(doc: _Document, value: object, path: str, *, init: bool) -> Container:
    f = _Fields(doc, value, path, what="a container (a mapping with name and image)")
    name = _dns_name(doc, f.get("name"), f.at("name"), "container")
    image = _string(doc, f.get("image"), f.at("image"), required=True,
                    hint="name the image to run, e.g. image: wasmlab/hello:compat (see `wasmlab images`)")
    assert image is not None
    if image != image.strip() or any(c.isspace() for c in image):
        doc.fail(f.at("image"), f"{image!r} is not an image name", "an image name has no spaces")
    env: list[EnvVar] = []
    for i, item in enumerate(_list(doc, f.get("env"), f.at("env"))):
        e = _Fields(doc, item, f"{f.at('env')}[{i}]", what="a mapping with name and value")
        env_name = _string(doc, e.get("name"), e.at("name"), required=True, hint="e.g. - name: GREETING")
        assert env_name is not None
        if not _ENV_NAME.match(env_name):
            doc.fail(e.at("name"), f"{env_name!r} is not a valid environment variable name",
                     "letters, digits, '_', '-' and '.', not starting with a digit")
        has_value_from = "valueFrom" in e.data
        env_value = e.get("value")
        if env_value is not None and not isinstance(env_value, str):
            doc.fail(e.at("value"), f"must be a string, got {_describe(env_value)}",
                     f'quote it: value: "{env_value}"')
        e.done()  # valueFrom is listed as ignored here
        if env_value is not None or not has_value_from:
            env.append(EnvVar(env_name, env_value or ""))
    mounts: list[VolumeMount] = []
    for i, item in enumerate(_list(doc, f.get("volumeMounts"), f.at("volumeMounts"))):
        m = _Fields(doc, item, f"{f.at('volumeMounts')}[{i}]", what="a mapping with name and mountPath")
        vname = _string(doc, m.get("name"), m.at("name"), required=True, hint="name a volume of spec.volumes")
        mount_path = _string(doc, m.get("mountPath"), m.at("mountPath"), required=True,
                             hint="where the volume appears in the container, e.g. mountPath: /data")
        assert vname is not None and mount_path is not None
        if not mount_path.startswith("/"):
            doc.fail(m.at("mountPath"), f"{mount_path!r} is not an absolute path", "start it with '/'")
        if any(existing.mount_path.rstrip("/") == mount_path.rstrip("/") for existing in mounts):
            doc.fail(m.at("mountPath"), f"{mount_path!r} is mounted twice in this container",
                     "give each volumeMount its own mountPath")
        mounts.append(VolumeMount(vname, mount_path, _bool(doc, m.get("readOnly"), m.at("readOnly"))))
        m.done()
    ports: list[ContainerPort] = []
    for i, item in enumerate(_list(doc, f.get("ports"), f.at("ports"))):
        p = _Fields(doc, item, f"{f.at('ports')}[{i}]", what="a mapping with containerPort")
        container_port = _port(doc, p.get("containerPort"), p.at("containerPort"), required=True)
        assert container_port is not None
        protocol = p.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            doc.fail(p.at("protocol"), f"{protocol!r} is not a protocol", f"one of {', '.join(PROTOCOLS)}")
        ports.append(ContainerPort(container_port, _port(doc, p.get("hostPort"), p.at("hostPort")),
                                   _string(doc, p.get("hostIP"), p.at("hostIP")), protocol))
        p.done()
    resources = Resources()
    if f.get("resources") is not None:
        r = _Fields(doc, f.data["resources"], f.at("resources"))
        if r.get("limits") is not None:
            lim = _Fields(doc, r.data["limits"], r.at("limits"))
            memory = lim.get("memory")
            cpu = lim.get("cpu")
            resources = Resources(
                memory_bytes=None if memory is None else math.ceil(_quantity(doc, memory, lim.at("memory"))),
                cpu_millis=None if cpu is None else math.ceil(_quantity(doc, cpu, lim.at("cpu")) * 1000))
            lim.done()
        r.done()
    container = Container(
        name=name, image=image,
        command=_strings(doc, f.get("command"), f.at("command")),
        args=_strings(doc, f.get("args"), f.at("args")),
        env=tuple(env),
        working_dir=_string(doc, f.get("workingDir"), f.at("workingDir")),
        volume_mounts=tuple(mounts), ports=tuple(ports), resources=resources, init=init)
    f.done()
    return container


def _volume(doc: _Document, value: object, path: str, allow_host_path: bool) -> Volume:
    f = _Fields(doc, value, path, what="a volume (a mapping with name and emptyDir or hostPath)")
    name = _dns_name(doc, f.get("name"), f.at("name"), "volume")
    sources = [k for k in f.data if k != "name"]
    known = [k for k in sources if k in ("emptyDir", "hostPath")]
    other = [k for k in sources if k not in ("emptyDir", "hostPath")]
    if other and not known:
        doc.fail(f.at(str(other[0])), f"{other[0]} volumes are not supported",
                 "use emptyDir (a folder the pod's containers share) or hostPath (with --allow-host-path)")
    if len(known) > 1:
        doc.fail(path, "has both emptyDir and hostPath", "a volume has one source: keep one of them")
    if "hostPath" in known:
        h = _Fields(doc, f.get("hostPath"), f.at("hostPath"), what="a mapping with path")
        if not allow_host_path:
            doc.fail(f.at("hostPath"), "hostPath volumes give a container the host's own files, refused",
                     "pass --allow-host-path if you mean it (allow_host_path=True through the API), "
                     "or use emptyDir: {}")
        host = _string(doc, h.get("path"), h.at("path"), required=True, hint="path: /absolute/folder/on/the/host")
        assert host is not None
        if not host.startswith("/"):
            doc.fail(h.at("path"), f"{host!r} is not an absolute path", "start it with '/'")
        htype = h.get("type") or ""
        if htype not in HOST_PATH_TYPES:
            doc.fail(h.at("type"), f"{htype!r} is not a hostPath type", f"one of {', '.join(HOST_PATH_TYPES[1:])}")
        h.done()
        f.done()
        return Volume(name, host_path=HostPath(host, htype))
    # No source at all is an emptyDir, as the API server defaults it.
    raw = f.get("emptyDir") if "emptyDir" in known else None
    e = _Fields(doc, raw if raw is not None else {}, f.at("emptyDir"))
    size = e.get("sizeLimit")
    medium = e.get("medium") or ""
    if medium not in EMPTY_DIR_MEDIA:
        doc.fail(e.at("medium"), f"{medium!r} is not an emptyDir medium", 'use "" (disk) or "Memory" (a tmpfs)')
    empty = EmptyDir(None if size is None else math.ceil(_quantity(doc, size, e.at("sizeLimit"))), medium)
    e.done()
    f.done()
    return Volume(name, empty_dir=empty)


@dataclass(frozen=True)
class _PodSpec:
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]
    restart_policy: str
    share_process_namespace: bool
    runtime_class_name: str | None


def _pod_spec(doc: _Document, value: object, path: str, allow_host_path: bool) -> _PodSpec:
    f = _Fields(doc, value, path, what="a pod spec (a mapping with containers)")
    volumes: list[Volume] = []
    seen_volumes: dict[str, str] = {}
    for i, item in enumerate(_list(doc, f.get("volumes"), f.at("volumes"))):
        vol = _volume(doc, item, f"{f.at('volumes')}[{i}]", allow_host_path)
        if vol.name in seen_volumes:
            doc.fail(f"{f.at('volumes')}[{i}].name", f"volume name {vol.name!r} is used twice "
                     f"(also at {seen_volumes[vol.name]})", "give each volume its own name")
        seen_volumes[vol.name] = f"{f.at('volumes')}[{i}].name"
        volumes.append(vol)
    seen: dict[str, str] = {}
    groups: dict[str, list[Container]] = {"initContainers": [], "containers": []}
    for key, items in (("initContainers", f.get("initContainers")), ("containers", f.get("containers"))):
        for i, item in enumerate(_list(doc, items, f.at(key))):
            where = f"{f.at(key)}[{i}]"
            c = _container(doc, item, where, init=key == "initContainers")
            if c.name in seen:
                doc.fail(f"{where}.name", f"container name {c.name!r} is used twice (also at {seen[c.name]})",
                         "every container of a pod, init containers included, needs its own name")
            seen[c.name] = f"{where}.name"
            for j, mount in enumerate(c.volume_mounts):
                if mount.name not in seen_volumes:
                    declared = ", ".join(seen_volumes) or "none"
                    doc.fail(f"{where}.volumeMounts[{j}].name",
                             f"volume {mount.name!r} is not declared in {f.at('volumes')} (declared: {declared})",
                             f"declare it: volumes: [{{name: {mount.name}, emptyDir: {{}}}}]")
            groups[key].append(c)
    if not groups["containers"]:
        doc.fail(f.at("containers"), "a pod needs at least one container",
                 "add containers: [{name: app, image: wasmlab/hello:compat}]")
    policy = f.get("restartPolicy") or "Always"
    if policy not in RESTART_POLICIES:
        doc.fail(f.at("restartPolicy"), f"{policy!r} is not a restart policy", f"one of {', '.join(RESTART_POLICIES)}")
    runtime_class = f.get("runtimeClassName")
    spec = _PodSpec(
        containers=tuple(groups["containers"]), init_containers=tuple(groups["initContainers"]),
        volumes=tuple(volumes), restart_policy=policy,
        share_process_namespace=_bool(doc, f.get("shareProcessNamespace"), f.at("shareProcessNamespace")),
        runtime_class_name=None if runtime_class is None else _dns_name(
            doc, runtime_class, f.at("runtimeClassName"), "RuntimeClass", subdomain=True))
    f.done()
    return spec


def _metadata(doc: _Document, value: object, path: str, what: str) -> tuple[str, str, dict[str, str]]:
    m = _Fields(doc, value, path, what="a mapping with name (and namespace, annotations)")
    name = _dns_name(doc, m.get("name"), m.at("name"), what, subdomain=True)
    namespace = DEFAULT_NAMESPACE
    if m.get("namespace") is not None:
        namespace = _dns_name(doc, m.data["namespace"], m.at("namespace"), "namespace")
    annotations = _annotations(doc, m.get("annotations"), m.at("annotations"))
    m.done()
    return name, namespace, annotations


def _object(doc: _Document, data: object, allow_host_path: bool) -> list[Pod]:
    top = _Fields(doc, data, "", what="a Kubernetes object (a mapping with apiVersion, kind, metadata and spec)")
    kind = top.get("kind")
    supported = ", ".join(KINDS)
    if kind is None:
        doc.fail("kind", f"is missing (supported kinds: {supported})", "write kind: Pod")
    if kind not in KINDS:
        doc.fail("kind", f"{kind!r} is not supported (supported kinds: {supported})",
                 f"wasmlab plays {supported}; write kind: Pod")
    api = top.get("apiVersion")
    if api != KINDS[kind]:
        doc.fail("apiVersion", f"kind {kind} is served as apiVersion {KINDS[kind]}, got {_describe(api)}",
                 f"write apiVersion: {KINDS[kind]}")
    if top.get("metadata") is None:
        doc.fail("metadata", "is missing", "give the object metadata: {name: ...}")
    name, namespace, annotations = _metadata(doc, top.data["metadata"], "metadata", kind)
    if top.get("spec") is None:
        doc.fail("spec", "is missing",
                 "a Pod needs spec.containers" if kind == "Pod" else "a Deployment needs spec.template")
    if kind == "Pod":
        spec = _pod_spec(doc, top.data["spec"], "spec", allow_host_path)
        top.done()
        return [Pod(name=name, namespace=namespace, annotations=annotations, containers=spec.containers,
                    init_containers=spec.init_containers, volumes=spec.volumes, restart_policy=spec.restart_policy,
                    share_process_namespace=spec.share_process_namespace,
                    runtime_class_name=spec.runtime_class_name, document=doc.index)]
    d = _Fields(doc, top.data["spec"], "spec", what="a Deployment spec (a mapping with template)")
    replicas = d.get("replicas")
    if replicas is None:
        replicas = 1
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        doc.fail("spec.replicas", f"must be a whole number, 0 or more, got {_describe(replicas)}")
    d.get("selector")
    if d.get("template") is None:
        doc.fail("spec.template", "is missing", "a Deployment's pods come from spec.template: {metadata, spec}")
    t = _Fields(doc, d.data["template"], "spec.template", what="a pod template (a mapping with metadata and spec)")
    pod_annotations: dict[str, str] = {}
    if t.get("metadata") is not None:
        tm = _Fields(doc, t.data["metadata"], "spec.template.metadata")
        pod_annotations = _annotations(doc, tm.get("annotations"), tm.at("annotations"))
        tm.done()
    if t.get("spec") is None:
        doc.fail("spec.template.spec", "is missing", "the pod template needs spec.containers")
    spec = _pod_spec(doc, t.data["spec"], "spec.template.spec", allow_host_path)
    t.done()
    d.done()
    top.done()
    if annotations:
        doc.notes.append(
            f"{doc.label}: Deployment {name}: metadata.annotations ({', '.join(annotations)}) stay on the Deployment; "
            "its pods get only spec.template.metadata.annotations, so move them there")
    longest = f"{name}-pod-{max(replicas - 1, 0)}"
    if len(longest) > 253:
        doc.fail("metadata.name", f"the pod names {name}-pod-N would be longer than 253 characters",
                 "shorten the Deployment's name")
    return [Pod(name=f"{name}-pod-{i}", namespace=namespace, annotations=dict(pod_annotations),
                containers=spec.containers, init_containers=spec.init_containers, volumes=spec.volumes,
                restart_policy=spec.restart_policy, share_process_namespace=spec.share_process_namespace,
                runtime_class_name=spec.runtime_class_name, kind="Deployment", owner=name, document=doc.index)
            for i in range(replicas)]


@cache
def _strict_loader() -> Any:
    """PyYAML's safe loader, refusing a key given twice in one mapping (the API server refuses it too). Its
    parser is libyaml's where PyYAML has it (about 1.5 ms less per pod file); the construction stays Python.
    Made on the first parse: the model alone (`pod ps`, `pod inspect`) never imports yaml (issue 16, quickverbs)."""
    import yaml

    class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # left to the constructor, which refuses unhashable keys with its own message
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
        return mapping

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)
    return _StrictLoader


def parse_pods(text: str, *, source: str = "", allow_host_path: bool = False) -> PodFile:
    """Every Pod and Deployment of a (multi-document) YAML text, or a PodSpecError naming the first problem."""
    import yaml

    label = source or "the YAML"
    try:
        documents = [d for d in yaml.load_all(text, Loader=_strict_loader()) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "").split())
        raise PodSpecError("", f"invalid YAML{at}: {problem}",
                           "indent with spaces (never tabs), write each key as 'key: value', and quote values "
                           "that hold ': ' or start with a special character", source=label) from None
    except yaml.YAMLError as exc:
        raise PodSpecError("", f"invalid YAML: {' '.join(str(exc).split())}",
                           "check the file is YAML text", source=label) from None
    if not documents:
        raise PodSpecError("", "holds no Kubernetes object", "write a Pod: apiVersion: v1, kind: Pod, metadata, spec",
                           source=label)
    pods: list[Pod] = []
    ignored: list[str] = []
    notes: list[str] = []
    for index, data in enumerate(documents):
        doc = _Document(label, index, len(documents))
        found = _object(doc, data, allow_host_path)
        prefix = ""
        if len(documents) > 1 and isinstance(data, dict):
            prefix = f"{data.get('kind')} {(data.get('metadata') or {}).get('name')}: "
        ignored.extend(prefix + path for path in doc.ignored)
        notes.extend(doc.notes)
        pods.extend(found)
    identities: dict[str, int] = {}
    for pod in pods:
        if pod.identity in identities:
            raise PodSpecError("metadata.name", f"pod {pod.identity} is defined twice (documents "
                               f"{identities[pod.identity] + 1} and {pod.document + 1})",
                               "give each pod its own name, or put them in different namespaces", source=label)
        identities[pod.identity] = pod.document
    return PodFile(source=source, pods=tuple(pods), ignored=tuple(ignored), notes=tuple(notes),
                   documents=tuple(documents))


def load_pods(path: str | os.PathLike[str], *, allow_host_path: bool = False) -> PodFile:
    """parse_pods on a file; a file that cannot be read is a PodSpecError too."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PodSpecError("", "is not UTF-8 text", "Kubernetes YAML is a text file", source=str(path)) from None
    except OSError as exc:
        raise PodSpecError("", f"cannot be read: {exc.strerror or exc}", "check the path", source=str(path)) from None
    return parse_pods(text, source=str(path), allow_host_path=allow_host_path)
