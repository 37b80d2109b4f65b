"""Autograde a whole class across all cores: ``python -m nbgrader_sandbox autograde ASSIGNMENT [--jobs N]``.

nbgrader has no parallel mode (its issue 174). Here ``--jobs`` worker processes (:mod:`.worker`) each run nbgrader's
own autograde, one student at a time, taking the next student from a shared queue, with a progress bar. SQLite
serializes their writes: the course's db_url sets a busy timeout, and a student whose grading still met a locked
database is retried. A failing student never stops the others.

Afterwards: notebooks missing from a submission (renamed) score 0, as nbgrader scores a missing notebook; the
gradebook's rows are checked against the submitted folders (one submission per student, every autograded cell
scored); the grades CSV is written with ``nbgrader export``; and the integrity report (:mod:`.integrity`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from . import integrity, sandbox, similarity
from .layout import CourseLayout
from .layout import for_course as course_layout


@dataclass
class Outcome:
    students: list[str]
    results: dict = field(default_factory=dict)  # student -> worker's JSON
    mismatches: list[str] = field(default_factory=list)
    flags: list = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""
    grades: str = ""


def _settings(course: str):
    """The course's GradingSandbox settings, read from its nbgrader_config.py as nbgrader reads them."""
    from .settings import for_course

    return for_course(course)


def refusal(course: str) -> str:
    """Why the course's configuration forbids grading here ("" when a sandbox can be made, or it opted out)."""
    return _settings(course).refusal()


def _uid_base(course: str) -> int:
    return _settings(course).uid_base


def _manual_scores(db_path: str, assignment: str) -> dict:
    """(student, notebook, cell) -> manual score of every grade of the assignment: grading never sets one.

    Read with SQL over nbgrader's schema, read-only: importing nbgrader's API here would cost this process a second
    and a half before the workers start."""
    import sqlite3

    if not os.path.exists(db_path):
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)) as db:
        rows = db.execute(
            "SELECT sa.student_id, nb.name, cell.name, grade.manual_score FROM grade "
            "JOIN submitted_notebook AS sn ON grade.notebook_id = sn.id "
            "JOIN submitted_assignment AS sa ON sn.assignment_id = sa.id "
            "JOIN assignment AS a ON sa.assignment_id = a.id "
            "JOIN notebook AS nb ON sn.notebook_id = nb.id "
            "JOIN base_cell AS cell ON grade.cell_id = cell.id WHERE a.name = ?", (assignment,)).fetchall()
    return {(student, nb, cell): score for student, nb, cell, score in rows}


def leftover_processes(uids: set[int]) -> list[str]:
    """As root: processes still running as the sandbox uid of a student this run graded, which none should be (each
    sandbox ends with its PID namespace). They are killed. Only this run's uids: another course may be grading."""
    if os.geteuid() != 0:
        return []
    found = []
    for pid in os.listdir("/proc"):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid if pid.isdigit() else -1
        except OSError:
            continue
        if uid in uids:
            found.append(f"process {pid} of sandbox uid {uid}")
            sandbox.kill_tree(int(pid))
    return found


def submitted_students(course: str, assignment: str, layout: CourseLayout | None = None) -> list[str]:
    root = (layout or CourseLayout(course)).folder("submitted")
    if not os.path.isdir(root):
        return []
    return sorted(s for s in os.listdir(root) if os.path.isdir(os.path.join(root, s, assignment)))


