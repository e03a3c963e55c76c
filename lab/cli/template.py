"""podman's --format for listings: `json`, `table {{.Field}}...` (with headers) and `{{.Field}}` rows; anything else
is refused in one line (no pipes, functions or ranges: this is not Go's text/template)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from wasmlab.lab import present
from wasmlab.runtime.errors import UsageError

_FIELD = re.compile(r"\{\{\s*\.([A-Za-z]+)\s*\}\}")
HINT = "use --format json, or a template of {{.Field}} such as 'table {{.ID}}\\t{{.Names}}'"


def _created_at(when: float) -> str:
    """Go's time.Time as podman prints it: 2024-01-01 10:00:00.123456789 +0000 UTC (local time)."""
    lt = time.localtime(when)
    nanos = round((when % 1) * 1e9) % 1_000_000_000
    return time.strftime("%Y-%m-%d %H:%M:%S", lt) + f".{nanos:09d} " + time.strftime("%z %Z", lt)


# podman ps's field names, their headers, and how each is shown from a ContainerInfo.
CONTAINER_FIELDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "ID": ("CONTAINER ID", lambda r: r.id[:12]),
    "Names": ("NAMES", lambda r: r.name),
    "Image": ("IMAGE", lambda r: r.image),
    "Command": ("COMMAND", lambda r: " ".join(r.command)),
    "Status": ("STATUS", lambda r: present.status(r)),
    "State": ("STATE", lambda r: "exited" if str(r.status) == "stopped" else str(r.status)),
    "CreatedAt": ("CREATED AT", lambda r: _created_at(r.created)),
    "CreatedHuman": ("CREATED", lambda r: present.ago(r.created)),
    "RunningFor": ("CREATED", lambda r: present.ago(r.created)),
    "Created": ("CREATED", lambda r: str(int(r.created))),
    "Ports": ("PORTS", lambda r: ", ".join(r.ports)),
    "Pid": ("PID", lambda r: str(r.pid)),
    "ExitCode": ("EXIT CODE", lambda r: "" if r.exit_code is None else str(r.exit_code)),
    "Handler": ("HANDLER", lambda r: r.handler or ""),
}


def render(fmt: str, rows: Sequence[Any], fields: dict[str, tuple[str, Callable[[Any], str]]],
           as_dict: Callable[[Any], Any], *, minwidth: int = 0) -> str:
    """The text `--format FMT` prints for ROWS (ends with a newline unless empty). A table's columns are two
    spaces wider than their widest cell, and at least MINWIDTH (podman stats' tabwriter takes 12)."""
    spec = fmt.strip()
    if spec == "json":
        return json.dumps([as_dict(r) for r in rows], indent=2, default=str) + "\n"
    table = spec.startswith("table")
    body = spec[len("table"):].strip() if table else fmt
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    if table and not body:
        body = "\t".join("{{." + name + "}}" for name in ("ID", "Image", "Command", "CreatedHuman", "Status",
                                                        "Ports", "Names"))
    names = _FIELD.findall(body)
    leftover = _FIELD.sub("", body)
    if not names or "{{" in leftover or "}}" in leftover:
        raise UsageError(f"cannot use --format {fmt!r}: only json, table and {{{{.Field}}}} are understood", HINT)
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise UsageError(f"--format: no field .{unknown[0]}", "the fields are " + ", ".join(
            "." + n for n in fields))

    def fill(values: Callable[[str], str]) -> str:
        return _FIELD.sub(lambda m: values(m.group(1)), body)

    lines = [fill(lambda n, r=r: fields[n][1](r)) for r in rows]  # type: ignore[misc]
    if not table:
        return "".join(line + "\n" for line in lines)
    header = fill(lambda n: fields[n][0])
    grid = [line.split("\t") for line in [header, *lines]]
    width = max(len(cells) for cells in grid)
    widths = [max((len(cells[i]) for cells in grid if i < len(cells)), default=0) for i in range(width)]
    widths = [max(w, minwidth - 2) for w in widths]
    out = []
    for cells in grid:
        padded = [c.ljust(widths[i] + 2) if i < len(cells) - 1 else c for i, c in enumerate(cells)]
        out.append("".join(padded).rstrip() + "\n")
    return "".join(out)
