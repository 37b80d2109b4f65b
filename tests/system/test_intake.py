"""Intake (nbgrader_sandbox.intake) on real folders: what it moves aside, what it records, and what happens when it
cannot do its work. The failure corpus (tests/failures.py) grades such submissions through the real commands; these
tests pin the folder-level behaviour, including the failures a whole grading run cannot easily provoke."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nbgrader_sandbox import intake, integrity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: corpus.py, accounts.py
BIN = Path(sys.executable).parent  # nbgrader runs `alembic` from PATH: the venv's bin/ first
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
NOTEBOOK = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}


def submission(tmp_path, student="ada", assignment="01-layernorm"):
    folder = tmp_path / "submitted" / student / assignment
    folder.mkdir(parents=True)
    (folder / f"{assignment}.ipynb").write_text(json.dumps(NOTEBOOK))
    return folder


def test_links_fifos_and_oversized_files_are_moved_aside_and_recorded(tmp_path):
    folder = submission(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    (folder / "notes.txt").symlink_to(secret)
    (folder / "data").mkdir()
    (folder / "data" / "ok.csv").write_text("1,2\n")
    (folder / "linked-folder").symlink_to(tmp_path)
    os.mkfifo(folder / "pipe")
    with open(folder / "big.bin", "wb") as f:  # sparse: past the cap without using the disk
        f.truncate(intake.MAX_FILE_BYTES + 1)

    refused = intake.take_in(str(folder), [str(folder / "01-layernorm.ipynb")])

    assert sorted((r["file"], r["why"]) for r in refused) == [
        ("big.bin", "larger than 64 MiB"), ("linked-folder", "a symbolic link"), ("notes.txt", "a symbolic link"),
        ("pipe", "a FIFO (named pipe)")]
    assert sorted(p.name for p in folder.iterdir()) == ["01-layernorm.ipynb", "data"]
    for item in refused:  # kept, not deleted, and never followed: the link is still a link
        kept = folder.parent / item["kept_at"]
        assert os.path.lexists(kept)
    assert os.path.islink(folder.parent / next(r["kept_at"] for r in refused if r["file"] == "notes.txt"))
    assert secret.read_text() == "SECRET"
    record = folder.parent / ".refused-01-layernorm" / "intake.json"
    assert json.loads(record.read_text()) == refused
    # a regrade finds nothing new and keeps the record; a new refusal is added to it
    assert intake.take_in(str(folder)) == []
    (folder / "again.txt").symlink_to(secret)
    assert [r["file"] for r in intake.take_in(str(folder))] == ["again.txt"]
    assert [r["file"] for r in json.loads(record.read_text())] == [r["file"] for r in refused] + ["again.txt"]
    flags = integrity.scan_submission(str(tmp_path), "01-layernorm", "ada", ["01-layernorm"], str(tmp_path))
    assert sorted(f.detail.split(" was refused")[0] for f in flags if f.kind == "intake") == \
        ["again.txt", "big.bin", "linked-folder", "notes.txt", "pipe"]


def test_a_refused_notebook_becomes_an_empty_notebook_that_says_why(tmp_path):
    folder = submission(tmp_path)
    (folder / "01-layernorm.ipynb").unlink()
    (folder / "01-layernorm.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    intake.take_in(str(folder), [str(folder / "01-layernorm.ipynb")])
    nb = json.loads((folder / "01-layernorm.ipynb").read_text())
    assert "01-layernorm.ipynb was a symbolic link" in nb["cells"][0]["source"]
    assert not os.path.islink(folder / "01-layernorm.ipynb")


def test_a_folder_without_write_permission_is_opened_up_so_its_links_can_be_moved(tmp_path):
    """nbgrader collect keeps the student's modes. Without root, a link in a read-only folder could not be moved, and
    nbgrader would copy what it points to; intake gives the folder's owner (the grader) rwx first."""
    folder = submission(tmp_path)
    locked = folder / "locked"
    locked.mkdir()
    (locked / "zero").symlink_to("/dev/zero")
    locked.chmod(0o500)
    refused = intake.take_in(str(folder))
    assert [r["file"] for r in refused] == ["locked/zero"]
    assert stat.S_IMODE(locked.stat().st_mode) == 0o700
    assert list(locked.iterdir()) == []


def _too_deep(folder, room: int):
    """A link whose own path fits in PATH_MAX (4096) but whose place in the quarantine folder, a few characters
    longer, does not: moving it aside fails with ENAMETOOLONG."""
    path = str(folder)
    while len(path) < 4095 - room - 200:
        path = os.path.join(path, "d" * 200)
    os.makedirs(path)
    name = "x" * (4095 - room - len(path) - 1)
    os.symlink("/dev/zero", os.path.join(path, name))
    return os.path.join(path, name)


def test_a_submission_intake_cannot_check_is_set_aside_whole_and_not_graded(tmp_path, caplog):
    folder = submission(tmp_path)
    _too_deep(folder, room=5)
    notebooks = [str(folder / "01-layernorm.ipynb")]
    with caplog.at_level(logging.ERROR):
        intake.pre_autograde("01-layernorm", "ada", notebooks)
    # nbgrader converts this very list: empty, it fails this student alone and reads nothing of the folder
    assert notebooks == []
    assert not folder.exists()
    record = json.loads((folder.parent / ".refused-01-layernorm" / "intake.json").read_text())
    assert [(r["file"], "ENAMETOOLONG" in r["why"] or "File name too long" in r["why"]) for r in record] == \
        [("the whole submission", True)]
    kept = folder.parent / record[0]["kept_at"]
    assert (kept / "01-layernorm.ipynb").is_file()  # nothing is lost
    assert any("grade this student again" in r.getMessage() and "--student ada" in r.getMessage()
               for r in caplog.records)
    flags = integrity.scan_submission(str(tmp_path), "01-layernorm", "ada", ["01-layernorm"], str(tmp_path))
    assert {f.kind for f in flags} == {"intake"}  # not "missing: scored 0": it was not graded at all
    assert any("the whole submission was refused: intake failed" in f.detail for f in flags)