class _Worker:
    """One ``python -m nbgrader_sandbox.worker`` process: one JSON object a line in, one JSON object a line out."""

    def __init__(self, course: str, assignment: str, log, env: dict):
        self.args = ([sys.executable, "-m", "nbgrader_sandbox.worker", assignment],
                     dict(cwd=course, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env))
        self.proc: subprocess.Popen | None = None

    def ask(self, request: dict) -> dict | None:
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            raise ValueError(f"request must be a dict with an 'op'; got {request!r:.200}")
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(self.args[0], **self.args[1])
        self.proc.stdin.write(json.dumps(request) + "\n")  # JSON escapes newlines: whatever the id, one line
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        try:
            return json.loads(answer)
        except json.JSONDecodeError:  # the worker itself died: the caller records it; the next ask starts another
            self.proc.wait()
            return None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def _run_workers(workers: list, assignment: str, students: list[str], progress: bool) -> dict:
    todo: queue.Queue = queue.Queue()
    for s in students:
        todo.put(s)
    results: dict = {}
    lock = threading.Lock()
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(students), desc=f"autograde {assignment}", unit="student", disable=not progress,
                   file=sys.stderr)
    except ImportError:  # the grading extra brings tqdm; without it, no bar
        bar = None

    def work(worker: _Worker):
        while True:
            try:
                student = todo.get_nowait()
            except queue.Empty:
                return
            result = worker.ask({"op": "grade", "student": student})
            if result is None:
                result = {"student": student, "success": False, "error": "the worker process died"}
            elif result.get("student") != student:
                result = {"student": student, "success": False,
                          "error": f"the worker did not grade this student: {str(result.get('error'))[:300]}"}
            with lock:
                results[student] = result
                if bar is not None:
                    bar.update(1)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if bar is not None:
        bar.close()
    return results


def zero_missing_and_verify(course: str, db_url: str, assignment: str, students: list[str]) -> tuple[list, list]:
    """Score 0 for notebooks missing from a submission; then one complete gradebook row per submitted student.
    A student whose submitted folder is gone (intake set it aside whole) is left ungraded, as nbgrader left it."""
    from nbgrader.api import Gradebook, MissingEntry

    mismatches, notebooks = [], []
    # a folder intake moved aside whole was not graded: it gets no zeros (the NBGRADER ERROR line and the report say so)
    layout = course_layout(course)
    set_aside = {s for s in students if not os.path.isdir(layout.folder("submitted", s, assignment))}
    students = [s for s in students if s not in set_aside]
    with Gradebook(db_url) as gb:
        notebooks = [nb.name for nb in gb.find_assignment(assignment).notebooks]
        for student in students:
            try:
                gb.find_submission(assignment, student)
            except MissingEntry:
                gb.update_or_create_student(student)
                gb.update_or_create_submission(assignment, student)
            for name in notebooks:
                path = layout.notebook("submitted", student, assignment, name)
                sub = gb.find_submission_notebook(name, assignment, student)
                if not os.path.exists(path):
                    for grade in sub.grades:
                        if grade.auto_score is None and grade.cell.cell_type == "code":
                            grade.auto_score = 0
                            grade.needs_manual_grade = False
                    gb.db.commit()
        submitted = set(students)
        for sub in gb.assignment_submissions(assignment):
            sid = sub.student.id
            if sid in set_aside:
                continue
            if sid not in submitted:
                mismatches.append(f"{sid}: a gradebook submission without a submitted folder")
                continue
            for nb in sub.notebooks:
                for grade in nb.grades:
                    # code grade cells are autograded; markdown ones (written answers) are graded by hand
                    if grade.cell.cell_type == "code" and grade.auto_score is None and grade.manual_score is None:
                        mismatches.append(f"{sid}: {nb.name}/{grade.name} was not autograded")
        rows = [sub.student.id for sub in gb.assignment_submissions(assignment)]
        for sid in submitted:
            if rows.count(sid) != 1:
                mismatches.append(f"{sid}: {rows.count(sid)} gradebook submissions (expected exactly 1)")
    return mismatches, notebooks


