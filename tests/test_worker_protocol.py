"""The parallel command's worker protocol (nbgrader_sandbox.worker, parallel._Worker): JSON only, in both directions.

A student id is a folder name, which may hold anything but "/": a newline, or a first "{". Under the old protocol
(ids as bare lines, a line starting with "{" a command), such a folder turned into a command, or into two students.
Here every id travels inside a JSON request, and each request gets exactly one reply, about that id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nbgrader_sandbox import parallel

ROOT = Path(__file__).resolve().parents[1]
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
