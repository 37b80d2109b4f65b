"""A second course that knows nothing of LayerNorm, graded by the grader package alone.

An ordinary nbgrader assignment (nbgrader's default folders: source/, release/, submitted/), whose test cells are
plain asserts, in a Python where lnkit cannot be imported; its nbgrader_config.py is the grader's README's: one call
to ``configure``. It is released with ``nbgrader generate_assignment``, graded with ``nbgrader autograde`` and with the
parallel command (the ``nbgrader-sandbox`` script), sandboxed, as root and, where the tests run as root, again as an
ordinary instructor with the course in their home. Both must give every student the same, exact score.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from accounts import as_user, make_user, remove_user, user_python

pytestmark = pytest.mark.slow

ASSIGNMENT = "squares"
INSTRUCTOR = "sq-instructor"

CONFIG = """\
from nbgrader_sandbox.config import configure

c = get_config()
configure(c)  # no course module: the test cells are plain asserts
c.CourseDirectory.course_id = "squares101"
c.GradingSandbox.default_packages = []  # plain Python: the notebook imports nothing
c.GradingSandbox.call_seconds = 2.0
c.Execute.timeout = 8
c.GradingSandbox.notebook_wall_seconds = 60.0
"""

SOLUTION = {
    "squares": "def squares(n):\n    ### BEGIN SOLUTION\n    return [i * i for i in range(n)]\n    ### END SOLUTION\n",
    "mean": "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION\n",
}
TESTS = {  # grade_id: (source, points)
    "test_squares": ("assert squares(3) == [0, 1, 4]\nassert squares(0) == []\n", 2),
    "test_squares_more": ("assert squares(1) == [0]\n### BEGIN HIDDEN TESTS\nassert squares(5) == [0, 1, 4, 9, 16]\n"
                          "### END HIDDEN TESTS\n", 1),
    "test_mean": ("import math\nassert math.isclose(mean([1, 2, 3]), 2.0)\n", 2),
}
# student: (their cells, the exact score out of 5)
STUDENTS = {
    "ada": ({"squares": "def squares(n):\n    return [k ** 2 for k in range(n)]\n",
             "mean": "def mean(xs):\n    return sum(xs) / len(xs)\n"}, 5),
    "bob": ({"squares": "def squares(n):\n    return [k ** 2 for k in range(n)]\n",
             "mean": "def mean(xs):\n    return sum(xs) / (len(xs) + 1)\n"}, 3),
    # passes the visible cases only: the hidden test (drawn from the instructor's source) catches it
    "cy": ({"squares": "def squares(n):\n    return {0: [], 1: [0], 3: [0, 1, 4]}[n]\n",
            "mean": "def mean(xs):\n    return sum(xs) / len(xs)\n"}, 4),
    # an endless loop in one function: that function fails on the CPU-time limit, the other is graded
    "dee": ({"squares": "def squares(n):\n    while True:\n        pass\n",
             "mean": "def mean(xs):\n    return sum(xs) / len(xs)\n"}, 2),
    # reaches for the gradebook and ends the process: nothing of it works, and nothing stops the others
    "eve": ({"squares": "def squares(n):\n    return list(open('../../../gradebook.db', 'rb').read(n))\n",
             "mean": "import os\n\ndef mean(xs):\n    os._exit(0)\n"}, 0),
}


def _notebook(cells: list) -> dict:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                         "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _cell(grade_id: str, source: str, *, solution=False, points=None) -> dict:
    meta = {"grade": points is not None, "solution": solution, "locked": not solution, "grade_id": grade_id,
            "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"cell_type": "code", "id": grade_id.replace("_", "-"), "metadata": {"nbgrader": meta}, "source": source,
            "outputs": [], "execution_count": None}


def _prepare(course: Path, runner) -> None:
    (course / "nbgrader_config.py").write_text(CONFIG)
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    cells = [{"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "Write `squares` and `mean`."},
             _cell("squares", SOLUTION["squares"], solution=True),
             _cell("test_squares", TESTS["test_squares"][0], points=TESTS["test_squares"][1]),
             _cell("test_squares_more", TESTS["test_squares_more"][0], points=TESTS["test_squares_more"][1]),
             _cell("mean", SOLUTION["mean"], solution=True),
             _cell("test_mean", TESTS["test_mean"][0], points=TESTS["test_mean"][1])]
    (source / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(_notebook(cells)))
    runner("nbgrader", "generate_assignment", ASSIGNMENT, "--force")
    release = json.loads((course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    assert "squares(5)" not in json.dumps(release) and "range(n)" not in json.dumps(release)
    for student, (answers, _) in STUDENTS.items():
        nb = json.loads(json.dumps(release))
        for cell in nb["cells"]:
            grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell["source"] = answers[grade_id]
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(nb))


def _grade(course: Path, runner) -> dict:
    """``nbgrader autograde`` for one student, then the parallel command for the class: scores and isolation."""
    runner("nbgrader", "autograde", ASSIGNMENT, "--student", "ada")
    out = runner("nbgrader-sandbox", "autograde", ASSIGNMENT, "--jobs", "2", "--no-progress")
    assert f"autograded {len(STUDENTS)} submissions" in out.stdout, out.stdout
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s.student.id: (s.score, s.max_score) for s in gb.assignment_submissions(ASSIGNMENT)}
    isolation = {}
    for student in STUDENTS:
        nb = json.loads((course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
        isolation[student] = nb["metadata"]["nbgrader_sandbox"]["isolation"]
    return {"scores": scores, "isolation": isolation, "stdout": out.stdout}


def _expected() -> dict:
    return {s: (float(score), 5.0) for s, (_, score) in STUDENTS.items()}


def _no_lnkit(python: Path) -> None:
    out = subprocess.run([str(python), "-I", "-c", "import lnkit"], capture_output=True, text=True, cwd="/")
    assert out.returncode != 0 and "No module named 'lnkit'" in out.stderr, out


@pytest.fixture(scope="module")
def python_without_lnkit():
    base = Path(tempfile.mkdtemp(prefix="sq-python-"))
    os.chmod(base, 0o755)
    try:
        python = user_python(base, hide=("lnkit",))
        _no_lnkit(python)
        yield python
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _runner(python: Path, cwd: Path, user: str | None = None):
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(cwd if user is None else Path(f"~{user}")
                                                                   .expanduser()), "LANG": "C.UTF-8"}

    def run(*argv: str) -> subprocess.CompletedProcess:
        if user is not None:
            return as_user(user, *argv, env=env, cwd=cwd)
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(argv)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out

    return run


def test_a_course_of_plain_asserts_is_graded_exactly_by_whoever_runs_it(python_without_lnkit):
    course = Path(tempfile.mkdtemp(prefix="sq-course-"))
    try:
        run = _runner(python_without_lnkit, course)
        _prepare(course, run)
        graded = _grade(course, run)
        assert graded["scores"] == _expected(), graded["stdout"]
        for student, how in graded["isolation"].items():
            assert how and "NO SANDBOX" not in how, (student, how)
            if os.geteuid() == 0:  # the uid of this submission's folder: the one the parallel command sweeps after
                from nbgrader_sandbox.limits import UID_BASE
                from nbgrader_sandbox.sandbox import sandbox_uid, submission_key

                uid = sandbox_uid(submission_key(str(course / "autograded" / student / ASSIGNMENT)), UID_BASE)
                assert f"uid {uid} of its own" in how, how
    finally:
        shutil.rmtree(course, ignore_errors=True)


def test_an_ordinary_instructor_grades_it_the_same(python_without_lnkit):
    if os.geteuid() != 0:
        pytest.skip("making an ordinary user needs root (run as an ordinary user, the test above is this one)")
    home = make_user(INSTRUCTOR)
    try:
        course = home / "squares101"
        course.mkdir()
        subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(course)], check=True)
        run = _runner(python_without_lnkit, course, user=INSTRUCTOR)

        def as_instructor(*argv):
            subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(course)], check=True)
            return run(*argv)

        _prepare(course, as_instructor)
        graded = _grade(course, as_instructor)
        assert graded["scores"] == _expected(), graded["stdout"]
        for student, how in graded["isolation"].items():
            assert "user namespace" in how and "NO SANDBOX" not in how, (student, how)
    finally:
        remove_user(INSTRUCTOR)