def autograde_class(course: str, assignment: str, jobs: int | None = None, progress: bool = True,
                    grades_csv: str | None = None, report: str | None = None, feedback: bool = False) -> Outcome:
    course = os.path.abspath(course)
    if not os.path.exists(os.path.join(course, "nbgrader_config.py")):
        raise ValueError(f"course: {course} has no nbgrader_config.py; run this from the course directory")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive number of worker processes; got {jobs!r}")
    jobs = jobs or os.cpu_count() or 1
    layout = course_layout(course)
    students = submitted_students(course, assignment, layout)
    outcome = Outcome(students)
    if not students:
        raise ValueError(f"assignment: no submissions of {assignment!r} in {course}/submitted/<student>/")
    refused = refusal(course)
    if refused:
        raise RuntimeError(refused)
    from .course_check import report as exposure_report, require_private_course

    exposed = require_private_course(course, refuse=False)  # loud, with the exact chmod; the report repeats it
    for step in ("autograded", "feedback"):
        os.makedirs(layout.folder(step), exist_ok=True)
    db_path = layout.gradebook
    before = _manual_scores(db_path, assignment)
    # similarity reads only the submitted notebooks, never a grade: it runs beside the workers, not after them
    release_dir = layout.folder("release", assignment=assignment)
    release_notebooks = sorted(n[:-len(".ipynb")] for n in os.listdir(release_dir)
                               if n.endswith(".ipynb")) if os.path.isdir(release_dir) else []
    report_path = report or os.path.join(layout.folder("autograded"), f"integrity-{assignment}.md")
    side = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    similar = side.submit(similarity.scan, course, assignment, students, release_notebooks,
                          os.path.dirname(report_path))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    log_path = os.path.join(layout.folder("autograded"), f"autograde-{assignment}.log")
    start = time.perf_counter()
    with open(log_path, "a") as log:
        workers = [_Worker(course, assignment, log, env) for _ in range(max(1, min(jobs, len(students))))]
        try:
            outcome.results = _run_workers(workers, assignment, students, progress)
            outcome.seconds = time.perf_counter() - start
            # the end of the run, in a worker that has nbgrader loaded already
            verified = workers[0].ask({"op": "verify", "students": students}) or {}
            if not verified.get("ok"):
                raise RuntimeError(f"checking the gradebook failed: {verified.get('error', 'the worker died')}")
            outcome.mismatches, notebooks = verified["mismatches"], verified["notebooks"]
            if feedback:
                _nbgrader(course, env, "generate_feedback", assignment, "--force")
            outcome.grades = grades_csv or os.path.join(course, "grades.csv")
            exported = workers[0].ask({"op": "export", "to": outcome.grades}) or {}
            if not exported.get("ok"):
                raise RuntimeError(f"nbgrader export failed: {exported.get('error', 'the worker died')}")
        finally:
            for w in workers:
                w.close()
    release = layout.folder("release")
    for student in students:
        outcome.flags += integrity.scan_submission(course, assignment, student, notebooks, release, layout=layout)
        outcome.flags += integrity.scan_graded(course, assignment, student, notebooks, layout=layout)
        result = outcome.results.get(student, {})
        if not result.get("success"):
            last = (result.get("error") or "no result").strip().splitlines()[-1:]
            outcome.flags.append(integrity.Flag(student, "", "grading", f"nbgrader autograde failed: {last[0][:300]}"
                                                if last else "nbgrader autograde failed"))
    after = _manual_scores(db_path, assignment)
    for (student, nb, cell), score in sorted(after.items()):
        if score is not None and before.get((student, nb, cell)) != score:
            outcome.flags.append(integrity.Flag(student, nb, "gradebook", f"a manual score ({score}) appeared on "
                                                f"{cell} during autograding, which sets none"))
    extra = [f"{m}" for m in outcome.mismatches]
    if exposed:
        extra.append(exposure_report(course, exposed).replace("\n", " "))
    uids = {sandbox.sandbox_uid(f"{student}/{assignment}", _uid_base(course)) for student in students}
    extra += [f"left running after grading, and killed: {p}" for p in leftover_processes(uids)]
    extra.append("student code ran in a bubblewrap sandbox per student: " + (
        "as root, each with a uid of its own" if os.geteuid() == 0 else "in a user namespace of the grader's user")
        + "; no network, no course folder, only the assignment's packages; CPU-time limits")
    outcome.report = report_path
    extra += similar.result()
    side.shutdown()
    integrity.write_report(outcome.flags, outcome.report, assignment, len(students), extra)
    from .intake import give_back

    give_back(course, trees=[layout.folder("autograded"), layout.folder("feedback"), outcome.grades,
                             *([layout.gradebook] if layout.gradebook else [])])
    return outcome


def _nbgrader(course: str, env: dict, *args: str) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "nbgrader")
    out = subprocess.run([exe, *args], cwd=course, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{out.stderr[-3000:]}")
