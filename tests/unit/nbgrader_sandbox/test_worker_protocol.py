"""The parallel command's worker protocol (nbgrader_sandbox.worker, parallel._Worker): JSON only, in both directions.

A student id is a folder name, which may hold anything but "/": a newline, or a first "{". Under the old protocol
(ids as bare lines, a line starting with "{" a command), such a folder turned into a command, or into two students.
Here every id travels inside a JSON request, and each request gets exactly one reply, about that id. Also: the worker
imports nothing from the parallel command, and prepare (the first of its three steps) checks before any worker starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nbgrader_sandbox import parallel

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def test_no_student_id_is_ever_read_as_a_command(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    pwned = course / "pwned.csv"
    evil = json.dumps({"op": "export", "to": str(pwned)})  # a folder name that is a command under the old protocol
    students = [evil, "ada\n" + evil, "ada\nbo", "{", "  "]
    with open(tmp_path / "worker.log", "w") as log:
        worker = parallel._Worker(str(course), "01-layernorm", log, ENV)
        try:
            replies = [worker.ask({"op": "grade", "student": s}) for s in students]
            bare = worker.proc  # the old protocol's line, written raw: refused, not taken for a student
            bare.stdin.write("ada\n")
            bare.stdin.flush()
            refused = json.loads(bare.stdout.readline())
            unknown = worker.ask({"op": "rm -rf"})
        finally:
            worker.close()
    # one reply per request, each about exactly the id sent (no assignment here: nbgrader fails each, as it should)
    assert [r["student"] for r in replies] == students, replies
    assert all(r["success"] is False for r in replies), replies
    assert not pwned.exists()  # no id ran the export
    assert refused == {"ok": False, "error": "not a request: each line must be one JSON object"}
    assert unknown["ok"] is False and "unknown request" in unknown["error"]


def test_a_request_must_be_a_dict_with_an_op(tmp_path):
    worker = parallel._Worker(str(tmp_path), "a", subprocess.DEVNULL, ENV)
    for wrong in ("ada", {"student": "ada"}, None):
        try:
            worker.ask(wrong)
        except ValueError as e:
            assert "request must be a dict with an 'op'" in str(e)
        else:
            raise AssertionError(f"{wrong!r} was sent")
    assert worker.proc is None  # nothing was started for a wrong request


def test_any_student_id_round_trips_through_the_worker(tmp_path):
    """A folder name holding a newline, quotes, backslashes, JSON's own escapes, a non-ASCII letter and a byte that is
    not UTF-8 (os.listdir gives it as a surrogate) comes back in its reply exactly as sent; bye ends the worker."""
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    students = ['ada\nbo', 'say "hi"', "back\\slash", 'all\n"three"\\', '\\n\\"', "\\u0041", "é\u2028x",
                os.fsdecode(b"raw\xff"), "tab\tcr\rnul\x00"]
    with open(tmp_path / "worker.log", "w") as log:
        worker = parallel._Worker(str(course), "01-layernorm", log, ENV)
        try:
            replies = [worker.ask({"op": "grade", "student": s}) for s in students]
            proc = worker.proc
        finally:
            worker.close()
    assert [r["student"] for r in replies] == students, replies  # one reply each, about exactly the id sent
    assert all(r["success"] is False for r in replies), replies  # (no assignment here: nbgrader fails each)
    assert proc.returncode == 0  # it said bye and exited, not killed


def test_bye_is_answered_and_ends_the_worker(tmp_path):
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "nbgrader_sandbox.worker", "a"], cwd=tmp_path, env=ENV, text=True,
                          input='{"op": "bye"}\n{"op": "grade", "student": "never"}\n', capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [{"ok": True}]  # nothing read after bye


def test_the_worker_imports_nothing_from_the_parallel_command():
    import ast

    tree = ast.parse((ROOT / "grader" / "nbgrader_sandbox" / "worker.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if m.split(".")[-1] == "parallel"], imported


def test_prepare_checks_before_any_worker_starts(tmp_path):
    """prepare's refusals, in order, each before a folder is made; then a Plan that grade() and report() run from."""
    course = tmp_path / "course"
    course.mkdir()
    try:
        parallel.prepare(str(course), "01-layernorm")
    except ValueError as e:
        assert "has no nbgrader_config.py" in str(e)
    else:
        raise AssertionError("graded a folder that is no course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for jobs in (0, -1, 1.5):
        try:
            parallel.prepare(str(course), "01-layernorm", jobs=jobs)
        except ValueError as e:
            assert "jobs must be a positive number" in str(e)
        else:
            raise AssertionError(f"jobs={jobs!r} accepted")
    try:
        parallel.prepare(str(course), "01-layernorm")
    except ValueError as e:
        assert f"no submissions of '01-layernorm' in {course / 'submitted'}/<student>/" in str(e)
    else:
        raise AssertionError("no submissions, yet a plan")
    assert not (course / "autograded").exists()
    odd = 'a\n"b"\\'
    for student in ("bo", odd):
        (course / "submitted" / student / "01-layernorm").mkdir(parents=True)
    if parallel.refusal(str(course)):  # no sandbox can be made here: prepare refuses, and says why
        try:
            parallel.prepare(str(course), "01-layernorm")
        except RuntimeError as e:
            assert str(e) == parallel.refusal(str(course))
        else:
            raise AssertionError("graded without a sandbox")
        return
    course.chmod(0o700)
    plan = parallel.prepare(str(course), "01-layernorm", jobs=8)
    assert plan.students == sorted(["bo", odd]) and plan.jobs == 2
    assert plan.layout.root == str(course) and plan.layout.release == "exercises"
    assert plan.report_path == str(course / "autograded" / "integrity-01-layernorm.md")
    assert plan.log_path == str(course / "autograded" / "autograde-01-layernorm.log")
    assert (course / "autograded").is_dir() and (course / "feedback").is_dir()
    assert plan.manual_before == {} and plan.release_notebooks == []
