"""The failure corpus (tests/failures.py), graded by the real workflow: each case's exact score, message and flags.

In a temporary course directory at the usual permissions (a checkout with umask 022: everything readable by others):
`nbgrader generate_assignment`, every case submitted (plus a perfect and a blank student), `python -m nbgrader_sandbox
autograde 01-layernorm --jobs 2`, `nbgrader generate_feedback`, then plain `nbgrader autograde` again for a few
attackers. Then: the gradebook's score of each case, its feedback page, its integrity-report flags, one complete
gradebook row per submission, the grades CSV.

When the tests run as root, the whole corpus is graded a second time by an ordinary user (an instructor without
root, created for the test, the course in their home), under load: the grading confined to one CPU with two CPU hogs
on it, so that each of its two jobs gets at most a quarter of a CPU (four hogs spread over two CPUs left each about a
third, and took more CPU time from the rest of the test suite, run beside it): every score must equal the quiet root
run's. Time limits are small here (2 CPU seconds per call, 8 s per kernel cell) to keep the module short.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from accounts import as_user, make_user, remove_user, user_python
from corpus import CORRECT, write_submission
from failures import ASSIGNMENT, GRADER_TOKEN, build, cases

from nbgrader_sandbox import sandbox

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ATTACKERS = ["reads-hidden-tests", "private-reference", "notebook-is-a-fifo", "symlinks-in-submission"]
INSTRUCTOR = "lnkit-instructor"
# nbgrader autograde itself fails a student whose only notebook has another name (it is not in the gradebook); the
# parallel command says so and exits 1, as nbgrader does, after grading everyone else
NBGRADER_FAILS = {"notebook-renamed"}


def _graded_all_but_nbgraders_failures(out: subprocess.CompletedProcess) -> None:
    failed = set(re.findall(r"^NBGRADER ERROR (\S+):", out.stderr, re.M))
    assert (out.returncode, failed) == (1, NBGRADER_FAILS), f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def run(*cmd: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _limits() -> dict:
    return {"LNKIT_CALL_SECONDS": "2", "LNKIT_START_SECONDS": "10", "LNKIT_KERNEL_CELL_SECONDS": "8",
            "LNKIT_NOTEBOOK_WALL_SECONDS": "60",
            "LNKIT_TEST_TOKEN": GRADER_TOKEN}  # a variable of the grader's that student code must never see


def _prepare(course: Path, nbgrader: list[str], env: dict, runner) -> list:
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "root-only.txt").write_text("ROOT-ONLY-MARKER: a file only the grader may read\n")
    for path in [course, *course.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # as a course checked out with a usual umask
    os.chmod(course / "root-only.txt", 0o600)
    runner(*nbgrader, "generate_assignment", ASSIGNMENT, "--force")
    corpus = cases(course)
    for case in corpus:
        build(course, case)
    for student, answers in (("perfect", CORRECT), ("blank", {})):
        write_submission(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", answers,
                         course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return corpus


def _results(course: Path, corpus: list, out: subprocess.CompletedProcess) -> dict:
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
    owners = {p: os.stat(course / p).st_uid for p in ("gradebook.db", "autograded", "feedback", "grades.csv")}
    return {"course": course, "cases": corpus, "scores": scores, "rows": rows, "flags": flags, "grades": grades,
            "stdout": out.stdout, "report": report, "modes": modes, "owners": owners,
            "students": ["perfect", "blank", *(c.id for c in corpus)]}


@pytest.fixture(scope="module")
def graded():
    """The corpus graded by whoever runs the tests (root in CI), on a quiet machine."""
    # not pytest's tmp_path: its folders are closed to other users; a course folder open to others is the case
    course = Path(tempfile.mkdtemp(prefix="lnkit-failures-"))
    os.chmod(course, 0o755)
    if os.geteuid() == 0:
        os.chown(course, 65534, 65534)  # the course folder's owner is not root: root's grading hands files back
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **_limits())
    try:
        corpus = _prepare(course, [str(BIN / "nbgrader")], env, lambda *a: run(*a, cwd=course, env=env))
        out = subprocess.run([sys.executable, "-m", "nbgrader_sandbox", "autograde", ASSIGNMENT, "--jobs", "2",
                              "--no-progress"], cwd=course, env=env, capture_output=True, text=True)
        _graded_all_but_nbgraders_failures(out)
        run(str(BIN / "nbgrader"), "generate_feedback", ASSIGNMENT, "--force", cwd=course, env=env)
        results = _results(course, corpus, out)
        # plain nbgrader autograde, the formgrader's path, on the same course: the same scores for the attackers
        for student in ATTACKERS:
            run(str(BIN / "nbgrader"), "autograde", ASSIGNMENT, "--force", "--student", student, cwd=course, env=env)
        again = _results(course, corpus, out)
        results["plain"] = {s: again["scores"][s][:2] for s in ATTACKERS}
        yield results
    finally:
        shutil.rmtree(course, ignore_errors=True)


@pytest.fixture(scope="module")
def graded_by_an_ordinary_user_under_load(tmp_path_factory):
    """The same corpus graded by an instructor without root, the course in their home, under load: the grading and
    two CPU hogs confined to one CPU (taskset; every process it starts, its sandboxes included, inherits that)."""
    if os.geteuid() != 0:
        pytest.skip("making an ordinary user needs root (run as an ordinary user, the first run is this one)")
    home = make_user(INSTRUCTOR)
    hogs = []
    base = Path(tempfile.mkdtemp(prefix="lnkit-userpy-"))
    try:
        os.chmod(base, 0o755)
        python = user_python(base)
        course = home / "layernorm"
        course.mkdir()
        env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **_limits()}
        nbgrader = [str(python), "-m", "nbgrader"]

        def as_instructor(*argv):
            subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(course)], check=True)
            return as_user(INSTRUCTOR, *argv, env=env, cwd=course)

        corpus = _prepare(course, nbgrader, env, as_instructor)
        subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(course)], check=True)
        cpu = str(min(os.sched_getaffinity(0)))
        began = time.monotonic()
        hogs = [subprocess.Popen(["taskset", "-c", cpu, sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        out = as_user(INSTRUCTOR, "taskset", "-c", cpu, str(python), "-m", "nbgrader_sandbox", "autograde",
                      ASSIGNMENT, "--jobs", "2", "--no-progress", env=env, cwd=course, check=False)
        hog_seconds = sum(sandbox.cpu_seconds(hog.pid) for hog in hogs)
        for hog in hogs:
            hog.kill()
        # for the record (the suite's time): what the load took from everything else running beside it
        (ROOT / ".pytest_cache").mkdir(exist_ok=True)
        (ROOT / ".pytest_cache" / "failures_under_load.json").write_text(json.dumps({
            "hogs_cpu_seconds": round(hog_seconds, 1), "grading_wall_seconds": round(time.monotonic() - began, 1)}))
        as_user(INSTRUCTOR, *nbgrader, "generate_feedback", ASSIGNMENT, "--force", env=env, cwd=course)
        left = subprocess.run(["pgrep", "-a", "-u", INSTRUCTOR], capture_output=True, text=True).stdout
        _graded_all_but_nbgraders_failures(out)
        yield {**_results(course, corpus, out), "left_running": left}
    finally:
        for hog in hogs:
            hog.kill()
        remove_user(INSTRUCTOR)
        shutil.rmtree(base, ignore_errors=True)


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


def test_no_feedback_shows_the_hidden_tests(graded):
    for student in graded["students"]:
        page = feedback(graded, student)
        assert "BEGIN HIDDEN TESTS" not in page and "hidden=True" not in page, student
    assert "(hidden tests: not shown)" in feedback(graded, "perfect")


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

def test_plain_nbgrader_autograde_scores_the_attackers_as_the_parallel_command(graded):
    assert graded["plain"] == {s: graded["scores"][s][:2] for s in ATTACKERS}


def test_nothing_is_left_behind_on_the_machine(graded):
    for where in ("/dev/shm/lnkit-fill", "/var/tmp/lnkit-fill"):
        assert not os.path.exists(where), where
    assert "left running after grading" not in graded["report"]
    if os.geteuid() == 0:  # no kernel's sockets folder stays behind, not even a dead kernel's (os-exit)
        from nbgrader_sandbox.sandbox import sandbox_uid, submission_key

        uids = {sandbox_uid(submission_key(graded["course"] / "autograded" / s / ASSIGNMENT), 2_100_000_000)
                for s in graded["students"]}
        tmp = tempfile.gettempdir()
        left = [d for d in os.listdir(tmp) if d.startswith("sandbox-kernel-") and os.stat(os.path.join(tmp, d)).st_uid
                in uids]
        assert left == [], left


def test_files_written_by_root_belong_to_the_course_owner(graded):
    if os.geteuid() != 0:
        pytest.skip("grading as an ordinary user writes files as that user")
    for path, uid in graded["owners"].items():
        if path != "feedback":  # written by the test's own `nbgrader generate_feedback`, as root
            assert uid == 65534, (path, uid)


def test_an_ordinary_user_under_load_grades_exactly_as_root_on_a_quiet_machine(graded,
                                                                             graded_by_an_ordinary_user_under_load):
    other = graded_by_an_ordinary_user_under_load
    assert {s: v[:3] for s, v in other["scores"].items()} == {s: v[:3] for s, v in graded["scores"].items()}
    assert "in a user namespace of the grader's user" in other["report"]
    page = feedback(other, "reads-hidden-tests")
    assert page.count("blocked: FileNotFoundError") >= 2 and "HIDDEN-TESTS-READ" not in page
    for student in ("symlinks-in-submission", "prints-environment", "finds-course-from-lnkit"):
        page = feedback(other, student)
        for marker in ("BEGIN SOLUTION", "ROOT-ONLY-MARKER", GRADER_TOKEN):
            assert marker not in page, (student, marker)
    assert other["left_running"] == "", other["left_running"]
