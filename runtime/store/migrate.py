"""Lab home formats: a new home is stamped, an older one migrated once under a lock, a newer one refused."""

from __future__ import annotations

from pathlib import Path

from wasmlab.runtime.errors import HomeError

# The layout of a lab home, as a number in FORMAT_FILE. Raise it with every change of what is on disk, and
# add the step that brings a home of the previous format up to it to _MIGRATIONS.
HOME_FORMAT = 1
FORMAT_FILE = "wasmlab-home.json"


def _migrate_0_to_1(home: Path) -> None:
    """Format 1: the run history records the signal apart from the exit code (a new column)."""
    from wasmlab.runtime.store.history import History

    if (home / "history.db").exists():
        history = History(home / "history.db")
        history.migrate()
        history.close()


_MIGRATIONS = {0: _migrate_0_to_1}


def home_format(home: Path) -> int | None:
    """The format a lab home says it has; None for a home without the file (new, or older than formats)."""
    import json

    try:
        with open(home / FORMAT_FILE, "rb") as fh:
            value = json.load(fh).get("format")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        value = None
    if not isinstance(value, int) or value < 0:
        raise HomeError(f"the lab home {home} has a damaged {FORMAT_FILE}",
                        "restore it, or remove it to have wasmlab treat the home as its oldest format")
    return value


def open_home(home: Path) -> Path:
    """The home, in this wasmlab's format: a new one is stamped, an older one migrated, a newer one refused.

    Workshops keep homes between days and wasmlab versions; migration runs once, under a lock.
    """
    found = home_format(home)
    if found == HOME_FORMAT:
        return home
    _refuse_newer(home, found)
    from wasmlab.runtime.store.atomic import Lock, write_json_atomic

    home.mkdir(parents=True, exist_ok=True)
    with Lock(home / ".format.lock"):
        found = home_format(home)
        if found is None:
            # Lab data without the file: a home from before formats (0). Nothing at all: a new home.
            found = 0 if any(p.name not in (".format.lock",) for p in home.iterdir()) else HOME_FORMAT
        _refuse_newer(home, found)
        for step in range(found, HOME_FORMAT):
            _MIGRATIONS[step](home)
        write_json_atomic(home / FORMAT_FILE, {"format": HOME_FORMAT}, sync=False)
    return home


def _refuse_newer(home: Path, found: int | None) -> None:
    if found is not None and found > HOME_FORMAT:
        raise HomeError(f"the lab home {home} was made by a newer wasmlab (format {found}; this one reads up to "
                        f"{HOME_FORMAT})", "upgrade wasmlab, or point WASMLAB_HOME at another folder")
