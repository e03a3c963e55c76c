"""The Containerfile parser: instructions, forms, continuations, directives, expansion and errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wasmlab.runtime.errors import BuildError
from wasmlab.runtime.images.containerfile import ContainerfileError, expand, parse, split_words


def test_seed_containerfile() -> None:
    cf = parse('FROM scratch\nCOPY hello.wasm /\nCMD ["/hello.wasm"]\n')
    assert [i.keyword for i in cf.instructions] == ["FROM", "COPY", "CMD"]
    assert [i.line for i in cf.instructions] == [1, 2, 3]
    cmd = cf.instructions[2]
    assert cmd.exec_form and cmd.args == ("/hello.wasm",)
    (stage,) = cf.stages
    assert stage.base == "scratch" and stage.name is None and len(stage.instructions) == 2


def test_every_supported_instruction_parses() -> None:
    text = """\
# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM --platform=wasi/wasm $BASE AS build
COPY --chmod=755 --chown=1:2 a.wasm b.wasm /app/
ADD archive.tar.gz /opt/
ENV A=1 B="two words"
ENV LEGACY a value with spaces
LABEL "org.example.x"="y z" plain=1
WORKDIR /app
USER 1000:1000
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-ec"]
RUN echo hi
ENTRYPOINT ["/app/a.wasm"]
CMD --verbose
MAINTAINER someone@example.org
"""
    cf = parse(text)
    by = {i.keyword: i for i in cf.instructions}
    assert cf.directives == {"syntax": "docker/dockerfile:1"}
    assert by["FROM"].flag("platform") == "wasi/wasm" and by["FROM"].args == ("$BASE", "AS", "build")
    assert cf.stages[0].name == "build" and cf.global_args[0].pairs == (("BASE", "scratch"),)
    assert by["COPY"].flag("chmod") == "755" and by["COPY"].flag("chown") == "1:2"
    assert by["COPY"].args == ("a.wasm", "b.wasm", "/app/")
    assert [p for p, _ in cf.instructions[4].pairs] == ["A", "B"]
    assert cf.instructions[5].pairs == (("LEGACY", "a value with spaces"),)
    assert by["EXPOSE"].args == ("8080", "53/udp")
    assert by["VOLUME"].exec_form and by["VOLUME"].args == ("/data",)
    assert by["SHELL"].args == ("/bin/sh", "-ec")
    assert not by["RUN"].exec_form and by["RUN"].args == ("echo hi",)
    assert by["ENTRYPOINT"].exec_form and not by["CMD"].exec_form


def test_continuations_skip_comments_and_blank_lines_and_keep_the_first_line_number() -> None:
    cf = parse("FROM scratch\n\nRUN echo one \\\n  # a comment inside\n\n  && echo two\nCMD [\"x\"]\n")
    run = cf.instructions[1]
    assert run.line == 3
    assert run.args == ("echo one   && echo two",)
    assert cf.instructions[2].line == 7


def test_escape_directive_switches_to_backtick() -> None:
    cf = parse("# escape=`\nFROM scratch\nCOPY a `\n  C:\\dest\\\n")
    assert cf.escape == "`"
    assert cf.instructions[1].args == ("a", "C:\\dest\\")


def test_directives_only_count_at_the_top() -> None:
    cf = parse("FROM scratch\n# escape=`\nCOPY a \\\n b\n")
    assert cf.escape == "\\" and cf.instructions[1].args == ("a", "b")


@pytest.mark.parametrize(("text", "line", "words"), [
    ("FROM scratch\nCOPPY hello.wasm /\n", 2, ["unknown instruction", "COPPY"]),
    ("FROM scratch\n\n\nFROB x\n", 4, ["unknown instruction"]),
    ("FROM scratch\nCOPY onlyone\n", 2, ["source and a destination"]),
    ("COPY a b\nFROM scratch\n", 1, ["before the first FROM"]),
    ("FROM scratch\nENV =x\n", 2, ["empty name"]),
    ("FROM scratch\nLABEL novalue\n", 2, ["KEY=VALUE"]),
    ("FROM a b c d\n", 1, ["FROM takes"]),
    ("FROM scratch\nCOPY --owner=1 a b\n", 2, ["unknown flag --owner"]),
    ("FROM scratch\nSHELL /bin/sh\n", 2, ["JSON list"]),
    ("FROM scratch\nCMD ['/hello.wasm']\n", 2, ["not valid JSON"]),
    ("FROM scratch\nUSER a b\n", 2, ["exactly one"]),
    ("FROM scratch\nHEALTHCHECK NONE\n", 2, ["not supported"]),
    ("FROM scratch\nRUN <<EOF\necho\nEOF\n", 2, ["here-documents"]),
    ("# escape=x\nFROM scratch\n", 1, ["escape character"]),
    ("\n# only a comment\n", 1, ["no instructions"]),
])
def test_syntax_errors_name_the_line(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(ContainerfileError) as err:
        parse(text)
    assert isinstance(err.value, BuildError)
    assert err.value.line == line
    assert err.value.message.startswith(f"Containerfile line {line}:")
    for word in words:
        assert word in err.value.message
    assert err.value.hint
    assert "\n" not in err.value.message


def test_unknown_instruction_suggests_the_closest_one() -> None:
    with pytest.raises(BuildError) as err:
        parse("FROM scratch\nENTRYPOIN [\"x\"]\n")
    assert err.value.hint == "did you mean ENTRYPOINT?"


def test_split_words_keeps_quotes_for_expansion() -> None:
    assert split_words('a "b c" \'d e\' f\\ g') == ["a", '"b c"', "'d e'", "f\\ g"]


@pytest.mark.parametrize(("word", "expected"), [
    ("$A", "1"),
    ("${A}x", "1x"),
    ("${MISSING:-dflt}", "dflt"),
    ("${A:+alt}", "alt"),
    ("${MISSING:+alt}", ""),
    ("${EMPTY:-d}", "d"),
    ("${EMPTY-d}", ""),
    ('"$A and $B"', "1 and two words"),
    ("'$A'", "$A"),
    ("\\$A", "$A"),
    ("$", "$"),
    ("a$1b", "a$1b"),
])
def test_expand(word: str, expected: str) -> None:
    assert expand(word, {"A": "1", "B": "two words", "EMPTY": ""}) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200))
def test_parser_only_ever_raises_build_errors(text: str) -> None:
    try:
        parse("FROM scratch\n" + text)
    except BuildError as exc:
        assert exc.message and exc.hint
