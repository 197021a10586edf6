"""``tradedrill load-spec``'s options (the new user's defect 8): it accepted a --run-dir that was not fresh
(``out/load/run-1`` holding 5,824 history lines, ``/etc``) and ``--timeout-s nan`` (written as ``"timeout_s":
NaN``). Now each is refused in one line on stderr, exit 2, before the stack is read and before anything is
written: a run dir must not exist or be empty; --timeout-s is a finite number from 0.1 to 60. No stack here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_spec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradedrill.cli", "load-spec", "--dir", str(tmp_path / "nostack"),
                           "--out", str(tmp_path / "spec.json"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def refused(got: subprocess.CompletedProcess, *words: str) -> str:
    assert got.returncode == 2, got.stdout + got.stderr
    assert "Traceback" not in got.stderr and "Usage:" not in got.stderr, got.stderr
    line = got.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("tradedrill load-spec: "), got.stderr
    for w in words:
        assert w in line, line
    return line


def test_a_run_dir_holding_an_earlier_history_is_refused(tmp_path):
    run = tmp_path / "run-1"
    run.mkdir()
    (run / "history.jsonl").write_text('{"type": "invoke"}\n' * 5824)
    line = refused(load_spec(tmp_path, "--run-dir", str(run)), f"--run-dir {run} is not fresh",
                   "history.jsonl with 5,824 lines", "does not exist yet")
    assert "no stack" not in line                     # refused before the stack is read
    assert not (tmp_path / "spec.json").exists() and (run / "history.jsonl").read_text().count("\n") == 5824


@pytest.mark.parametrize("where", ["/etc", "file"])
def test_a_folder_with_files_or_a_file_is_refused(tmp_path, where):
    path = Path("/etc") if where == "/etc" else tmp_path / "a-file"
    if where == "file":
        path.write_text("x")
    refused(load_spec(tmp_path, "--run-dir", str(path)), f"--run-dir {path} is",
            "not fresh" if where == "/etc" else "a file, not a folder")
    assert not (tmp_path / "spec.json").exists()


def test_a_fresh_or_empty_run_dir_passes_on_to_the_stack_check(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for run in (empty, tmp_path / "new"):
        refused(load_spec(tmp_path, "--run-dir", str(run)), "no stack is running")   # the next check, not --run-dir


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.05", "61", "-1"])
def test_a_timeout_that_is_not_a_finite_number_in_range_is_refused(tmp_path, value):
    refused(load_spec(tmp_path, "--run-dir", str(tmp_path / "new"), "--timeout-s", value),
            f"--timeout-s {float(value)!r} is not a number of seconds from 0.1 to 60")
    assert not (tmp_path / "spec.json").exists() and not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, words", [
    (["--timeout-s", "abc"], ["'abc' is not a valid float", "tradedrill load-spec --help"]),
    (["--nope"], ["No such option", "tradedrill load-spec --help"]),
])
def test_values_click_cannot_read_are_one_line_too(tmp_path, args, words):
    refused(load_spec(tmp_path, *args), *words)


@pytest.mark.parametrize("option", ["--out", "--run-dir"])
def test_an_empty_out_or_run_dir_is_named_empty(tmp_path, option):
    """``--out ""`` was refused as "--out . is a folder" (click made the empty text the current folder): a new user
    could not tell that the value given was empty."""
    args = ["--out", ""] if option == "--out" else ["--run-dir", ""]
    got = subprocess.run([sys.executable, "-m", "tradedrill.cli", "load-spec", "--dir", str(tmp_path / "nostack"),
                          *([] if option == "--out" else ["--out", str(tmp_path / "spec.json")]), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    refused(got, f"{option} is empty")
    assert not (tmp_path / "spec.json").exists()
