"""Image platforms as buildah names them: OS/ARCH[/VARIANT], wasi/wasm for WebAssembly, and the build ARGs they give."""

from __future__ import annotations

import platform as host_platform
from dataclasses import dataclass

from wasmlab.runtime.errors import BuildError

WASM_PLATFORM = ("wasip1", "wasm")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386", "i386": "386",
         "386": "386", "arm": "arm"}
_OSES = ("linux", "windows", "freebsd", "darwin")
@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(x for x in (self.os, self.architecture, self.variant) if x)


def parse_platform(text: str | None) -> Platform | None:
    """``wasi/wasm`` -> os ``wasip1``, architecture ``wasm`` (podman's convention); ``linux/arm64/v8`` ..."""
    if not text:
        return None
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise BuildError(f"invalid platform {text!r}", "write it as OS/ARCH, e.g. wasi/wasm or linux/amd64")
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else None
    if arch == "wasm" or os_name in ("wasi", "wasip1", "wasip2"):
        if arch != "wasm":
            raise BuildError(f"invalid platform {text!r}", "WebAssembly images use the platform wasi/wasm")
        return Platform("wasip1" if os_name == "wasi" else os_name, "wasm")
    if os_name not in _OSES or arch not in _ARCH:
        raise BuildError(f"unknown platform {text!r}",
                         "use wasi/wasm, or linux/ARCH with ARCH one of amd64, arm64, arm, 386, ppc64le, "
                         "s390x, riscv64")
    return Platform(os_name, _ARCH[arch], variant)


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    out = {}
    for prefix, plat in (("TARGET", target), ("BUILD", build)):
        out[f"{prefix}PLATFORM"] = str(plat)
        out[f"{prefix}OS"] = plat.os
        out[f"{prefix}ARCH"] = plat.architecture
        out[f"{prefix}VARIANT"] = plat.variant or ""
    return out


def host_platform_default() -> Platform:
    return Platform("linux", _ARCH.get(host_platform.machine(), "amd64"))
