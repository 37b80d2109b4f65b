"""The grading pipeline as an instructor runs it: real nbgrader commands on the real notebooks.

In a temporary course directory (a copy of solutions/ and nbgrader_config.py) and a temporary exchange:
generate_assignment; release_assignment, then fetch_assignment and submit for three fake students (`--student=<id>`
stands in for the OS user name the exchange would otherwise use) and collect; the rest of the submissions are placed
where collect puts them (see the fixture for why); autograde, generate_feedback, export to CSV. Then assert on the
gradebook, the feedback HTML and the CSV.

Students: "perfect" (every solution cell filled with the instructor's solution), "blank" (the release as fetched),
and one student per wrong answer of tests/corpus.py, who submits that answer in its assignment with every other
function correct.

Also: regenerating exercises/ from solutions/ reproduces the committed release notebooks exactly.
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
import time
from pathlib import Path

import nbformat
import pytest
from corpus import CHECKS, WRONG, write_submission

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # nbgrader runs `alembic` from PATH: the venv's bin/ must come first
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / f"{p.name}.ipynb").exists())
COURSE = "layernorm"


def nbgrader(*args: str, cwd: Path, exchange: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(BIN / "nbgrader"), *args]
    if exchange is not None:
        cmd += [f"--Exchange.root={exchange}", f"--CourseDirectory.course_id={COURSE}"]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def solution_sources(assignment: str) -> dict[str, str]:
    """grade_id -> source of every solution cell of the instructor's notebook."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    markers = ("### BEGIN SOLUTION", "### END SOLUTION")
    return {c.metadata["nbgrader"]["grade_id"]: "\n".join(line for line in c.source.splitlines()
                                                          if line.strip() not in markers)
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def points(assignment: str) -> tuple[float, float]:
    """(autograded points, hand-graded points) of an assignment, from its source notebook."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    auto = manual = 0.0
    for c in nb.cells:
        m = c.metadata.get("nbgrader", {})
        if m.get("grade"):
            if c.cell_type == "code" and not m.get("solution"):
                auto += m["points"]
            else:
                manual += m["points"]
    return auto, manual


def students() -> dict[str, dict[str, dict[str, str]]]:
    """student id -> {assignment: {grade_id: source}} (an empty dict submits the release untouched)."""
    perfect = {a: solution_sources(a) for a in ASSIGNMENTS}
    plan = {"perfect": perfect, "blank": {a: {} for a in ASSIGNMENTS}}
    for wrong in WRONG:
        assignment = CHECKS[wrong.function][1]
        # every other function correct; chapter 6's measurement and written answer left as released
        answers = {k: v for k, v in solution_sources(assignment).items()
                   if k not in ("measure", "answer_gradient_norms")}
        answers[wrong.function] = wrong.source
        plan[f"wrong-{wrong.id}"] = {assignment: answers}
    return plan


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Run the whole workflow once; return what the tests assert on."""
    tmp = tmp_path_factory.mktemp("grading")
    course, exchange, homes = tmp / "course", tmp / "exchange", tmp / "homes"
    course.mkdir()
    exchange.mkdir()
    homes.mkdir()
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")

    for a in ASSIGNMENTS:
        nbgrader("generate_assignment", a, "--force", cwd=course)

    # Through the exchange: release, then fetch and submit for three students, then collect. Each nbgrader command
    # costs seconds of start-up (importing nbgrader), so the rest of the corpus, some 60 submissions, is placed in
    # submitted/<student>/<assignment>/ directly, exactly where `nbgrader collect` puts what it collects.
    plan = students()
    via_exchange = ["perfect", "blank", "wrong-ln-unbiased"]
    first = ASSIGNMENTS[0]
    nbgrader("release_assignment", first, "--force", cwd=course, exchange=exchange)
    for student in via_exchange:
        home = homes / student
        home.mkdir()
        nbgrader("fetch_assignment", first, cwd=home, exchange=exchange)
        fetched = home / first / f"{first}.ipynb"
        write_submission(fetched, plan[student][first], fetched)
        nbgrader("submit", first, f"--student={student}", cwd=home, exchange=exchange)
    nbgrader("collect", first, cwd=course, exchange=exchange)
    for student, work in plan.items():
        for a, answers in work.items():
            if a == first and student in via_exchange:
                continue
            write_submission(course / "exercises" / a / f"{a}.ipynb", answers,
                             course / "submitted" / student / a / f"{a}.ipynb")

    seconds = {}
    for a in ASSIGNMENTS:
        submitted = [s for s in plan if a in plan[s]]
        assert sorted(p.name for p in (course / "submitted").iterdir() if (p / a).exists()) == sorted(submitted)
        start = time.perf_counter()
        nbgrader("autograde", a, cwd=course)
        seconds[a] = (time.perf_counter() - start) / len(submitted)
        nbgrader("generate_feedback", a, cwd=course)

    # the written answer of chapter 6 is graded by hand: the perfect student gets its points, the blank one none
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student, score in (("perfect", None), ("blank", 0.0)):
            grade = gb.find_grade("answer_gradient_norms", "06-pre-post-ln", "06-pre-post-ln", student)
            grade.manual_score = grade.max_score if score is None else score
        gb.db.commit()

    nbgrader("export", f"--to={tmp / 'grades.csv'}", cwd=course)
    with open(tmp / "grades.csv") as f:
        rows = list(csv.DictReader(f))

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in plan:
            for a in plan[student]:
                sub = gb.find_submission_notebook(a, a, student)
                scores[student, a] = (sub.score, sub.max_score, sub.needs_manual_grade,
                                      {g.name: g.score for g in sub.grades})

    timings = {a: round(s, 2) for a, s in seconds.items()}
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    (ROOT / ".pytest_cache" / "autograde_seconds_per_notebook.json").write_text(json.dumps(timings, indent=1))
    print("\nautograde seconds per notebook:", timings)
    return {"course": course, "plan": plan, "scores": scores, "rows": rows, "seconds": seconds}


def feedback_text(course: Path, student: str, assignment: str) -> str:
    page = (course / "feedback" / student / assignment / f"{assignment}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_solutions_score_full_marks(graded):
    for a in ASSIGNMENTS:
        score, max_score, _, per_cell = graded["scores"]["perfect", a]
        assert score == max_score == sum(points(a)), (a, per_cell)


def test_the_blank_release_scores_zero_and_is_graded(graded):
    for a in ASSIGNMENTS:
        score, max_score, _, per_cell = graded["scores"]["blank", a]
        assert score == 0 and max_score == sum(points(a)), (a, per_cell)
        assert "not written yet" in feedback_text(graded["course"], "blank", a)


@pytest.mark.parametrize("wrong", WRONG, ids=[w.id for w in WRONG])
def test_a_wrong_answer_scores_strictly_between_with_its_message_in_the_feedback(graded, wrong):
    a = CHECKS[wrong.function][1]
    student = f"wrong-{wrong.id}"
    score, max_score, _, per_cell = graded["scores"][student, a]
    auto, _ = points(a)
    if wrong.earns_nothing:
        assert score == 0, (score, per_cell)
    else:
        assert 0 < score < auto, (score, per_cell)
    page = feedback_text(graded["course"], student, a).lower()
    for words in wrong.words:
        assert words.lower() in page, words


def test_every_student_is_in_the_export_with_the_right_total(graded):
    rows = graded["rows"]
    by_key = {(r["student_id"], r["assignment"]): r for r in rows}
    for (student, a), (score, max_score, _, _) in graded["scores"].items():
        row = by_key[student, a]
        assert float(row["score"]) == pytest.approx(score)
        assert float(row["max_score"]) == pytest.approx(max_score)
    assert {r["student_id"] for r in rows} == set(graded["plan"])


def test_autograding_takes_seconds_per_notebook(graded):
    assert all(s < 30 for s in graded["seconds"].values()), graded["seconds"]


def _comparable(nb: nbformat.NotebookNode) -> list:
    """Cells' type, id, source and metadata: what a release notebook consists of."""
    return [(c.cell_type, c.get("id"), c.source, json.dumps(c.metadata, sort_keys=True)) for c in nb.cells]


def test_regenerating_the_release_reproduces_the_committed_exercises(graded):
    """The fixture ran `nbgrader generate_assignment` on a copy of solutions/: its exercises/ must be ours."""
    course = graded["course"]
    committed = sorted(p.relative_to(ROOT / "exercises") for p in (ROOT / "exercises").rglob("*.ipynb"))
    assert [p.parts[0] for p in committed] == ASSIGNMENTS
    fresh = sorted(p.relative_to(course / "exercises") for p in (course / "exercises").rglob("*.ipynb"))
    assert fresh == committed
    for rel in committed:
        ours = nbformat.read(ROOT / "exercises" / rel, as_version=4)
        theirs = nbformat.read(course / "exercises" / rel, as_version=4)
        assert _comparable(ours) == _comparable(theirs), f"exercises/{rel} differs: run nbgrader generate_assignment"
        assert ours.metadata == theirs.metadata
        assert (ROOT / "exercises" / rel).read_bytes() == (course / "exercises" / rel).read_bytes()