def test_an_ordinary_regrade_takes_nothing_in_from_autograded(tmp_path):
    """nbgrader autograde also runs the hook over autograded/ when it re-runs: that folder is the grader's own."""
    folder = tmp_path / "autograded" / "ada" / "01-layernorm"
    folder.mkdir(parents=True)
    (folder / "link").symlink_to("/etc/hostname")
    notebooks = [str(folder / "01-layernorm.ipynb")]
    intake.pre_autograde("01-layernorm", "ada", notebooks)
    assert notebooks and os.path.islink(folder / "link")


def test_when_even_setting_aside_fails_the_run_stops_with_what_to_do(tmp_path, monkeypatch):
    """Only where the student's own folder cannot be written (a grader's misconfiguration, not a student's doing):
    nbgrader would otherwise copy the folder's files, following its links, so the run stops and says what to do."""
    folder = submission(tmp_path)
    _too_deep(folder, room=5)

    def cannot(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(intake, "_set_aside_whole", cannot)
    with pytest.raises(SystemExit, match="could not be checked .* nor moved aside"):
        intake.pre_autograde("01-layernorm", "ada", [str(folder / "01-layernorm.ipynb")])


def _course_with_an_uncheckable_submission(place) -> Path:
    """A course with three correct submissions; the middle one ("deep") holds a link intake cannot move aside."""
    from corpus import CORRECT, write_submission

    root = Path(__file__).resolve().parents[2]
    course = place / "course"
    shutil.copytree(root / "solutions" / "01-layernorm", course / "solutions" / "01-layernorm")
    shutil.copy(root / "nbgrader_config.py", course)
    subprocess.run([str(BIN / "nbgrader"), "generate_assignment", "01-layernorm", "--force"], cwd=course, env=ENV,
                   check=True, capture_output=True)
    for student in ("ok", "deep", "zz"):
        write_submission(course / "exercises" / "01-layernorm" / "01-layernorm.ipynb", CORRECT,
                         course / "submitted" / student / "01-layernorm" / "01-layernorm.ipynb")
    _too_deep(course / "submitted" / "deep" / "01-layernorm", room=5)
    return course


@pytest.mark.slow
@pytest.mark.parametrize("command", ["nbgrader autograde", "python -m nbgrader_sandbox autograde"])
def test_an_uncheckable_submission_fails_alone_and_the_command_says_so(tmp_path, command):
    """Through the real commands: the student intake could not check is not graded, the students after it are, and
    the exit status says that not all were (nbgrader's own behaviour for a student it cannot grade)."""
    from nbgrader.api import Gradebook

    course = _course_with_an_uncheckable_submission(tmp_path)
    argv = ([str(BIN / "nbgrader"), "autograde", "01-layernorm"] if command.startswith("nbgrader") else
            [sys.executable, "-m", "nbgrader_sandbox", "autograde", "01-layernorm", "--jobs", "2", "--no-progress"])
    out = subprocess.run(argv, cwd=course, env=ENV, capture_output=True, text=True)
    said = out.stdout + out.stderr
    assert out.returncode == 1, said[-3000:]
    if command.startswith("nbgrader"):  # nbgrader's log names the student and the reason
        assert "deep/01-layernorm: intake failed (OSError: File name too long" in said, said[-3000:]
        assert "error processing assignment '01-layernorm' for student 'deep'" in said, said[-3000:]
    else:  # the parallel command keeps nbgrader's logs in a file: its status line and the report say it
        assert "NBGRADER ERROR deep: see the integrity report" in said, said[-3000:]
        assert "gradebook mismatches" in said and "MISMATCH" not in said, said[-3000:]
        report = (course / "autograded" / "integrity-01-layernorm.md").read_text()
        assert re.search(r"- \*\*intake\*\*: the whole submission was refused: intake failed \(OSError: File name "
                         r"too long.*never read\)", report), report
        assert "scored 0" not in report, report  # it was not graded, and the report must not say it was
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.score for s in gb.assignment_submissions("01-layernorm")}
        # not graded is not a 0: no autograded score was written for deep (a regrade fills them in)
        written = [g.auto_score for s in gb.assignment_submissions("01-layernorm") if s.student.id == "deep"
                   for nb in s.notebooks for g in nb.grades if g.auto_score is not None]
    assert scores.get("ok") == scores.get("zz") == 10.0, scores
    assert not scores.get("deep") and written == [], (scores, written)
    assert not (course / "autograded" / "deep" / "01-layernorm").exists()
    kept = course / "submitted" / "deep" / ".refused-01-layernorm"
    whole = [p for p in kept.iterdir() if p.name.endswith("-whole-submission")]
    assert len(whole) == 1 and (whole[0] / "01-layernorm.ipynb").is_file(), sorted(kept.iterdir())
