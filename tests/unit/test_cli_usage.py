"""The wasmlab command's usage: every option says what it does, and a mistake shows that verb's usage, not the top's."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from wasmlab.lab.cli import main, parser


def verbs(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                  argparse.ArgumentParser]]:
    """Every parser under the top one, with the words that reach it ("image", "ls")."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from verbs(sub, (*path, name))


def test_every_option_of_every_verb_says_what_it_does() -> None:
    top = parser()
    missing = [f"wasmlab {' '.join(path)} {'/'.join(a.option_strings)}"
               for path, p in [((), top), *verbs(top)] for a in p._actions
               if a.option_strings and not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == [], "options without a description in --help: " + ", ".join(missing)
    assert len(list(verbs(top))) > 20  # the walk reached the verbs (and image's own)


def placeholders(p: argparse.ArgumentParser) -> list[str]:
    """A made-up value for each required option and positional, so only the flag is wrong."""
    wanted = [a for a in p._actions if a.required and not isinstance(a, argparse._SubParsersAction)]
    return [w for a in wanted for w in ([a.option_strings[0], "x"] if a.option_strings else ["x"])]


@pytest.mark.parametrize("path", [path for path, _ in verbs(parser())], ids=" ".join)
def test_an_unknown_flag_prints_that_verbs_usage_and_a_hint(path: tuple[str, ...],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    sub = dict(verbs(parser()))[path]
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--frobnicate", *placeholders(sub)])
    assert exit_.value.code == 125  # podman's status for a mistake on its command line
    err = capsys.readouterr().err
    name = " ".join(path)
    assert err.startswith(f"usage: wasmlab {name} "), err
    assert "usage: wasmlab [-h]" not in err  # never the top-level usage
    last = err.strip().splitlines()[-1]
    assert last == f"Error: unknown flag: --frobnicate (hint: `wasmlab {name} --help` lists what it takes)", err


def test_the_issue_examples_and_a_missing_argument(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, verb, says in ((["run", "--frobnicate", "x", "img"], "run", "unknown flag: --frobnicate"),
                             (["logs", "--bogus", "c"], "logs", "unknown flag: --bogus"),
                             (["logs", "a", "b"], "logs", "unexpected argument: b"),
                             (["run"], "run", "the following arguments are required: image ")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 125 and err.startswith(f"usage: wasmlab {verb} ") and f"Error: {says}" in err, err
        assert "command" not in err.splitlines()[-1]  # run's COMMAND may be empty: not "required"


def test_an_unknown_command_suggests_the_near_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rum", "img"]) == 125
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "Error: unknown command 'rum' (hint: did you mean `wasmlab rm` or `wasmlab run`?)"
    with pytest.raises(SystemExit):
        main(["--bogus", "ps"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("Error: unknown flag: --bogus")


@pytest.mark.parametrize(("argv", "interval"), [
    (["stats"], 5.0), (["stats", "--no-stream"], 1.0), (["stats", "--no-stream", "-i", "3"], 3.0),
    (["pod", "stats"], 5.0), (["pod", "stats", "--no-stream"], 1.0), (["pod", "stats", "-i", "0.5"], 0.5)])
def test_stats_samples_every_5_s_as_podman_but_no_stream_measures_over_one_second(argv: list[str],
                                                                                  interval: float) -> None:
    """`stats --no-stream` prints the second reading (a rate needs two): without -i it is taken after 1 s, not
    podman's 5-s streaming interval; -i still says."""
    from wasmlab.lab import cli, present
    from wasmlab.lab.cli.lifecycle import stats_format

    args = cli.parser().parse_args(argv)
    stats_format(args, present.STATS_TABLE, present.STATS_FIELDS, "wasmlab stats -i 1")
    assert args.interval == interval


def test_stats_takes_json_as_pod_stats_does() -> None:
    from wasmlab.lab import cli, present
    from wasmlab.lab.cli.lifecycle import stats_format

    args = cli.parser().parse_args(["stats", "--json", "--no-stream"])
    assert stats_format(args, present.STATS_TABLE, present.STATS_FIELDS, "wasmlab stats -i 1") == "json"
