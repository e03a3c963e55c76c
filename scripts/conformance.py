#!/usr/bin/env python3
"""Run the opencontainers/runtime-tools validation suite against OCI runtimes and tabulate the results.

Each `validation/*/*.t` in a built runtime-tools checkout is a TAP program. We execute it directly
(no `prove`, no node-tap) from the checkout root with RUNTIME=<runtime>, under a timeout, and parse
its output:

- `ok N - ...` / `not ok N - ...` lines are assertions (a `# SKIP` directive marks a skipped one);
- a YAML diagnostic block that follows no test line and carries an "error" (the hook tests report
  failures that way, with a `1..0` plan) is a failure of the file;
- a non-zero exit status without any `not ok` is an error (util.Fatal: the runtime failed to create
  the container, for example); a timeout is an error too.

A file "fully passes" when it exits 0 with no `not ok`, no error diagnostic and, if it printed a plan,
as many test lines as planned. ("_fail" tests that expect the runtime to refuse a config print no TAP
at all and exit 0 when it does.) "Failing assertions" counts `not ok` lines only.

Both runtimes run in the same invocation, test by test, and the markdown written to --out compares
them side by side, with the date and the command line. Must run as root: the tests create containers.

Between test files we clean up what the tests leave behind, and only that: bundles are created under
a private TMPDIR which is unmounted (lazily) and removed afterwards, and `cgrouptest`/`testdir` cgroup
directories that appeared during the test are rmdir'ed (rmdir only removes empty cgroups).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TEST_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
PLAN_LINE = re.compile(r"^1\.\.(\d+)")
DIRECTIVE = re.compile(r"#\s*(SKIP|TODO)\b", re.IGNORECASE)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_TEST_NAMES = ("cgrouptest", "testdir")


@dataclass
class TapResult:
    """The parsed outcome of one test file against one runtime."""

    test: str
    exit_code: int | None  # None: killed by our timeout
    duration: float
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    plan: int | None = None
    failures: list[str] = field(default_factory=list)  # "not ok" descriptions, with their error
    diag_errors: list[str] = field(default_factory=list)  # errors in YAML blocks outside test lines
    stderr_head: str = ""
    bailed_out: str | None = None

    @property
    def count(self) -> int:
        return self.passed + self.failed + self.skipped

    @property
    def status(self) -> str:
        if self.exit_code is None:
            return "TIMEOUT"
        if self.failed or self.diag_errors or self.bailed_out:
            return "FAIL"
        if self.exit_code != 0:
            return "ERROR"
        if self.plan is not None and self.plan != self.count:
            return "FAIL"
        if self.count and self.skipped == self.count:
            return "SKIP"
        return "PASS"

    @property
    def fully_passed(self) -> bool:
        return self.status == "PASS"

    def first_failure(self) -> str:
        if self.failures:
            return self.failures[0]
        if self.diag_errors:
            return self.diag_errors[0]
        if self.bailed_out:
            return f"Bail out! {self.bailed_out}"
        if self.exit_code is None:
            return "timed out" + (f"; stderr: {self.stderr_head}" if self.stderr_head else "")
        if self.exit_code != 0:
            return f"exit status {self.exit_code}" + (f": {self.stderr_head}" if self.stderr_head else "")
        if self.plan is not None and self.plan != self.count:
            return f"planned {self.plan} tests, saw {self.count}"
        return ""


def _load_block(block: list[str]) -> dict[str, object]:
    """A TAP YAML block as a dict (tap-go writes JSON inside it); {"text": ...} if it is not JSON."""
    text = "\n".join(block)
    try:
        data = json.loads(text)
    except ValueError:
        m = re.search(r'"?error"?\s*:\s*"?(.*)', text)
        return {"error": m.group(1).strip().strip('",')} if m else {"text": text.strip()}
    return data if isinstance(data, dict) else {"text": str(data)}


def _first_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _explain(data: dict[str, object]) -> str:
    """One line out of a diagnostic block: its error (and stderr), or its other fields."""
    if "stdout" in data:  # RuntimeInsideValidate: runtimetest's own TAP output, run in the container
        inner = parse_tap("runtimetest", str(data["stdout"]), str(data.get("stderr", "")), 0, 0.0)
        if inner.failures or inner.diag_errors:
            return f"inside: {inner.first_failure()}"
        if data.get("stderr"):
            return f"stderr: {_first_line(data['stderr'])}"
        if not str(data["stdout"]).strip():
            return "runtimetest printed nothing"
    if data.get("error"):
        err = " ".join(str(data["error"]).split())
        return err + (f"; stderr: {_first_line(data['stderr'])}" if data.get("stderr") else "")
    rest = {k: v for k, v in data.items() if k not in ("reference", "level", "stdout", "stderr")}
    return ", ".join(f"{k}={v!r}" for k, v in rest.items())


def parse_tap(test: str, stdout: str, stderr: str, exit_code: int | None, duration: float) -> TapResult:
    """Parse one test file's TAP output.

    tap-go places diagnostic blocks on either side of their test line: util.SpecErrorOK prints the
    line and then its block, util.RuntimeInsideValidate prints a block holding runtimetest's own TAP
    output ("stdout") and then the line. So a block with "stdout" explains the next test line, any
    other block explains the test line just before it, and a block with an "error" that explains
    no test line (after `TAP version` or a plan) is a failure of its own.
    """
    res = TapResult(test=test, exit_code=exit_code, duration=duration)
    lines = stdout.splitlines()
    last_test: int | None = None  # index into res.failures, or -1 for a passing line
    pending: dict[str, object] | None = None  # an inside-validate block waiting for its test line
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == "---":  # YAML diagnostic block until "..."
            block: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "...":
                block.append(lines[i])
                i += 1
            data = _load_block(block)
            if "stdout" in data:
                pending = data
            elif last_test is not None:
                if last_test >= 0 and (why := _explain(data)):
                    res.failures[last_test] += f" [{why}]"
            elif data.get("error"):
                res.diag_errors.append(_explain(data))
            last_test = None
            i += 1
            continue
        m = TEST_LINE.match(line)
        if m:
            kind, _num, desc = m.groups()
            directive = DIRECTIVE.search(desc)
            last_test = -1
            if directive and directive.group(1).upper() == "SKIP":
                res.skipped += 1
            elif kind == "ok" or (directive and directive.group(1).upper() == "TODO"):
                res.passed += 1
            else:
                res.failed += 1
                text = desc.strip() or "(no description)"
                if pending is not None and (why := _explain(pending)):
                    text += f" [{why}]"
                res.failures.append(text)
                last_test = len(res.failures) - 1
            pending = None
            i += 1
            continue
        pm = PLAN_LINE.match(stripped)
        if pm:  # a file may print several TAP streams (linux_cgroups_cpus does): plans add up
            res.plan = (res.plan or 0) + int(pm.group(1))
            last_test = None
        elif stripped.startswith("TAP version"):
            last_test = None
        elif stripped.startswith("Bail out!"):
            res.bailed_out = stripped[len("Bail out!") :].strip()
            last_test = None
        elif (
            stripped.startswith("#")
            and last_test is not None
            and last_test >= 0
            and not res.failures[last_test].endswith("]")
        ):
            # the cgroup tests explain a failure in a comment: "# expect: 10, actual: 20"
            res.failures[last_test] += f" [{stripped.lstrip('# ')}]"
        # other lines (comments, descriptions continued over several lines) keep the block that
        # follows attached to the last test line
        i += 1
    useful = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    res.stderr_head = " / ".join(useful[:2])[:300]
    return res


# ---------------------------------------------------------------- cleanup of what tests leave behind


def _mounts_under(prefix: Path) -> list[str]:
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == str(prefix) or target.startswith(str(prefix) + "/"):
                found.append(target)
    return found


def _remove_tree(path: Path) -> list[str]:
    """Lazily unmount everything under path, then remove it without crossing file systems."""
    problems = []
    for target in sorted(set(_mounts_under(path)), key=lambda p: p.count("/"), reverse=True):
        r = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"umount {target}: {r.stderr.strip()}")
    if _mounts_under(path):
        problems.append(f"still mounted under {path}; left in place")
        return problems
    r = subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"rm {path}: {r.stderr.strip()[:200]}")
    return problems


def _test_cgroups() -> set[Path]:
    found: set[Path] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for ctrl in CGROUP_ROOT.iterdir():
        for name in CGROUP_TEST_NAMES:
            for depth in ("", "*/", "*/*/"):
                found.update(p for p in ctrl.glob(depth + name) if p.is_dir())
    return found


def _remove_cgroups(new: set[Path]) -> list[str]:
    problems = []
    for cg in sorted(new, key=lambda p: len(p.parts), reverse=True):
        for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            cg.rmdir()
        except OSError as e:
            problems.append(f"cgroup {cg} left: {e.strerror}")
    return problems


# ---------------------------------------------------------------- running


TRACE_SHIM = r"""#!/bin/bash
# Written by scripts/conformance.py --trace: log each runtime call (argv, exit status, stderr).
real=$WASMLAB_CONFORMANCE_REAL
log=$WASMLAB_CONFORMANCE_TRACE
{ printf '$'; printf ' %q' "$(basename "$real")" "$@"; echo; } >>"$log"
if [ -f /dev/stderr ]; then
  # stderr is a file (runtime-tools gives `create` one, which the container inherits): pass it
  # through untouched and copy what the runtime appended to it
  errpath=$(readlink -f /proc/$$/fd/2)
  before=$(stat -c %s "$errpath")
  "$real" "$@"
  rc=$?
  tail -c +$((before + 1)) "$errpath" 2>/dev/null | sed 's/^/  | /' >>"$log"
