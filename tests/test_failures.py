"""Issue 5's failure corpus (tests/failures.py), graded by the real workflow: each case's exact score and message.

In a temporary course directory (world-traversable, as a real course folder is, so that only the grading command's
own tightening keeps student code out): `nbgrader generate_assignment`, every case submitted (plus a perfect and a
blank student), `python -m lnkit.grading autograde 01-layernorm --jobs 2`, `nbgrader generate_feedback`. Then: the
gradebook's score of each case, its feedback page, its integrity-report flags, one complete gradebook row per
submission, the grades CSV. Time limits are small here (2 s per call, 8 s per kernel cell) to keep the module short.
"""

from __future__ import annotations

import csv
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from corpus import CORRECT, write_submission
from failures import ASSIGNMENT, build, cases

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def graded():
    # not pytest's tmp_path: its folders are closed to other users, which would hide the course from student code
    # whatever the grading command does; a course folder open to others is the case to defend
    course = Path(tempfile.mkdtemp(prefix="lnkit-failures-"))
    os.chmod(course, 0o755)
    try:
        yield _grade(course)
    finally:
        shutil.rmtree(course, ignore_errors=True)


def _grade(course: Path) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", LNKIT_CALL_SECONDS="2",
               LNKIT_START_SECONDS="10", LNKIT_KERNEL_CELL_SECONDS="8")
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    for path in [course, *course.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # as a course checked out with a usual umask
    run(str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force", cwd=course, env=env)
    corpus = cases(course)
    for case in corpus:
        build(course, case)
    for student, answers in (("perfect", CORRECT), ("blank", {})):
        write_submission(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", answers,
                         course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for path in [course / "submitted", *(course / "submitted").rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)

    out = run(sys.executable, "-m", "lnkit.grading", "autograde", ASSIGNMENT, "--jobs", "2", "--no-progress",
              cwd=course, env=env)
    run(str(BIN / "nbgrader"), "generate_feedback", ASSIGNMENT, "--force", cwd=course, env=env)

    from nbgrader.api import Gradebook

    scores, rows = {}, {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            rows[sub.student.id] = rows.get(sub.student.id, 0) + 1
            nb = sub.notebooks[0]
            scores[sub.student.id] = (sub.score, sub.max_score, {g.name: g.score for g in nb.grades},
                                      [g.name for g in nb.grades if g.auto_score is None])
    with open(course / "autograded" / f"integrity-{ASSIGNMENT}.csv") as f:
        flags = list(csv.DictReader(f))
    with open(course / "grades.csv") as f:
        grades = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    report = (course / "autograded" / f"integrity-{ASSIGNMENT}.md").read_text()
    modes = {p: os.stat(course / p).st_mode & 0o777 for p in ("solutions", "gradebook.db", "autograded")}
    return {"course": course, "cases": corpus, "scores": scores, "rows": rows, "flags": flags, "grades": grades,
            "stdout": out.stdout, "report": report, "modes": modes,
            "students": ["perfect", "blank", *(c.id for c in corpus)]}


def feedback(graded: dict, student: str) -> str:
    page = graded["course"] / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    if not page.exists():
        return ""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


IDS = [c.id for c in cases(Path("/course"))]


@pytest.mark.parametrize("case_id", IDS)
def test_each_case_gets_its_exact_score_and_message(graded, case_id):
    case = next(c for c in graded["cases"] if c.id == case_id)
    score, max_score, per_cell, _ = graded["scores"][case.id]
    assert (score, max_score) == (case.score, 10), per_cell
    assert graded["grades"][case.id] == case.score
    page = feedback(graded, case.id).lower()
    for words in case.feedback:
        assert words.lower() in page, f"{words!r} not in the feedback of {case.id}"
    for words in case.not_in_feedback:
        assert words.lower() not in page, f"{words!r} in the feedback of {case.id}"


@pytest.mark.parametrize("case_id", IDS)
def test_each_case_is_flagged_exactly_when_it_tampers_or_hits_a_limit(graded, case_id):
    case = next(c for c in graded["cases"] if c.id == case_id)
    details = [f["detail"].lower() for f in graded["flags"] if f["student"] == case.id
               and not any(words.lower() in f["detail"].lower() for words in case.may_flag)]
    if not case.flags:
        assert details == [], details
    for words in case.flags:
        assert any(words.lower() in d for d in details), f"no flag with {words!r} among {details}"


def test_honest_students_score_as_before_and_are_not_flagged(graded):
    assert graded["scores"]["perfect"][:2] == (10, 10)
    assert graded["scores"]["blank"][:2] == (0, 10)
    assert "not written yet" in feedback(graded, "blank")
    assert not [f for f in graded["flags"] if f["student"] in ("perfect", "blank")]


def test_the_gradebook_has_one_complete_row_per_submission(graded):
    assert sorted(graded["rows"]) == sorted(graded["students"])
    assert set(graded["rows"].values()) == {1}
    for student, (_, _, per_cell, unscored) in graded["scores"].items():
        assert unscored == [], (student, per_cell)
    assert sorted(graded["grades"]) == sorted(graded["students"])
    assert "0 gradebook mismatches" in graded["stdout"]


def test_hidden_tests_and_the_gradebook_are_closed_to_student_code(graded):
    # the course folder stays at its usual permissions: the sandbox, not a chmod, keeps student code out of it
    assert "bubblewrap sandbox per student" in graded["report"]
    for path, mode in graded["modes"].items():
        assert mode & 0o005, (path, oct(mode))
    page = feedback(graded, "reads-hidden-tests")
    assert page.count("blocked: FileNotFoundError") >= 2 and "HIDDEN-TESTS-READ" not in page