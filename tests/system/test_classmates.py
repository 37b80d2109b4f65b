"""One student's code cannot hurt a classmate's grade: attackers graded first, beside and last, honest victims keep
10/10.

A class of five for 01-layernorm, graded by the parallel command with two workers: `a-attacker` (first),
`m-victim`, `n-victim`, `o-victim` (between, one of them beside an attacker at any time) and `z-attacker` (last).
The attackers' code, at the top of their notebook, forks a daemon that kills every process it can see for a minute,
sends SIGKILL to every process it may (`kill(-1)`), burns CPU in a second daemon, tries to fill the disk and the
shared memory, and to reach the classmates' folders and the gradebook. In their sandboxes they see nothing of the
sort: every victim must keep 10/10, unflagged, with its feedback; nothing may be left running afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from corpus import CORRECT, write_submission

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSIGNMENT = "01-layernorm"

ATTACK = '''
import os, signal, time
try:
    os.kill(-1, signal.SIGKILL)  # every process this one may signal
except OSError:
    pass
for _ in range(2):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            end = time.time() + 60
            while time.time() < end:  # one daemon kills what it sees, the other only burns CPU
                for pid in os.listdir("/proc"):
                    if pid.isdigit() and int(pid) > 2:
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except OSError:
                            pass
        os._exit(0)
for target in ("../../m-victim/01-layernorm/01-layernorm.ipynb", "../../../gradebook.db", "/dev/shm/fill", "fill"):
    try:
        with open(target, "wb") as f:
            f.write(b"x" * 256 * 1024**2)
    except (OSError, MemoryError):
        pass
'''


@pytest.fixture(scope="module")
def graded():
    course = Path(tempfile.mkdtemp(prefix="lnkit-classmates-"))
    os.chmod(course, 0o755)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", LNKIT_KERNEL_CELL_SECONDS="20")
    try:
        shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
        shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        subprocess.run([str(BIN / "nbgrader"), "generate_assignment", ASSIGNMENT, "--force"], cwd=course, env=env,
                       check=True, capture_output=True)
        release = course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        for student in ("a-attacker", "m-victim", "n-victim", "o-victim", "z-attacker"):
            answers = dict(CORRECT)
            if "attacker" in student:
                answers["layer_norm"] = ATTACK + CORRECT["layer_norm"]
            write_submission(release, answers, course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
        out = subprocess.run([sys.executable, "-m", "nbgrader_sandbox", "autograde", ASSIGNMENT, "--jobs", "2",
                              "--no-progress", "--feedback"], cwd=course, env=env, capture_output=True, text=True)
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            scores = {s.student.id: s.score for s in gb.assignment_submissions(ASSIGNMENT)}
        report = (course / "autograded" / f"integrity-{ASSIGNMENT}.md").read_text()
        yield {"course": course, "out": out, "scores": scores, "report": report}
    finally:
        shutil.rmtree(course, ignore_errors=True)


def test_every_student_is_graded_and_the_victims_keep_full_marks(graded):
    assert graded["out"].returncode == 0, graded["out"].stderr[-3000:]
    assert graded["scores"] == {"a-attacker": 10, "m-victim": 10, "n-victim": 10, "o-victim": 10, "z-attacker": 10}


def test_victims_are_not_flagged_and_get_their_feedback(graded):
    for victim in ("m-victim", "n-victim", "o-victim"):
        assert f"## {victim}" not in graded["report"], graded["report"]
        page = graded["course"] / "feedback" / victim / ASSIGNMENT / f"{ASSIGNMENT}.html"
        assert "check_layer_norm: 15 cases passed" in page.read_text()


def test_the_victims_files_and_the_gradebook_are_untouched(graded):
    course = graded["course"]
    assert (course / "submitted" / "m-victim" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").stat().st_size < 1024**2
    assert (course / "gradebook.db").stat().st_size < 64 * 1024**2
    assert not Path("/dev/shm/fill").exists()


def test_nothing_of_the_attackers_outlives_grading(graded):
    assert "left running after grading" not in graded["report"]
    if os.geteuid() == 0:  # each attacker's sandbox ran as a uid of its own: none of its processes is left
        from nbgrader_sandbox.sandbox import sandbox_uid, submission_key

        uids = {str(sandbox_uid(submission_key(graded["course"] / "autograded" / s / ASSIGNMENT), 2_100_000_000))
                for s in ("a-attacker", "z-attacker")}
        ps = subprocess.run(["ps", "-eo", "uid,args"], capture_output=True, text=True).stdout.splitlines()
        assert [line for line in ps if line.split()[0] in uids] == []


def test_a_manual_score_set_behind_the_graders_back_is_seen(graded):
    """The parallel command compares every grade's manual score before and after grading (nbgrader keeps a manual
    score over the autograded one): the SQL it reads them with must see one set through nbgrader's own API."""
    from nbgrader.api import Gradebook

    from nbgrader_sandbox.parallel import _manual_scores

    db = graded["course"] / "gradebook.db"
    before = _manual_scores(str(db), ASSIGNMENT)
    assert len(before) == 5 * 2 and set(before.values()) == {None}  # five students, two graded cells each
    with Gradebook(f"sqlite:///{db}") as gb:
        gb.find_grade("test_layer_norm", ASSIGNMENT, ASSIGNMENT, "m-victim").manual_score = 6.0
        gb.db.commit()
    after = _manual_scores(str(db), ASSIGNMENT)
    assert {k: v for k, v in after.items() if before[k] != v} == {("m-victim", ASSIGNMENT, "test_layer_norm"): 6.0}
