"""A minimal CRI v1 client (the kubelet's side of runtime.v1 RuntimeService/ImageService) over a unix socket, its
messages built at import time from a descriptor written here (field numbers from kubernetes/cri-api's api.proto)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import CriError, SetupError

PACKAGE = "runtime.v1"

# The wire protocol's facts: (message, [(field, number, type, label, message type or enum)]). Only the fields this
# lab sends or reads; protobuf skips unknown fields on the wire, so answers carrying more still parse.
_S, _B, _I32, _I64, _U32, _U64, _M, _E = "string", "bool", "int32", "int64", "uint32", "uint64", "message", "enum"
_ONE, _MANY, _MAP = "optional", "repeated", "map"
_MESSAGES: list[tuple[str, list[tuple[str, int, str, str, str]]]] = [
    ("VersionRequest", [("version", 1, _S, _ONE, "")]),
    ("VersionResponse", [("version", 1, _S, _ONE, ""), ("runtime_name", 2, _S, _ONE, ""),
                         ("runtime_version", 3, _S, _ONE, ""), ("runtime_api_version", 4, _S, _ONE, "")]),
    ("NamespaceOption", [("network", 1, _E, _ONE, "NamespaceMode"), ("pid", 2, _E, _ONE, "NamespaceMode"),
                         ("ipc", 3, _E, _ONE, "NamespaceMode"), ("target_id", 4, _S, _ONE, "")]),
    ("LinuxSandboxSecurityContext", [("namespace_options", 1, _M, _ONE, "NamespaceOption")]),
    ("LinuxPodSandboxConfig", [("cgroup_parent", 1, _S, _ONE, ""),
                               ("security_context", 2, _M, _ONE, "LinuxSandboxSecurityContext")]),
    ("PodSandboxMetadata", [("name", 1, _S, _ONE, ""), ("uid", 2, _S, _ONE, ""), ("namespace", 3, _S, _ONE, ""),
                            ("attempt", 4, _U32, _ONE, "")]),
    ("PodSandboxConfig", [("metadata", 1, _M, _ONE, "PodSandboxMetadata"), ("hostname", 2, _S, _ONE, ""),
                          ("log_directory", 3, _S, _ONE, ""), ("labels", 6, _S, _MAP, ""),
                          ("annotations", 7, _S, _MAP, ""), ("linux", 8, _M, _ONE, "LinuxPodSandboxConfig")]),
    ("RunPodSandboxRequest", [("config", 1, _M, _ONE, "PodSandboxConfig"), ("runtime_handler", 2, _S, _ONE, "")]),
    ("RunPodSandboxResponse", [("pod_sandbox_id", 1, _S, _ONE, "")]),
    ("StopPodSandboxRequest", [("pod_sandbox_id", 1, _S, _ONE, "")]),
    ("StopPodSandboxResponse", []),
    ("RemovePodSandboxRequest", [("pod_sandbox_id", 1, _S, _ONE, "")]),
    ("RemovePodSandboxResponse", []),
    ("ImageSpec", [("image", 1, _S, _ONE, ""), ("annotations", 2, _S, _MAP, "")]),
    ("KeyValue", [("key", 1, _S, _ONE, ""), ("value", 2, _S, _ONE, "")]),
    ("ContainerMetadata", [("name", 1, _S, _ONE, ""), ("attempt", 2, _U32, _ONE, "")]),
    ("ContainerConfig", [("metadata", 1, _M, _ONE, "ContainerMetadata"), ("image", 2, _M, _ONE, "ImageSpec"),
                         ("command", 3, _S, _MANY, ""), ("args", 4, _S, _MANY, ""), ("working_dir", 5, _S, _ONE, ""),
                         ("envs", 6, _M, _MANY, "KeyValue"), ("labels", 9, _S, _MAP, ""),
                         ("annotations", 10, _S, _MAP, ""), ("log_path", 11, _S, _ONE, "")]),
    ("CreateContainerRequest", [("pod_sandbox_id", 1, _S, _ONE, ""), ("config", 2, _M, _ONE, "ContainerConfig"),
                                ("sandbox_config", 3, _M, _ONE, "PodSandboxConfig")]),
    ("CreateContainerResponse", [("container_id", 1, _S, _ONE, "")]),
    ("StartContainerRequest", [("container_id", 1, _S, _ONE, "")]),
    ("StartContainerResponse", []),
    ("ContainerStatusRequest", [("container_id", 1, _S, _ONE, ""), ("verbose", 2, _B, _ONE, "")]),
    ("ContainerStatus", [("id", 1, _S, _ONE, ""), ("metadata", 2, _M, _ONE, "ContainerMetadata"),
                         ("state", 3, _E, _ONE, "ContainerState"), ("created_at", 4, _I64, _ONE, ""),
                         ("started_at", 5, _I64, _ONE, ""), ("finished_at", 6, _I64, _ONE, ""),
                         ("exit_code", 7, _I32, _ONE, ""), ("image", 8, _M, _ONE, "ImageSpec"),
                         ("image_ref", 9, _S, _ONE, ""), ("reason", 10, _S, _ONE, ""), ("message", 11, _S, _ONE, ""),
                         ("labels", 12, _S, _MAP, ""), ("annotations", 13, _S, _MAP, ""),
                         ("log_path", 15, _S, _ONE, "")]),
    ("ContainerStatusResponse", [("status", 1, _M, _ONE, "ContainerStatus"), ("info", 2, _S, _MAP, "")]),
    ("ContainerStateValue", [("state", 1, _E, _ONE, "ContainerState")]),
    ("ContainerFilter", [("id", 1, _S, _ONE, ""), ("state", 2, _M, _ONE, "ContainerStateValue"),
                         ("pod_sandbox_id", 3, _S, _ONE, ""), ("label_selector", 4, _S, _MAP, "")]),
    ("ListContainersRequest", [("filter", 1, _M, _ONE, "ContainerFilter")]),
    ("Container", [("id", 1, _S, _ONE, ""), ("pod_sandbox_id", 2, _S, _ONE, ""),
                   ("metadata", 3, _M, _ONE, "ContainerMetadata"), ("image", 4, _M, _ONE, "ImageSpec"),
                   ("image_ref", 5, _S, _ONE, ""), ("state", 6, _E, _ONE, "ContainerState"),
                   ("created_at", 7, _I64, _ONE, ""), ("labels", 8, _S, _MAP, ""), ("annotations", 9, _S, _MAP, "")]),
    ("ListContainersResponse", [("containers", 1, _M, _MANY, "Container")]),
    ("ImageStatusRequest", [("image", 1, _M, _ONE, "ImageSpec"), ("verbose", 2, _B, _ONE, "")]),
    ("Image", [("id", 1, _S, _ONE, ""), ("repo_tags", 2, _S, _MANY, ""), ("repo_digests", 3, _S, _MANY, ""),
               ("size", 4, _U64, _ONE, "")]),
    ("ImageStatusResponse", [("image", 1, _M, _ONE, "Image"), ("info", 2, _S, _MAP, "")]),
]
_ENUMS = {
    "NamespaceMode": [("POD", 0), ("CONTAINER", 1), ("NODE", 2), ("TARGET", 3)],
    "ContainerState": [("CONTAINER_CREATED", 0), ("CONTAINER_RUNNING", 1), ("CONTAINER_EXITED", 2),
                       ("CONTAINER_UNKNOWN", 3)],
}
# (service, method, request, response)
_METHODS = [
    ("RuntimeService", "Version", "VersionRequest", "VersionResponse"),
    ("RuntimeService", "RunPodSandbox", "RunPodSandboxRequest", "RunPodSandboxResponse"),
    ("RuntimeService", "StopPodSandbox", "StopPodSandboxRequest", "StopPodSandboxResponse"),
    ("RuntimeService", "RemovePodSandbox", "RemovePodSandboxRequest", "RemovePodSandboxResponse"),
    ("RuntimeService", "CreateContainer", "CreateContainerRequest", "CreateContainerResponse"),
    ("RuntimeService", "StartContainer", "StartContainerRequest", "StartContainerResponse"),
    ("RuntimeService", "ContainerStatus", "ContainerStatusRequest", "ContainerStatusResponse"),
    ("RuntimeService", "ListContainers", "ListContainersRequest", "ListContainersResponse"),
    ("ImageService", "ImageStatus", "ImageStatusRequest", "ImageStatusResponse"),
]
NAMESPACE_MODES = dict(_ENUMS["NamespaceMode"])
CONTAINER_STATES = {number: name for name, number in _ENUMS["ContainerState"]}


def file_descriptor() -> Any:
    """The FileDescriptorProto of this subset of runtime.v1 (api.proto's package), made in Python: no protoc."""
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto(name="wasmlab_cri_v1_subset.proto", package=PACKAGE, syntax="proto3")
    kinds = descriptor_pb2.FieldDescriptorProto
    scalar = {_S: kinds.TYPE_STRING, _B: kinds.TYPE_BOOL, _I32: kinds.TYPE_INT32, _I64: kinds.TYPE_INT64,
              _U32: kinds.TYPE_UINT32, _U64: kinds.TYPE_UINT64}
    for enum_name, values in _ENUMS.items():
        enum = fdp.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for message_name, fields in _MESSAGES:
        message = fdp.message_type.add(name=message_name)
        for name, number, kind, label, type_name in fields:
            if label == _MAP:  # map<string, string>: a repeated nested XxxEntry {key = 1; value = 2}
                entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
                entry = message.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=kinds.TYPE_STRING, label=kinds.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=kinds.TYPE_STRING, label=kinds.LABEL_OPTIONAL)
                message.field.add(name=name, number=number, type=kinds.TYPE_MESSAGE, label=kinds.LABEL_REPEATED,
                                  type_name=f".{PACKAGE}.{message_name}.{entry_name}")
                continue
            added = message.field.add(name=name, number=number,
                                      label=kinds.LABEL_REPEATED if label == _MANY else kinds.LABEL_OPTIONAL)
            if kind == _M:
                added.type, added.type_name = kinds.TYPE_MESSAGE, f".{PACKAGE}.{type_name}"
            elif kind == _E:
                added.type, added.type_name = kinds.TYPE_ENUM, f".{PACKAGE}.{type_name}"
            else:
                added.type = scalar[kind]
    for service_name in dict.fromkeys(m[0] for m in _METHODS):
        service = fdp.service.add(name=service_name)
        for owner, method, request, response in _METHODS:
            if owner == service_name:
                service.method.add(name=method, input_type=f".{PACKAGE}.{request}",
                                   output_type=f".{PACKAGE}.{response}")
    return fdp


