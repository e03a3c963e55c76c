"""Build-context exclusion rules from ``.containerignore`` / ``.dockerignore`` files."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILES = (".containerignore", ".dockerignore")


@dataclass(frozen=True)
class _Rule:
    pattern: str
    regex: re.Pattern[str]
    negated: bool


def _to_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j].replace("\\", "\\\\")
                if body.startswith("!") or body.startswith("^"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out))


class IgnoreRules:
    """Docker-compatible ignore patterns: ``*``, ``?``, ``**``, ``[...]`` and ``!`` exceptions.

    A path is excluded when the last pattern matching it (or one of its parent
    directories) is not an exception.
    """

    def __init__(self, patterns: list[str] | None = None) -> None:
        self.rules: list[_Rule] = []
        for raw in patterns or []:
            self.add(raw)

    def add(self, raw: str) -> None:
        text = raw.strip()
        if not text or text.startswith("#"):
            return
        negated = text.startswith("!")
        if negated:
            text = text[1:].strip()
        text = posixpath.normpath(text).lstrip("/")
        if text in ("", "."):
            return
        self.rules.append(_Rule(text, _to_regex(text), negated))

    @classmethod
    def for_context(cls, context: Path) -> IgnoreRules:
        """Rules from the context's ``.containerignore`` (or else ``.dockerignore``)."""
        for name in IGNORE_FILES:
            path = context / name
            if path.is_file():
                return cls(path.read_text(errors="replace").splitlines())
        return cls()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def ignored(self, rel: str) -> bool:
        """True if the context-relative path REL is excluded."""
        if not self.rules:
            return False
        rel = posixpath.normpath(rel).lstrip("/")
        if rel in ("", "."):
            return False
        parents = []
        parts = rel.split("/")
        for k in range(1, len(parts) + 1):
            parents.append("/".join(parts[:k]))
        excluded = False
        for rule in self.rules:
            if any(rule.regex.match(p) for p in parents):
                excluded = not rule.negated
        return excluded
