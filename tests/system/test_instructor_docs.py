"""The instructor's commands of README.md and book/instructors.md, run as written.

The block is taken from the markdown (the one that starts with `make instructor`) and run by bash, with -e, in a copy
of the course folder. Only what would touch the machine for good is redirected: `/srv/nbgrader/exchange` and
`/etc/jupyter` become folders of the test (the latter put on JUPYTER_CONFIG_PATH, where nbgrader finds it as it would
find /etc/jupyter, and NBGRADER_EXCHANGE names the test's exchange for the installed file), and `sudo ` is dropped.
The students' lines (comments in the block, since students run them in their own accounts) are carried out by two
students, one correct and one with a wrong answer, with the commands the comment names. Then the gradebook, the
fetched feedback and the CSV are checked.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from corpus import CORRECT  # noqa: E402

pytestmark = pytest.mark.slow

STUDENTS = {"ada": "correct", "bo": "wrong"}
WRONG_STATS = '''
import numpy as np

def layer_norm_stats(x):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    return work.mean(-1).astype(x.dtype), work.var(-1, ddof=1).astype(x.dtype)
'''


def instructor_block(path: Path) -> str:
    text = path.read_text()
    m = re.search(r"```bash\n(make instructor\b.*?)```", text, re.S)
    assert m, f"{path.name} has no instructor block starting with `make instructor`"
    return m.group(1)


def test_the_appendix_shows_the_readme_commands():
    assert instructor_block(ROOT / "book" / "instructors.md") == instructor_block(ROOT / "README.md")


def test_readme_does_not_call_srv_nbgrader_the_default():
    for path in (ROOT / "README.md", ROOT / "book" / "instructors.md"):
        text = path.read_text()
        assert "/usr/local/share/nbgrader/exchange" in text, path
        assert not re.search(r"/srv/nbgrader/exchange[^\n]*nbgrader's default", text), path


STUDENT_HELPER = r'''
import json, os, re, subprocess, sys
sys.path.insert(0, {tests!r})
from corpus import write_submission
from pathlib import Path

answers = json.loads(os.environ["DOCTEST_ANSWERS"])
commands = re.findall(r"nbgrader (\w+) ([\w-]+)", " ".join(sys.argv[1:]))
assert commands, sys.argv
for student, cells in answers.items():
    home = Path(os.environ["DOCTEST_STUDENTS"]) / student
    home.mkdir(parents=True, exist_ok=True)
    for verb, assignment in commands:
        argv = ["nbgrader", verb, assignment]
        if verb in ("submit", "fetch_feedback"):
            argv.append("--student=" + student)  # the student's own account gives it; here one account plays both
        # each student's own home, as their own account gives them: nbgrader's submission cache lives there, and
        # fetch_feedback takes every feedback whose submission is in that cache
        out = subprocess.run(argv, cwd=home, capture_output=True, text=True, env=dict(os.environ, HOME=str(home)))
        print(student, " ".join(argv), "->", out.returncode, out.stderr[-2000:], flush=True)
        if out.returncode:
            sys.exit(out.returncode)
        if verb == "fetch_assignment":
            nb = home / assignment / (assignment + ".ipynb")
            write_submission(nb, cells, nb)
'''


def test_instructor_commands_run_as_written():
    stamp = ROOT / ".venv" / ".installed-instructor"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        subprocess.run(["make", "instructor"], cwd=ROOT, check=True, capture_output=True)  # the block's first line
    place = Path(tempfile.mkdtemp(prefix="lnkit-docs-"))
    try:
        place.chmod(0o755)  # a home folder as `useradd -m` makes it: the course check has something to close
        course = place / "layernorm"
        course.mkdir()
        for name in ("nbgrader_config.py", "Makefile", "pyproject.toml"):
            shutil.copy2(ROOT / name, course)
        for folder in ("solutions", "exercises", "hub"):
            shutil.copytree(ROOT / folder, course / folder, ignore=shutil.ignore_patterns("__pycache__"))
        (course / ".venv").symlink_to(ROOT / ".venv")
        exchange, etc = place / "srv-exchange", place / "etc-jupyter"
        students = place / "students"
        helper = place / "student.py"
        helper.write_text(STUDENT_HELPER.format(tests=str(ROOT / "tests")))

        script = instructor_block(ROOT / "README.md")
        script = script.replace("/srv/nbgrader/exchange", str(exchange)).replace("/etc/jupyter", str(etc))
        script = script.replace("sudo ", "")
        lines = []
        for line in script.splitlines():
            m = re.match(r"#\s+each student:(.*)", line)
            lines.append(f"{sys.executable} {helper} {m.group(1).strip()!r}" if m else line)
        answers = {s: {"layer_norm_stats": CORRECT["layer_norm_stats"] if kind == "correct" else WRONG_STATS,
                       "layer_norm": CORRECT["layer_norm"]} for s, kind in STUDENTS.items()}
        env = dict(os.environ, JUPYTER_CONFIG_PATH=str(etc), NBGRADER_EXCHANGE=str(exchange),
                   DOCTEST_STUDENTS=str(students), DOCTEST_ANSWERS=__import__("json").dumps(answers))
        out = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=course, env=env, capture_output=True,
                             text=True, timeout=1500)
        log = out.stdout[-6000:] + out.stderr[-6000:]
        assert out.returncode == 0, log

        # the configuration file went where the block said, and the exchange was used through it
        assert (etc / "nbgrader_config.py").read_text() == (ROOT / "hub/jupyter/common/nbgrader_config.py").read_text()
        assert (exchange / "layernorm" / "outbound" / "01-layernorm").is_dir()
        # the course check closed the secrets and left the release open
        assert not (course / "solutions").stat().st_mode & 0o007
        assert not (course / "submitted").stat().st_mode & 0o007
        assert (course / "exercises").stat().st_mode & 0o005
        from nbgrader_sandbox.course_check import check_course

        assert [e for e in check_course(course) if e.secret in ("solutions", "submitted")] == []

        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            scores = {s: gb.find_submission("01-layernorm", s).score for s in STUDENTS}
        assert scores == {"ada": 10.0, "bo": 6.0}, (scores, log)
        rows = {r["student_id"]: float(r["score"]) for r in csv.DictReader((course / "grades.csv").open())
                if r["assignment"] == "01-layernorm"}
        assert rows == scores

        def score_in(page: Path) -> str:
            text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))
            return " ".join(re.findall(r"Score: [\d.]+ / [\d.]+", text)[:1])

        # what each step left, for the message should the fetched feedback not match (once seen, never reproduced)
        trail = {"generated": {str(p.relative_to(course)): score_in(p) for p in course.glob("feedback/*/*/*.html")},
                 "released": {p.name: score_in(p) for p in (exchange / "layernorm" / "feedback").glob("*.html")},
                 "fetched": {str(p.relative_to(students)): score_in(p)
                             for p in students.glob("*/*/feedback/*/*.html")}}
        for student, kind in STUDENTS.items():
            fetched = list((students / student / "01-layernorm" / "feedback").glob("*/01-layernorm.html"))
            assert fetched, f"{student} fetched no feedback:\n{log}"
            text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fetched[0].read_text()))
            total = re.search(r"Score: ([\d.]+) / ([\d.]+)", text)
            assert total, text[-3000:]
            assert float(total.group(1)) == scores[student] and float(total.group(2)) == 10.0, \
                (student, scores, re.findall(r"Score: [\d.]+ / [\d.]+", text), fetched, trail, log)
            if kind == "wrong":
                assert "unbiased" in text, text[-6000:]
    finally:
        if not os.environ.get("LNKIT_DOCS_KEEP"):
            shutil.rmtree(place, ignore_errors=True)
