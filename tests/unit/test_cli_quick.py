"""The quick verbs' cold path (issue 16, quickverbs): a parser of one verb group answers as the whole one does, and
`--version` alone is answered before argparse with argparse's words."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from wasmlab.lab import cli


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.mark.parametrize("verb", sorted(cli.VERB_GROUPS))
def test_a_verbs_group_parser_is_the_whole_parsers_for_that_verb(verb: str) -> None:
    whole = cli.parser()
    alone = cli.parser(cli.VERB_GROUPS[verb])
    assert verb in _subparsers(alone), f"{verb} is not registered by {cli.VERB_GROUPS[verb]}"
    # The same usage, help and choices of sub-verbs (prog included, which comes from the top-level parser).
    a, w = _subparsers(alone)[verb], _subparsers(whole)[verb]
    assert a.prog == w.prog and a.format_help() == w.format_help()
    assert sorted(_subparsers(a)) == sorted(_subparsers(w))
    for name, sub in _subparsers(w).items():
        assert _subparsers(a)[name].format_help() == sub.format_help()
    assert alone.format_usage() == whole.format_usage()


@pytest.mark.parametrize("argv", [["ps", "-a", "--json"], ["--debug", "rm", "-f", "x", "y"], ["images", "-q"],
                                  ["pod", "ps", "--json"], ["logs", "--tail", "3", "c"], ["stop", "-t", "0", "c"],
                                  ["inspect", "c"]])
def test_a_verbs_group_parser_parses_as_the_whole_one(argv: list[str]) -> None:
    whole = vars(cli.parser().parse_args(argv))
    alone = vars(cli.parser(cli.VERB_GROUPS[argv[1] if argv[0] == "--debug" else argv[0]]).parse_args(argv))
    assert {k: v for k, v in alone.items() if k != "func"} == {k: v for k, v in whole.items() if k != "func"}
    assert getattr(alone.get("func"), "__qualname__", None) == getattr(whole.get("func"), "__qualname__", None)


@pytest.mark.parametrize("argv", [["--version"], ["--debug", "--version"], ["--version", "--debug"]])
def test_version_alone_prints_what_argparse_prints_without_argparse(argv: list[str]) -> None:
    code = ("import sys\n"
            "from wasmlab.lab.cli import main, run_command\n"
            f"quick = main({argv!r})\n"
            "print('argparse' in sys.modules, quick)\n"
            f"slow = run_command({argv!r})\n"
            "print('argparse' in sys.modules, slow)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert lines[0] == lines[2] == f"wasmlab version {_version()}"
    assert lines[1] == "False 0" and lines[3] == "True 0"


def _version() -> str:
    from wasmlab.runtime import __version__

    return __version__


def test_the_cli_bench_table_shows_ps_and_images_against_podman() -> None:
    from wasmlab.runtime.bench import cli as bench_cli

    keys = ["podman_runc_linux", "podman_wasmlab_oci_wasm", "cold_linux", "cold_wasm", "warm_linux", "warm_wasm",
            "podman_ps", "cold_ps", "warm_ps", "podman_images", "cold_images", "warm_images"]
    med = {k: 100.0 + i for i, k in enumerate(keys)}
    ratio = {"cold_linux_vs_podman_runc": 1.0, "warm_linux_vs_podman_runc": 0.3, "cold_wasm_vs_podman_wasmlab_oci": 1.0,
             "warm_wasm_vs_podman_wasmlab_oci": 0.4, "cold_ps_vs_podman_ps": 2.5, "warm_ps_vs_podman_ps": 1.5,
             "cold_images_vs_podman_images": 3.5, "warm_images_vs_podman_images": 1.25}
    fig = {"date": "d", "kernel": "k", "rounds": 3, "median_ms": med, "ratio": ratio, "target": 0.35,
           "images_listed": {"wasmlab": 31, "podman": 2}}
    text = bench_cli.markdown(fig)
    assert "| `ps` | 106.0 | 107.0 | 108.0 | 2.5x | 1.5x |" in text
    assert "| `images` | 109.0 | 110.0 | 111.0 | 3.5x | 1.25x |" in text
    assert "lists 31 images in wasmlab's home" in text
    # A run recorded before the verbs were measured still renders, without their table.
    old = {**fig, "median_ms": {k: v for k, v in med.items() if k in keys[:6]}}
    assert "`ps`" not in bench_cli.markdown(old)