def _message_classes() -> dict[str, Any]:
    try:
        from google.protobuf import descriptor_pool, message_factory
    except ImportError:
        raise SetupError("the CRI client needs protobuf and grpcio, which are not installed",
                         "install the lab's packages: make setup (or pip install grpcio protobuf)") from None
    pool = descriptor_pool.DescriptorPool()
    described = pool.Add(file_descriptor())
    return {name: message_factory.GetMessageClass(described.message_types_by_name[name]) for name, _ in _MESSAGES}


MESSAGES: dict[str, Any] = {}


def message(name: str, **fields: Any) -> Any:
    """A runtime.v1 message of this subset, filled from keyword arguments (nested ones as dicts)."""
    if not MESSAGES:
        MESSAGES.update(_message_classes())
    from google.protobuf import json_format

    made = MESSAGES[name]()
    json_format.ParseDict(fields, made, ignore_unknown_fields=False)
    return made


def as_dict(made: Any) -> dict[str, Any]:
    """A message as a dict with the proto's own field names, zero values included (as Go's client sees them)."""
    from google.protobuf import json_format

    out: dict[str, Any] = json_format.MessageToDict(made, preserving_proto_field_name=True,
                                                    always_print_fields_with_no_presence=True)
    return out


@dataclass(frozen=True)
class ContainerState:
    """What ContainerStatus answers, in the lab's words: the state, the exit code, and the reason/message."""

    id: str
    state: str                       # CONTAINER_CREATED / RUNNING / EXITED / UNKNOWN
    exit_code: int
    reason: str
    message: str
    log_path: str
    annotations: dict[str, str] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)   # verbose: containerd's "info" JSON (runtimeSpec inside)


