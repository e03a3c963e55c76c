"""Handler selection: crun's annotation and magic-byte rules, a sandbox override, and why each decision was made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import HandlerError, UsageError, WasmlabError
from wasmlab.runtime.handlers.base import EXIT_NO_ENTRYPOINT

HANDLER_ANNOTATION = "run.oci.handler"
VARIANT_ANNOTATION = "module.wasm.image/variant"
ENGINE_ANNOTATION = "wasmlab.io/engine"
CPU_TIME_ANNOTATION = "wasmlab.io/cpu-time-ms"
SANDBOX_ANNOTATIONS = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
# Set by `kube play --sandbox-rule off` on a pod's infra container only: the sandbox rule is not applied.
SANDBOX_RULE_ANNOTATION = "wasmlab.io/sandbox-rule"
WASM_ENGINES = ("wasmtime", "wasmer")
HANDLER_VALUES = ("wasm", "wasm-smart", *WASM_ENGINES)
VARIANT_VALUES = ("compat", "compat-smart")
# The annotations handlers understand, for `wasmlab-oci features`.
KNOWN_ANNOTATIONS = (HANDLER_ANNOTATION, VARIANT_ANNOTATION, ENGINE_ANNOTATION, CPU_TIME_ANNOTATION,
                     *SANDBOX_ANNOTATIONS)

WASM_MAGIC = b"\0asm"


def classify(head: bytes | None) -> str:
    """What an entrypoint is, from its first bytes.

    One of 'module', 'component', 'wat', 'elf', 'script', 'missing' or 'other'.
    """
    if head is None:
        return "missing"
    if head[:4] == WASM_MAGIC:
        # Bytes 4-7: version (u16) and layer (u16). Layer 0 is a core module, layer 1 a component.
        layer = int.from_bytes(head[6:8], "little") if len(head) >= 8 else 0
        return "component" if layer == 1 else "module"
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[:2] == b"#!":
        return "script"
    text = head.lstrip()
    while text.startswith(b";;"):
        text = text.split(b"\n", 1)[1].lstrip() if b"\n" in text else b""
    if text.startswith(b"(module") or text.startswith(b"(component"):
        return "wat"
    return "other"


def is_wasm(kind: str) -> bool:
    return kind in ("module", "component", "wat")


@dataclass
class Decision:
    """Which handler runs the container, and the path of rules that led there."""

    handler: str                      # "native" or an engine name
    wasm: bool
    rule: str                         # the rule that decided, e.g. "variant=compat-smart, entrypoint is ELF"
    annotation: tuple[str, str] | None = None
    source: str = "config.json annotations"
    entrypoint: str = ""
    entrypoint_kind: str = ""
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        # Shallow on purpose (dataclasses.asdict deep-copies): this runs in every container init.
        return {"handler": self.handler, "wasm": self.wasm, "rule": self.rule,
                "annotation": list(self.annotation) if self.annotation else None, "source": self.source,
                "entrypoint": self.entrypoint, "entrypoint_kind": self.entrypoint_kind, "steps": self.steps}


def _engine_for(annotations: dict[str, str], default_engine: str, steps: list[str],
                extra: tuple[str, ...] = ()) -> str:
    engines = (*WASM_ENGINES, *extra)
    engine = annotations.get(ENGINE_ANNOTATION)
    if engine:
        if engine not in engines:
            raise HandlerError(f"unknown Wasm engine {engine!r} in annotation {ENGINE_ANNOTATION}",
                               f"use one of {', '.join(engines)}")
        steps.append(f"{ENGINE_ANNOTATION}={engine} picks the engine")
        return engine
    if default_engine not in engines:
        raise HandlerError(f"unknown default Wasm engine {default_engine!r}",
                           f"set --engine or WASMLAB_ENGINE to one of {', '.join(engines)}")
    steps.append(f"no engine named: the default engine {default_engine} is used")
    return default_engine


def decide(annotations: dict[str, str], entrypoint: str, head: bytes | None, *, default_engine: str = "wasmtime",
           source: str = "config.json annotations", extra_engines: tuple[str, ...] = ()) -> Decision:
    """Apply the selection rules. Raises HandlerError when the annotations ask for something impossible.

    extra_engines are third-party handlers (entry points in `wasmlab.handlers`): `run.oci.handler`,
    `wasmlab.io/engine` and the default engine may name them as they name wasmtime and wasmer."""
    steps: list[str] = []
    kind = classify(head)
    steps.append(f"entrypoint {entrypoint or '(none)'} is {kind}")

    def done(handler: str, rule: str, ann: tuple[str, str] | None) -> Decision:
        steps.append(f"=> {handler}")
        return Decision(handler, handler != "native", rule, ann, source, entrypoint, kind, steps)

    rule_off = annotations.get(SANDBOX_RULE_ANNOTATION) == "off"
    if rule_off:
        steps.append(f"{SANDBOX_RULE_ANNOTATION}=off: the pod sandbox rule is switched off (a lab scenario)")
    for key in SANDBOX_ANNOTATIONS:
        if annotations.get(key) == "sandbox" and not rule_off:
            steps.append(f"{key}=sandbox: the pod sandbox (pause) container always runs natively")
            return done("native", "pod sandbox container", (key, "sandbox"))

    handler = annotations.get(HANDLER_ANNOTATION)
    if handler is not None:
        ann = (HANDLER_ANNOTATION, handler)
        if handler not in HANDLER_VALUES and handler not in extra_engines:
            raise HandlerError(f"unknown handler {handler!r} in annotation {HANDLER_ANNOTATION}",
                               f"use one of {', '.join((*HANDLER_VALUES, *extra_engines))}")
        steps.append(f"{HANDLER_ANNOTATION}={handler} (it takes precedence over {VARIANT_ANNOTATION})")
        if handler in extra_engines:
            return done(handler, f"{HANDLER_ANNOTATION} names a registered third-party handler", ann)
        if handler in WASM_ENGINES:
            if not is_wasm(kind):
                _refuse(ann, entrypoint, kind, "wasm-smart")
            return done(handler, f"{HANDLER_ANNOTATION} names the engine", ann)
        if handler == "wasm-smart" and not is_wasm(kind):
            return done("native", f"{HANDLER_ANNOTATION}=wasm-smart and the entrypoint is not Wasm", ann)
        engine = _engine_for(annotations, default_engine, steps, extra_engines)
        if handler == "wasm" and not is_wasm(kind):
            _refuse(ann, entrypoint, kind, "wasm-smart")
        return done(engine, f"{HANDLER_ANNOTATION}={handler}", ann)

    variant = annotations.get(VARIANT_ANNOTATION)
    if variant is not None:
        ann = (VARIANT_ANNOTATION, variant)
        if variant not in VARIANT_VALUES:
            raise HandlerError(*unknown_variant(variant))
        steps.append(f"{VARIANT_ANNOTATION}={variant}")
        if variant == "compat-smart" and not is_wasm(kind):
            return done("native", "variant=compat-smart and the entrypoint is not Wasm: run it natively", ann)
        engine = _engine_for(annotations, default_engine, steps, extra_engines)
        if variant == "compat" and not is_wasm(kind):
            _refuse(ann, entrypoint, kind, "compat-smart")
        return done(engine, f"variant={variant} and the entrypoint is Wasm", ann)

    steps.append("no Wasm annotation")
    return done("native", "no Wasm annotation: a Linux container", None)


def unknown_variant(value: str) -> tuple[str, str]:
    """The one line (and hint) for a module.wasm.image/variant value no handler knows: the valid ones, and
    the nearest as "did you mean" (a typo such as compatt). No import: this also runs inside the container,
    after pivot_root, where the interpreter's library is out of reach."""
    low = value.lower()
    near = [v for v in sorted(VARIANT_VALUES, key=lambda v: _edits(low, v)) if _edits(low, v) <= 3]
    hint = (f"did you mean {VARIANT_ANNOTATION}={near[0]}?" if near
            else f"for example --annotation {VARIANT_ANNOTATION}=compat")
    return (f"unknown variant {value!r} in annotation {VARIANT_ANNOTATION}: it takes "
            f"{' or '.join(VARIANT_VALUES)}", hint)


