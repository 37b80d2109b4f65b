"""Submission times the student cannot set (nbgrader_sandbox.collect), through the real commands.

A temporary course and exchange; fake students (``--student=<id>``) fetch and submit with nbgrader itself, then the
instructor collects with the course's nbgrader_config.py (which names ``TrustedTimeCollect``) and grades with the
parallel command under a "zero" late penalty. "early" submits before the due date; "backdater" submits after it and
then rewrites the ``timestamp.txt`` in its inbound folder (and the one in its own folder, and a link) to a time before
the due date, which stock nbgrader would believe.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus import CORRECT, write_submission

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # nbgrader runs `alembic` from PATH
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
ASSIGNMENT = "01-layernorm"


def nbgrader(*args: str, cwd: Path, exchange: Path) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "nbgrader"), *args, f"--Exchange.root={exchange}", "--CourseDirectory.course_id=layernorm"]
    out = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def _utc(text: str) -> datetime.datetime:
    from nbgrader.utils import parse_utc

    return parse_utc(text)


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collect")
    course, exchange, homes = tmp / "course", tmp / "exchange", tmp / "homes"
    exchange.mkdir()
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    (course / "instructor-only.txt").write_text("INSTRUCTOR-ONLY-MARKER\n")
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course, exchange=exchange)
    nbgrader("release_assignment", ASSIGNMENT, "--force", cwd=course, exchange=exchange)

    def submit(student: str) -> Path:
        home = homes / student
        home.mkdir(parents=True)
        nbgrader("fetch_assignment", ASSIGNMENT, cwd=home, exchange=exchange)
        fetched = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        write_submission(fetched, CORRECT, fetched)
        nbgrader("submit", ASSIGNMENT, f"--student={student}", cwd=home, exchange=exchange)
        (inbound,) = (exchange / "layernorm" / "inbound").glob(f"{student}+{ASSIGNMENT}+*")
        return inbound

    submit("early")
    time.sleep(1.5)
    due = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    time.sleep(1.5)
    inbound = submit("backdater")
    claim = (due - datetime.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    (inbound / "timestamp.txt").write_text(claim)  # after submit, in the exchange: what stock nbgrader reads
    (inbound / "notes.txt").symlink_to(course / "instructor-only.txt")  # stock collect copies what it points to
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=due)
    after_submit = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    nbgrader("collect", ASSIGNMENT, cwd=course, exchange=exchange)
    out = subprocess.run([sys.executable, "-m", "nbgrader_sandbox", "autograde", ASSIGNMENT, "--jobs", "2",
                          "--no-progress"], cwd=course, env=ENV, capture_output=True, text=True)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        # the score after nbgrader's late penalty, as nbgrader export writes it
        subs = {s.student.id: (s.timestamp, s.total_seconds_late, max(0.0, s.score - s.late_submission_penalty))
                for s in gb.assignment_submissions(ASSIGNMENT)}
    with open(course / "grades.csv") as fh:
        grades = {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh)}
    return {"course": course, "due": due, "grades": grades, "claim": claim, "after_submit": after_submit,
            "subs": subs, "out": out, "report": (course / "autograded" / f"integrity-{ASSIGNMENT}.md").read_text(),
            "csv": (course / "autograded" / f"integrity-{ASSIGNMENT}.csv").read_text()}


@pytest.mark.slow
def test_the_gradebook_takes_the_exchanges_time_not_the_students(collected):
    subs, due = collected["subs"], collected["due"]
    assert collected["out"].returncode == 0, collected["out"].stdout + collected["out"].stderr[-3000:]
    stamp, late, score = subs["backdater"]
    assert due < stamp <= collected["after_submit"], (due, stamp)  # the trusted time, not the claim 2 h earlier
    assert late > 0 and score == 0.0 and collected["grades"]["backdater"] == 0.0, subs  # the "zero" penalty
    stamp, late, score = subs["early"]
    assert stamp < due and late == 0 and score == 10.0, subs
    submitted = collected["course"] / "submitted" / "backdater" / ASSIGNMENT
    stamp = subs["backdater"][0]
    assert _utc((submitted / "timestamp.txt").read_text()) == stamp
    record = json.loads((submitted.parent / f".collected-{ASSIGNMENT}.json").read_text())
    assert record["claimed"] == collected["claim"] and _utc(record["trusted"]) == stamp


@pytest.mark.slow
def test_the_integrity_report_flags_the_claim(collected):
    report = collected["report"]
    section = report.split("## backdater")[1].split("\n## ")[0]
    assert "**time**" in section and "timestamp.txt says" in section and "earlier than the submission" in section, \
        report
    assert "## early" not in report, report  # an honest submission: its claim agrees with the exchange
    rows = [(r["student"], r["kind"], r["detail"]) for r in csv.DictReader(collected["csv"].splitlines())]
    prefix = f"claimed submission time: timestamp.txt says {collected['claim']}, "
    assert [(r[0], r[2][:len(prefix)]) for r in rows if r[1] == "time"] == [("backdater", prefix)], rows
    assert [r for r in rows if r[0] == "early"] == [], rows


@pytest.mark.slow
def test_collect_copies_links_as_links(collected):
    """Stock collect copies what a link in the inbound folder points to (here a file of the instructor's); this one
    copies the link, which intake then moves aside and reports, never read."""
    course = collected["course"]
    assert not (course / "submitted" / "backdater" / ASSIGNMENT / "notes.txt").exists()
    kept = list((course / "submitted" / "backdater" / f".refused-{ASSIGNMENT}").rglob("notes.txt"))
    assert len(kept) == 1 and kept[0].is_symlink(), kept
    assert "notes.txt was refused: a symbolic link" in collected["report"]
    for path in (course / "submitted" / "backdater").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert "INSTRUCTOR-ONLY-MARKER" not in path.read_text(errors="replace"), path


def test_trusted_time_is_the_newest_change_and_never_follows_links(tmp_path):
    from nbgrader_sandbox import collect

    folder = tmp_path / "sub"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    first = collect.trusted_time(str(folder))
    time.sleep(0.05)
    (folder / "deep" / "b.txt").write_text("b")  # a change anywhere below makes the time later
    second = collect.trusted_time(str(folder))
    assert second > first
    os.utime(folder / "deep" / "b.txt", (0, 0))  # backdating the mtime changes the ctime: later still
    assert collect.trusted_time(str(folder)) >= second
    (tmp_path / "link").symlink_to(folder)
    with pytest.raises(ValueError, match="not a folder"):
        collect.trusted_time(str(tmp_path / "link"))


def _collector(**settings):
    from nbgrader.coursedir import CourseDirectory

    from nbgrader_sandbox.collect import TrustedTimeCollect

    return TrustedTimeCollect(coursedir=CourseDirectory(), **settings)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user owns needs root")
def test_a_folder_named_for_a_classmate_is_not_collected(tmp_path):
    """inbound lets every student create "victim+assignment+<time>+<anything>": stock collect takes it for the
    victim's newest submission, with a warning. Here it is refused: owned by neither the victim nor the collector."""
    forged = tmp_path / f"victim+{ASSIGNMENT}+2099-01-01 00:00:00.000000 UTC+x"
    forged.mkdir()
    os.chown(forged, 65534, 65534)
    record = _collector()._path_to_record(str(forged))
    assert "owned by" in record["refused"] and "not by the student it names" in record["refused"], record
    assert "refused" not in _collector(check_owner=False)._path_to_record(str(forged))


def test_the_newest_submission_is_chosen_by_the_exchanges_time_not_its_name(tmp_path):
    """The time in a folder's name is the student's too: a later submission named as if made in 2000 is still the
    newest, and a folder that cannot be collected (a link) is never chosen over one that can."""
    older = tmp_path / f"ada+{ASSIGNMENT}+2030-01-01 00:00:00.000000 UTC+a"
    older.mkdir()
    time.sleep(0.05)
    newer = tmp_path / f"ada+{ASSIGNMENT}+2000-01-01 00:00:00.000000 UTC+b"
    newer.mkdir()
    link = tmp_path / f"ada+{ASSIGNMENT}+2040-01-01 00:00:00.000000 UTC+c"
    link.symlink_to(older)
    collector = _collector()
    records = [collector._path_to_record(str(p)) for p in (older, newer, link)]
    assert collector._sort_by_timestamp(records)[0]["filename"] == newer.name
    assert "not a folder" in records[2]["refused"]
