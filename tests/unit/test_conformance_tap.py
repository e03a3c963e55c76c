"""The TAP parsing of scripts/conformance.py, on output shaped like runtime-tools' validation tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "conformance.py"
_spec = importlib.util.spec_from_file_location("conformance", SCRIPT)
assert _spec and _spec.loader
conformance = importlib.util.module_from_spec(_spec)
sys.modules["conformance"] = conformance
_spec.loader.exec_module(conformance)
parse = conformance.parse_tap


def block(data: dict[str, str]) -> str:
    body = json.dumps(data, indent=2).replace("\n", "\n  ")
    return f"  ---\n  {body}\n  ...\n"


def test_all_ok_passes() -> None:
    r = parse("t", "TAP version 13\nok 1 - a\nok 2 # SKIP not set\n1..2\n", "", 0, 0.1)
    assert (r.status, r.passed, r.skipped, r.failed) == ("PASS", 1, 1, 0)


def test_spec_error_ok_block_follows_its_line() -> None:
    out = (
        "TAP version 13\nok 1 - state MUST generate an error\nRefer to: https://x\n"
        + block({"error": "exit status 1", "reference": "https://x"})
        + "not ok 2 - create with pid file works\n"
        + block({"error": "exit status 5", "stderr": "wasmlab-oci: nothing to signal\n"})
        + "1..2\n"
    )
    r = parse("t", out, "", 0, 0.1)
    assert r.status == "FAIL" and r.failed == 1 and not r.diag_errors  # the error after `ok 1` is fine
    assert r.first_failure() == ("create with pid file works [exit status 5; stderr: wasmlab-oci: nothing to signal]")


def test_inside_validate_block_precedes_its_line_and_its_inner_failure_is_shown() -> None:
    inner = (
        "TAP version 13\nok 1 - has expected hostname\nnot ok 2 - has expected noNewPrivileges\n"
        + block({"actual": "false", "expected": "true"})
        + "1..2\n"
    )
    out = "TAP version 13\n" + block({"stdout": inner, "stderr": ""}) + 'not ok 1 - check hostname "h"\n1..1\n'
    r = parse("t", out, "", 0, 0.1)
    assert r.first_failure() == (
        "check hostname \"h\" [inside: has expected noNewPrivileges [actual='false', expected='true']]"
    )


def test_error_block_outside_any_test_line_fails_the_file() -> None:
    out = "TAP version 13\n" + block({"error": "Hooks MUST be called in the listed order\nRefer to: x"}) + "1..0\n"
    r = parse("hooks", out, "", 0, 0.1)
    assert r.status == "FAIL" and r.failed == 0
    assert r.first_failure().startswith("Hooks MUST be called in the listed order")


def test_plans_of_several_streams_add_up() -> None:
    out = "TAP version 13\nok 1 - a\nok 2 - b\n1..2\nTAP version 13\n1..0\n"
    assert parse("t", out, "", 0, 0.1).status == "PASS"
    assert parse("t", "TAP version 13\nok 1 - a\n1..2\n", "", 0, 0.1).status == "FAIL"


def test_fail_tests_pass_silently_and_fatal_exits_are_errors() -> None:
    assert parse("process_rlimits_fail", "", "failed to create the container\n", 0, 0.1).status == "PASS"
    r = parse("t", "", "failed to create the container\nruntime: boom\n", 1, 0.1)
    assert r.status == "ERROR"
    assert r.first_failure() == "exit status 1: failed to create the container / runtime: boom"
    assert parse("t", "TAP version 13\n", "", None, 60).status == "TIMEOUT"


def test_comment_after_a_failing_line_explains_it() -> None:
    r = parse("t", "TAP version 13\nnot ok 1 - pids limit\n# expect: 5, actual: 6\n1..1\n", "", 0, 0.1)
    assert r.failures == ["pids limit [expect: 5, actual: 6]"]