class CriClient:
    """The kubelet's calls this lab needs, to one CRI endpoint (containerd's unix socket). Each failing call raises
    CriError with the gRPC status and containerd's own message (which carries the OCI runtime's error)."""

    def __init__(self, socket: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        try:
            import grpc
        except ImportError:
            raise SetupError("the CRI client needs grpcio, which is not installed",
                             "install the lab's packages: make setup (or pip install grpcio protobuf)") from None
        if not MESSAGES:
            MESSAGES.update(_message_classes())
        self._grpc = grpc
        self.socket = os.fspath(socket)
        self.timeout = timeout
        # unix:<absolute path>; no proxy, no TLS (a local socket, as the kubelet's --container-runtime-endpoint).
        self._channel = grpc.insecure_channel(f"unix:{self.socket}", options=[("grpc.enable_http_proxy", 0)])
        self._calls: dict[str, Any] = {}
        for service, method, _request, response in _METHODS:
            self._calls[method] = self._channel.unary_unary(
                f"/{PACKAGE}.{service}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=MESSAGES[response].FromString)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> dict[str, Any]:
        try:
            answer = self._calls[method](request, timeout=timeout or self.timeout)
        except self._grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            raise CriError(method, code, detail or "") from None
        return as_dict(answer)

    # -- RuntimeService ------------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self.call("Version", message("VersionRequest", version="v1"), timeout=10)

    def run_pod_sandbox(self, config: Mapping[str, Any], runtime_handler: str = "") -> str:
        answer = self.call("RunPodSandbox", message("RunPodSandboxRequest", config=dict(config),
                                                    runtime_handler=runtime_handler))
        return str(answer["pod_sandbox_id"])

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.call("StopPodSandbox", message("StopPodSandboxRequest", pod_sandbox_id=sandbox_id))

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.call("RemovePodSandbox", message("RemovePodSandboxRequest", pod_sandbox_id=sandbox_id))

    def create_container(self, sandbox_id: str, config: Mapping[str, Any], sandbox_config: Mapping[str, Any]) -> str:
        answer = self.call("CreateContainer", message("CreateContainerRequest", pod_sandbox_id=sandbox_id,
                                                      config=dict(config), sandbox_config=dict(sandbox_config)))
        return str(answer["container_id"])

    def start_container(self, container_id: str) -> None:
        self.call("StartContainer", message("StartContainerRequest", container_id=container_id))

    def container_status(self, container_id: str, *, verbose: bool = False) -> ContainerState:
        answer = self.call("ContainerStatus", message("ContainerStatusRequest", container_id=container_id,
                                                      verbose=verbose))
        s = answer.get("status") or as_dict(MESSAGES["ContainerStatus"]())  # absent: every field at its zero
        return ContainerState(id=s["id"], state=s["state"], exit_code=int(s["exit_code"]), reason=s["reason"],
                              message=s["message"], log_path=s["log_path"], annotations=dict(s["annotations"]),
                              info=dict(answer.get("info") or {}))

    def list_containers(self, sandbox_id: str = "") -> list[dict[str, Any]]:
        request = message("ListContainersRequest", filter={"pod_sandbox_id": sandbox_id} if sandbox_id else {})
        return list(self.call("ListContainers", request)["containers"])

    # -- ImageService --------------------------------------------------------------------------------------
    def image_status(self, image: str) -> dict[str, Any] | None:
        """The image as the CRI sees it, or None where it does not know the name (ImageStatus answers no image)."""
        answer = self.call("ImageStatus", message("ImageStatusRequest", image={"image": image}))
        found = answer.get("image")
        return dict(found) if found and found.get("id") else None


def pod_sandbox_config(name: str, namespace: str, uid: str, *, annotations: Mapping[str, str], log_directory: str,
                       cgroup_parent: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the kubelet sends for a hostNetwork pod: the node's network namespace (no CNI needed), IPC of the
    node too (no /dev/shm mount of the pod's own), and the pod's annotations as they are."""
    node = NAMESPACE_MODES["NODE"]
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid, "attempt": 0},
            "log_directory": log_directory, "labels": dict(labels or {}), "annotations": dict(annotations),
            "linux": {"cgroup_parent": cgroup_parent,
                      "security_context": {"namespace_options": {"network": node, "ipc": node,
                                                                 "pid": NAMESPACE_MODES["CONTAINER"]}}}}


def container_config(name: str, image: str, *, log_path: str, command: Sequence[str] = (),
                     annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "attempt": 0}, "image": {"image": image}, "command": list(command),
            "log_path": log_path, "annotations": dict(annotations or {})}