else
  err=$(mktemp)
  "$real" "$@" 2>"$err"
  rc=$?
  cat "$err" >&2
  sed 's/^/  | /' "$err" >>"$log"
  rm -f "$err"
fi
echo "  -> exit $rc" >>"$log"
exit $rc
"""


def run_one(
    checkout: Path, test: Path, runtime: str, timeout: float, scratch: Path, trace: Path | None = None
) -> tuple[TapResult, str, str]:
    tmpdir = Path(tempfile.mkdtemp(prefix="rt-", dir=scratch))
    tmpdir.chmod(0o755)  # like /tmp: bundles must stay reachable for uids mapped in a user namespace
    env = dict(os.environ, RUNTIME=runtime, TMPDIR=str(tmpdir))
    if trace is not None:
        shim = scratch / "runtime-trace-shim"
        if not shim.exists():
            shim.write_text(TRACE_SHIM)
            shim.chmod(0o755)
        trace.write_text("")
        env.update(RUNTIME=str(shim), WASMLAB_CONFORMANCE_REAL=runtime, WASMLAB_CONFORMANCE_TRACE=str(trace))
    cgroups_before = _test_cgroups()
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(test)],
        cwd=checkout,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out_b, err_b = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out_b, err_b = proc.communicate()
        code = None
    duration = time.monotonic() - start
    out = out_b.decode(errors="replace")
    err = err_b.decode(errors="replace")
    name = str(test.relative_to(checkout))
    result = parse_tap(name, out, err, code, duration)
    problems = _remove_tree(tmpdir) + _remove_cgroups(_test_cgroups() - cgroups_before)
    for p in problems:
        print(f"  cleanup: {p}", file=sys.stderr)
    return result, out, err


def runtime_label(path: str, others: list[str]) -> str:
    label = Path(path).name
    return path if others.count(label) > 1 else label


def runtime_version(path: str) -> str:
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
        first = (r.stdout or r.stderr).strip().splitlines()
        return first[0] if first else f"(exit {r.returncode})"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(unavailable: {e})"


def cgroup_mode() -> str:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "v2 (unified)"
    if (CGROUP_ROOT / "unified").is_dir():
        return "hybrid (v1 controllers + v2 at /sys/fs/cgroup/unified)"
    return "v1"


def md_cell(text: str, limit: int = 260) -> str:
    text = " ".join(re.sub(r"Refer to: \S+", "", text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def summarize(results: list[TapResult]) -> dict[str, int]:
    return {
        "files": len(results),
        "fully_passed": sum(r.fully_passed for r in results),
        "failing_assertions": sum(r.failed for r in results),
        "passing_assertions": sum(r.passed for r in results),
        "errored_files": sum(r.status in ("ERROR", "TIMEOUT") for r in results),
        "passed_without_assertions": sum(r.fully_passed and r.count == 0 for r in results),
    }


def render(
    labels: list[str], table: dict[str, dict[str, TapResult]], meta: dict[str, str], versions: dict[str, str]
) -> str:
    tests = sorted(table)
    out = ["# OCI runtime-tools conformance", ""]
    out.append(f"- Date: {meta['date']}")
    out.append(f"- Command: `{meta['command']}`")
    out.append(f"- runtime-tools: {meta['commit']} (`validation/*/*.t`, run directly, TAP parsed)")
    out.append(f"- Host: Linux {meta['kernel']}, cgroups {meta['cgroups']}, running as uid {meta['uid']}")
    for label in labels:
        out.append(f"- `{label}`: {meta['paths'][label]} — {versions[label]}")
    out.append("")
    out.append(
        "A file passes fully when it exits 0 with no `not ok`, no error diagnostic and a complete plan. "
        '"not ok" counts failing assertions. ERROR: the test exited non-zero without a `not ok` '
        "(usually: the runtime failed to create the container); TIMEOUT: killed after "
        f"{meta['timeout']} s. Some files pass with no assertion at all (hook tests print only a "
        "plan when the lifecycle went right; `*_fail` tests print nothing when the runtime refuses "
        "the config): `PASS 0/0`. Generated by `scripts/conformance.py`; do not edit by hand."
    )
    out.append("")
    out.append("## Totals")
    out.append("")
    out.append(
        "| runtime | files fully passed | of which with no assertion | failing assertions "
        "| passing assertions | errored files |"
    )
    out.append("|---|---|---|---|---|---|")
    for label in labels:
        s = summarize([table[t][label] for t in tests])
        out.append(
            f"| `{label}` | {s['fully_passed']} / {s['files']} | {s['passed_without_assertions']} "
            f"| {s['failing_assertions']} "
            f"| {s['passing_assertions']} | {s['errored_files']} |"
        )
    out.append("")
    out.append("## Per test file")
    out.append("")
    head = "| test file |" + "".join(f" `{lb}` | not ok |" for lb in labels)
    out.append(head)
    out.append("|---|" + "---|---|" * len(labels))
    for t in tests:
        row = f"| {t.split('/')[1]} |"
        for label in labels:
            r = table[t][label]
            detail = f"{r.passed}/{r.plan if r.plan is not None else r.count}"
            cell = r.status if r.status in ("ERROR", "TIMEOUT") and not r.count else f"{r.status} {detail}"
            row += f" {cell} | {r.failed} |"
        out.append(row)
    totals = "| **total** |"
    for label in labels:
        s = summarize([table[t][label] for t in tests])
        totals += f" **{s['fully_passed']} / {s['files']} passed** | **{s['failing_assertions']}** |"
    out.append(totals)
    out.append("")
    out.append("## First failure per file")
    for label in labels:
        out.append("")
        out.append(f"### `{label}`")
        out.append("")
        failing = [table[t][label] for t in tests if not table[t][label].fully_passed]
        if not failing:
            out.append("All files pass.")
            continue
        out.append("| test file | status | first failure |")
        out.append("|---|---|---|")
        for r in failing:
            out.append(f"| {r.test.split('/')[1]} | {r.status} | {md_cell(r.first_failure())} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", required=True, help="OCI runtime binary to test (path or name on PATH)")
    ap.add_argument("--checkout", required=True, type=Path, help="built runtime-tools checkout")
    ap.add_argument("--out", type=Path, help="write the markdown table here (for example docs/conformance.md)")
    ap.add_argument("--compare", help="a second runtime run in the same invocation, e.g. runc")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per test file (default 90)")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only test files whose directory name contains this (repeatable)",
    )
    ap.add_argument("--raw-dir", type=Path, help="save each test's stdout/stderr here")
    ap.add_argument("--json", type=Path, help="also write the parsed results as JSON")
    ap.add_argument(
        "--trace",
        action="store_true",
        help="with --raw-dir: log every runtime call (argv, exit status, stderr) to <test>.trace "
        "through a small bash shim (adds a few ms per call)",
    )
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("conformance: the runtime-tools tests create containers and must run as root.", file=sys.stderr)
        return 2
    checkout = args.checkout.resolve()
    tests = sorted(checkout.glob("validation/*/*.t"))
    if args.trace and not args.raw_dir:
        ap.error("--trace needs --raw-dir")
    if not (checkout / "runtimetest").is_file() or not tests:
        print(
            f"conformance: {checkout} has no runtimetest or validation/*/*.t; build it with "
            "`GOFLAGS=-mod=vendor GOTOOLCHAIN=local make runtimetest validation-executables` "
            "(scripts/conformance.sh does this).",
            file=sys.stderr,
        )
        return 2
    if args.only:
        tests = [t for t in tests if any(o in t.parent.name for o in args.only)]

    paths: list[str] = []
    for spec in [args.runtime] + ([args.compare] if args.compare else []):
        found = shutil.which(spec) if "/" not in spec else (spec if os.access(spec, os.X_OK) else None)
        if not found:
            print(f"conformance: runtime {spec!r} not found or not executable.", file=sys.stderr)
            return 2
        paths.append(os.path.abspath(found))
    names = [Path(p).name for p in paths]
    labels = [runtime_label(p, names) for p in paths]
    versions = {lb: runtime_version(p) for lb, p in zip(labels, paths, strict=True)}

    commit = (
        subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--long", "--tags", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "unknown commit"
    )
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)]),
        "commit": commit,
        "kernel": platform.release(),
        "cgroups": cgroup_mode(),
        "uid": str(os.geteuid()),
        "timeout": f"{args.timeout:g}",
        "paths": dict(zip(labels, paths, strict=True)),  # type: ignore[dict-item]
    }

    scratch = Path(tempfile.mkdtemp(prefix="wasmlab-conformance-"))
    scratch.chmod(0o755)
    table: dict[str, dict[str, TapResult]] = {}
    try:
        for n, test in enumerate(tests, 1):
            name = str(test.relative_to(checkout))
            table[name] = {}
            for label, path in zip(labels, paths, strict=True):
                d = args.raw_dir / label.replace("/", "_") if args.raw_dir else None
                if d:
                    d.mkdir(parents=True, exist_ok=True)
                trace = d / f"{test.parent.name}.trace" if d and args.trace else None
                res, out, err = run_one(checkout, test, path, args.timeout, scratch, trace)
                table[name][label] = res
                if d:
                    (d / f"{test.parent.name}.out").write_text(out)
                    (d / f"{test.parent.name}.err").write_text(err)
                print(
                    f"[{n:2}/{len(tests)}] {test.parent.name:36} {label:14} {res.status:7} "
                    f"ok={res.passed} not_ok={res.failed} {res.duration:5.1f}s",
                    file=sys.stderr,
                )
    finally:
        for p in _remove_tree(scratch):
            print(f"  cleanup: {p}", file=sys.stderr)

    text = render(labels, table, meta, versions)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"conformance: wrote {args.out}", file=sys.stderr)
    if args.json:
        data = {
            "meta": meta,
            "versions": versions,
            "totals": {lb: summarize([table[t][lb] for t in table]) for lb in labels},
            "results": {t: {lb: {**vars(r), "status": r.status} for lb, r in v.items()} for t, v in table.items()},
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
