"""The Containerfile (Dockerfile) language: parsing to instructions, and word expansion.

The parser turns text into :class:`Instruction` records and never touches the file
system; the builder expands ``$VARS`` later, when build arguments are known.
Supported: FROM, COPY, ADD, RUN, CMD, ENTRYPOINT, ENV, ARG, WORKDIR, LABEL, USER,
EXPOSE, VOLUME, STOPSIGNAL, SHELL, MAINTAINER; line continuations, comments and the
``# escape=`` / ``# syntax=`` parser directives. Every syntax error names its line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmlab.runtime.errors import BuildError

SUPPORTED = ("FROM", "COPY", "ADD", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "WORKDIR", "LABEL", "USER",
             "EXPOSE", "VOLUME", "STOPSIGNAL", "SHELL", "MAINTAINER")
UNSUPPORTED = {
    "HEALTHCHECK": "health checks are not part of the OCI image config wasmlab writes; remove the line",
    "ONBUILD": "ONBUILD triggers are not supported; write the steps into the Containerfile that uses it",
}
FLAGS = {
    "FROM": {"platform"},
    "COPY": {"from", "chown", "chmod", "link"},
    "ADD": {"chown", "chmod", "link", "checksum", "keep-git-dir"},
    "RUN": set(),
}
EXEC_FORM = {"RUN", "CMD", "ENTRYPOINT", "SHELL", "VOLUME", "COPY", "ADD"}
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_KEYWORD = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)(?:\s+(.*))?$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHORT_HINT = "see https://docs.docker.com/reference/dockerfile/ for the instruction syntax"


class ContainerfileError(BuildError):  # type: ignore[misc, unused-ignore]
    """A BuildError tied to one line of the Containerfile (``line``)."""

    def __init__(self, line: int, problem: str, hint: str = _SHORT_HINT,
                 source: str = "Containerfile") -> None:
        super().__init__(f"{source} line {line}: {problem}", hint)
        self.line = line
        self.source = source


def syntax_error(line: int, problem: str, hint: str = _SHORT_HINT,
                 source: str = "Containerfile") -> ContainerfileError:
    """A BuildError that names the line; ``err.line`` holds the number."""
    return ContainerfileError(line, problem, hint, source)


@dataclass(frozen=True)
class Instruction:
    """One instruction, as written (variables not yet expanded).

    ``args`` holds the words (or the JSON list for exec form); ``text`` the raw argument
    text after the keyword and flags; ``pairs`` the key/value pairs of ENV, LABEL and ARG.
    """

    keyword: str
    line: int
    text: str
    args: tuple[str, ...] = ()
    flags: tuple[tuple[str, str], ...] = ()
    exec_form: bool = False
    pairs: tuple[tuple[str, str | None], ...] = ()

    def flag(self, name: str) -> str | None:
        for key, value in self.flags:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Stage:
    """A FROM and the instructions up to the next FROM."""

    index: int
    base: str
    name: str | None
    platform: str | None
    line: int
    instructions: tuple[Instruction, ...]
    head: Instruction


@dataclass(frozen=True)
class Containerfile:
    """A parsed Containerfile."""

    instructions: tuple[Instruction, ...]
    directives: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    source: str = "Containerfile"

    @property
    def global_args(self) -> tuple[Instruction, ...]:
        """The ARG instructions before the first FROM (usable in FROM lines)."""
        out = []
        for ins in self.instructions:
            if ins.keyword == "FROM":
                break
            out.append(ins)
        return tuple(out)

    @property
    def stages(self) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        current: list[Instruction] = []
        head: Instruction | None = None
        for ins in self.instructions:
            if ins.keyword == "FROM":
                if head is not None:
                    stages.append(_stage(len(stages), head, current))
                head, current = ins, []
            elif head is not None:
                current.append(ins)
        if head is not None:
            stages.append(_stage(len(stages), head, current))
        return tuple(stages)


def _stage(index: int, head: Instruction, body: list[Instruction]) -> Stage:
    name = head.args[2] if len(head.args) == 3 else None
    stage_name = name.lower() if name else None
    return Stage(index, head.args[0], stage_name, head.flag("platform"), head.line, tuple(body), head)


# -- parsing ----------------------------------------------------------------------------------


def parse(text: str, source: str = "Containerfile") -> Containerfile:
    """Parse Containerfile TEXT; raise BuildError naming the line on any syntax error."""
    lines = text.removeprefix("\ufeff").splitlines()  # a byte-order mark (some editors write one)
    directives: dict[str, str] = {}
    escape = "\\"
    start = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            break
        key = m.group(1).lower()
        if key in directives:
            raise syntax_error(i + 1, f"parser directive {key!r} is given twice", source=source)
        directives[key] = m.group(2)
        start = i + 1
    if "escape" in directives:
        escape = directives["escape"]
        if escape not in ("\\", "`"):
            raise syntax_error(1, f"invalid escape character {escape!r}", "use `# escape=\\` or `# escape=``",
                               source)
    instructions: list[Instruction] = []
    i = start
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i + 1
        parts: list[str] = []
        while True:
            body = line.rstrip()
            if body.endswith(escape):
                parts.append(body[:-1])
                i += 1
                # Skip comment lines and blank lines inside a continuation, as Docker does.
                while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                    i += 1
                if i >= len(lines):
                    break
                line = lines[i]
                continue
            parts.append(body)
            i += 1
            break
        instructions.append(_parse_instruction("".join(parts), first, escape, source))
    if not instructions:
        raise syntax_error(1, "the file has no instructions", "start it with a FROM line, e.g. FROM scratch",
                           source)
    seen_from = False
    for ins in instructions:
        if ins.keyword == "FROM":
            seen_from = True
        elif not seen_from and ins.keyword != "ARG":
            raise syntax_error(ins.line, f"{ins.keyword} comes before the first FROM",
                               "only ARG may come before FROM; start the stage with FROM scratch or an image",
                               source)
    return Containerfile(tuple(instructions), directives, escape, source)


def _parse_instruction(text: str, line: int, escape: str, source: str) -> Instruction:
    m = _KEYWORD.match(text)
    if not m:
        raise syntax_error(line, f"cannot read an instruction in {text.strip()[:40]!r}",
                           "each line starts with an instruction such as FROM, COPY or CMD", source)
    keyword = m.group(1).upper()
    rest = (m.group(2) or "").strip()
    if keyword in UNSUPPORTED:
        raise syntax_error(line, f"{keyword} is not supported by wasmlab", UNSUPPORTED[keyword], source)
    if keyword not in SUPPORTED:
        close = difflib.get_close_matches(keyword, SUPPORTED, n=1)
        hint = f"did you mean {close[0]}?" if close else f"supported instructions: {', '.join(SUPPORTED)}"
        raise syntax_error(line, f"unknown instruction {m.group(1)!r}", hint, source)
    flags: list[tuple[str, str]] = []
    if keyword in FLAGS:
        rest, flags = _take_flags(keyword, rest, line, source)
    if not rest and keyword not in ("CMD", "ENTRYPOINT"):
        raise syntax_error(line, f"{keyword} needs at least one argument", _SHORT_HINT, source)
    ins = Instruction(keyword, line, rest, flags=tuple(flags))
    parse_fn = _PARSERS.get(keyword, _parse_words)
    return parse_fn(ins, escape, source)


def _take_flags(keyword: str, rest: str, line: int, source: str) -> tuple[str, list[tuple[str, str]]]:
    flags: list[tuple[str, str]] = []
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if name not in FLAGS[keyword]:
            allowed = ", ".join(f"--{f}" for f in sorted(FLAGS[keyword])) or "none"
            raise syntax_error(line, f"unknown flag --{name} for {keyword}",
                               f"flags {keyword} accepts: {allowed}", source)
        if not eq and name not in ("link", "keep-git-dir"):
            raise syntax_error(line, f"flag --{name} needs a value, like --{name}=VALUE", _SHORT_HINT, source)
        flags.append((name, value if eq else "true"))
        rest = remainder.lstrip()
    return rest, flags


def _json_list(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return value
    return None


def _parse_exec_or_shell(ins: Instruction, escape: str, source: str) -> Instruction:
    argv = _json_list(ins.text)
    if argv is not None:
        return _replace(ins, args=tuple(argv), exec_form=True)
    if ins.keyword in ("CMD", "ENTRYPOINT") and ins.text.startswith("["):
        # Docker would silently run this through /bin/sh; a learner almost always meant JSON.
        raise syntax_error(ins.line, f"{ins.keyword} looks like the JSON exec form but is not valid JSON",
                           f'write {ins.keyword} ["/module.wasm", "arg"] with double quotes and a closing ]',
                           source)
    if ins.keyword == "SHELL":
        raise syntax_error(ins.line, "SHELL needs a JSON list of strings",
                           'write SHELL ["/bin/sh", "-c"]', source)
    return _replace(ins, args=(ins.text,) if ins.text else (), exec_form=False)


def _parse_copy(ins: Instruction, escape: str, source: str) -> Instruction:
    argv = _json_list(ins.text)
    words = argv if argv is not None else split_words(ins.text, escape)
    if len(words) < 2:
        raise syntax_error(ins.line, f"{ins.keyword} needs a source and a destination",
                           f"write {ins.keyword} SOURCE... DEST, e.g. {ins.keyword} hello.wasm /", source)
    if argv is None and any(w.startswith("<<") for w in words):
        raise syntax_error(ins.line, f"here-documents in {ins.keyword} are not supported",
                           "put the content in a file in the build context and copy it", source)
    return _replace(ins, args=tuple(words), exec_form=argv is not None)


def _parse_run(ins: Instruction, escape: str, source: str) -> Instruction:
    if ins.text.startswith("<<"):
        raise syntax_error(ins.line, "here-documents in RUN are not supported",
                           "write the commands on one line, joined with && and line continuations", source)
    return _parse_exec_or_shell(ins, escape, source)


def _parse_from(ins: Instruction, escape: str, source: str) -> Instruction:
    words = split_words(ins.text, escape)
    if len(words) == 3 and words[1].upper() == "AS":
        if not re.match(r"^[A-Za-z][A-Za-z0-9_.-]*$", words[2]):
            raise syntax_error(ins.line, f"invalid stage name {words[2]!r}",
                               "stage names start with a letter, then letters, digits, '_', '.', '-'",
                               source)
        return _replace(ins, args=(words[0], "AS", words[2]))
    if len(words) != 1:
        raise syntax_error(ins.line, "FROM takes an image and an optional `AS name`",
                           "write FROM scratch, FROM IMAGE or FROM IMAGE AS NAME", source)
    return _replace(ins, args=(words[0],))


def _parse_pairs(ins: Instruction, escape: str, source: str) -> Instruction:
    words = split_words(ins.text, escape)
    pairs: list[tuple[str, str | None]] = []
    if ins.keyword in ("ENV", "LABEL") and words and "=" not in words[0]:
        # The legacy one-pair form, KEY value (a tab separates as well as a space).
        key, value = [*ins.text.strip().split(None, 1), ""][:2]
        if not value.strip():
            what = f"ENV {key} has no value" if ins.keyword == "ENV" else f"LABEL expects KEY=VALUE, got {key!r}"
            raise syntax_error(ins.line, what, f"write {ins.keyword} KEY=VALUE", source)
        pairs.append((key, value.strip() if ins.keyword == "ENV" else value.strip().strip('"')))
    else:
        for word in words:
            key, eq, value = word.partition("=")
            if ins.keyword == "ARG":
                pairs.append((key, value if eq else None))
            elif not eq:
                raise syntax_error(ins.line, f"{ins.keyword} expects KEY=VALUE, got {word!r}",
                                   f"write {ins.keyword} KEY=VALUE (quote values with spaces)", source)
            else:
                pairs.append((key, value))
    for key, _ in pairs:
        if not key:
            raise syntax_error(ins.line, f"{ins.keyword} has an empty name", f"write {ins.keyword} KEY=VALUE",
                               source)
        if ins.keyword in ("ENV", "ARG") and not _NAME.match(key):
            raise syntax_error(ins.line, f"invalid {ins.keyword} name {key!r}",
                               "names use letters, digits and '_' and do not start with a digit", source)
    return _replace(ins, pairs=tuple(pairs), args=tuple(words))


def _parse_words(ins: Instruction, escape: str, source: str) -> Instruction:
    words = split_words(ins.text, escape)
    single = {"USER", "STOPSIGNAL"}
    if ins.keyword in single and len(words) != 1:
        raise syntax_error(ins.line, f"{ins.keyword} takes exactly one argument, got {len(words)}",
                           _SHORT_HINT, source)
    if ins.keyword == "VOLUME":
        argv = _json_list(ins.text)
        if argv is not None:
            return _replace(ins, args=tuple(argv), exec_form=True)
    return _replace(ins, args=tuple(words))


def _parse_text(ins: Instruction, escape: str, source: str) -> Instruction:
    return _replace(ins, args=(ins.text,))


def _replace(ins: Instruction, **changes: Any) -> Instruction:
    return dataclasses.replace(ins, **changes)


_PARSERS = {
    "FROM": _parse_from,
    "COPY": _parse_copy,
    "ADD": _parse_copy,
    "RUN": _parse_run,
    "CMD": _parse_exec_or_shell,
    "ENTRYPOINT": _parse_exec_or_shell,
    "SHELL": _parse_exec_or_shell,
    "ENV": _parse_pairs,
    "LABEL": _parse_pairs,
    "ARG": _parse_pairs,
    "WORKDIR": _parse_text,
    "MAINTAINER": _parse_text,
}


# -- words and variables ----------------------------------------------------------------------


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes for :func:`expand`."""
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and quote != "'" and i + 1 < len(text):
            current.append(ch + text[i + 1])
            in_word = True
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = None
            current.append(ch)
        elif ch in "\"'":
            quote = ch
            current.append(ch)
            in_word = True
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return words


