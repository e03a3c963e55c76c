"""Probes of live processes: memory footprint (RSS, PSS, USS) from /proc."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Footprint:
    """Memory of one process in KiB. USS is what it alone holds; PSS shares common pages fairly."""

    rss_kb: int
    pss_kb: int
    uss_kb: int


def footprint(pid: int) -> Footprint | None:
    """The footprint of a live process, or None when it is gone."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    fields[parts[0][:-1]] = int(parts[1])
    except OSError:
        return None
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return Footprint(fields.get("Rss", 0), fields.get("Pss", 0), uss)