def _edits(a: str, b: str) -> int:
    """Levenshtein distance: the fewest inserts, deletes and changes that turn a into b."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def check_variant(annotations: Mapping[str, str], error: type[WasmlabError] = UsageError) -> None:
    """Refuse an unknown variant where it is typed (build --annotation, run --annotation), not at run time."""
    value = annotations.get(VARIANT_ANNOTATION)
    if value is not None and value not in VARIANT_VALUES:
        raise error(*unknown_variant(value))


def _refuse(ann: tuple[str, str], entrypoint: str, kind: str, smart: str) -> None:
    key, value = ann
    what = {"elf": "a Linux (ELF) binary", "missing": "missing", "script": "a script"}.get(kind, "not Wasm")
    if kind == "missing":
        raise HandlerError(f"{key}={value} says this container is Wasm, but its entrypoint {entrypoint} is missing",
                           "check the command (or the image's CMD and ENTRYPOINT)", exit_code=EXIT_NO_ENTRYPOINT)
    smart_key = HANDLER_ANNOTATION if key == HANDLER_ANNOTATION else key
    raise HandlerError(f"{key}={value} says this container is Wasm, but its entrypoint {entrypoint} is {what}",
                       f"use {smart_key}={smart} so Linux sidecars run natively")


def engines_wanted(annotations: dict[str, str], default_engine: str) -> tuple[str, ...]:
    """The engines a container with these annotations might use (so they can be warmed before fork).
    Names that are no known handler are simply not found among the handlers and warm nothing."""
    handler = annotations.get(HANDLER_ANNOTATION)
    if handler is not None and handler not in ("wasm", "wasm-smart"):
        return (handler,)
    if handler is None and annotations.get(VARIANT_ANNOTATION) is None:
        return ()
    engine = annotations.get(ENGINE_ANNOTATION)
    return (engine,) if engine else (default_engine,)