class ExpansionError(ValueError):
    """A ``${VAR?message}`` failed or the word is malformed."""


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}`` and remove quotes.

    Single quotes are literal; double quotes allow expansion; the escape character
    protects the next character. Unknown variables expand to the empty string.
    """
    out: list[str] = []
    quote: str | None = None
    i = 0
    n = len(word)
    while i < n:
        ch = word[i]
        if ch == escape and quote != "'" and i + 1 < n:
            nxt = word[i + 1]
            if quote == '"' and nxt not in ('"', escape, "$"):
                out.append(ch)
            out.append(nxt)
            i += 2
            continue
        if quote is None and ch in "\"'":
            quote = ch
            i += 1
            continue
        if quote is not None and ch == quote:
            quote = None
            i += 1
            continue
        if ch == "$" and quote != "'":
            value, i = _expand_var(word, i, env, escape)
            out.append(value)
            continue
        out.append(ch)
        i += 1
    if quote is not None:
        raise ExpansionError(f"unmatched {quote} in {word!r}")
    return "".join(out)


def _expand_var(word: str, i: int, env: Mapping[str, str], escape: str) -> tuple[str, int]:
    n = len(word)
    if i + 1 >= n:
        return "$", i + 1
    if word[i + 1] == "{":
        depth, j = 1, i + 2
        while j < n and depth:
            if word[j] == "{":
                depth += 1
            elif word[j] == "}":
                depth -= 1
            j += 1
        if depth:
            raise ExpansionError(f"missing '}}' in {word!r}")
        body = word[i + 2:j - 1]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?$", body, re.DOTALL)
        if not m:
            raise ExpansionError(f"bad substitution ${{{body}}}")
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op is None:
            return value or "", j
        unset = value is None or (op.startswith(":") and value == "")
        kind = op[-1]
        if kind == "-":
            return (expand(arg, env, escape) if unset else value or ""), j
        if kind == "+":
            return ("" if unset else expand(arg, env, escape)), j
        if unset:
            raise ExpansionError(arg or f"{name}: parameter not set")
        return value or "", j
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", word[i + 1:])
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), i + 1 + m.end()
