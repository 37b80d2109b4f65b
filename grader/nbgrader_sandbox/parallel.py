"""Autograde a whole class across all cores: ``python -m nbgrader_sandbox autograde ASSIGNMENT [--jobs N]``.

nbgrader has no parallel mode (its issue 174). Here ``--jobs`` worker processes (:mod:`.worker`) each run nbgrader's
own autograde, one student at a time, taking the next student from a shared queue, with a progress bar. SQLite
serializes their writes: the course's db_url sets a busy timeout, and a student whose grading still met a locked
database is retried. A failing student never stops the others. The workers speak JSON only, one object a line each
way (the protocol is :mod:`.worker`'s docstring).

Afterwards: notebooks missing from a submission (renamed) score 0, as nbgrader scores a missing notebook; the
gradebook's rows are checked against the submitted folders (one submission per student, every autograded cell
scored); the grades CSV is written with ``nbgrader export``; and the integrity report (:mod:`.integrity`).

:func:`autograde_class` is the whole run, in three steps, each handing the next a small record:

- :func:`prepare` -> :class:`Plan`: every check (the course's config, jobs, the submissions, the sandbox's refusal,
  the course folder's exposure), the folders made, what is read before grading (manual scores, release notebooks);
- :func:`grade` -> :class:`Graded`: the workers, with the similarity scan beside them;
- :func:`report` -> :class:`Outcome`: the gradebook checked, the export, the integrity flags and report, and the files
  written given back to the course's owner.
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
from .worker import BYE, EXPORT, GRADE, VERIFY, encode


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
    """One ``python -m nbgrader_sandbox.worker`` process: one JSON object a line in, one JSON object a line out (the
    protocol is :mod:`.worker`'s docstring). Started at the first request, and again after it died.

    ``log`` takes the process's stderr (nbgrader's own output): a path, opened in append mode for each process
    started (the process keeps its own copy), or what ``subprocess.Popen`` takes (an open file, ``DEVNULL``)."""

    def __init__(self, course: str, assignment: str, log, env: dict):
        self.command = [sys.executable, "-m", "nbgrader_sandbox.worker", assignment]
        self.course, self.log, self.env = course, log, env
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is not None:  # one that died: its pipes go with it
            self._close_pipes()
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(self.log, "a")) if isinstance(self.log, (str, os.PathLike)) else self.log
            return subprocess.Popen(self.command, cwd=self.course, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, text=True, env=self.env)

    def ask(self, request: dict) -> dict | None:
        """The worker's reply to one request; None when the worker died before replying (the next ask starts
        another)."""
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            raise ValueError(f"request must be a dict with an 'op'; got {request!r:.200}")
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        try:
            self.proc.stdin.write(encode(request))  # JSON escapes newlines: whatever the id, one line
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        except OSError:  # the worker died as it was sent the request (a broken pipe)
            answer = ""
        try:
            reply = json.loads(answer)
        except json.JSONDecodeError:  # the worker itself died: the caller records it
            self.proc.wait()
            return None
        return reply if isinstance(reply, dict) else None

    def close(self) -> None:
        """Say bye to a running worker, and wait for it to end."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(encode({"op": BYE}))
                self.proc.stdin.flush()
                self.proc.stdout.readline()  # its {"ok": true}, or nothing if it died meanwhile
            except OSError:
                pass
        self._close_pipes()
        self.proc.wait()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


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
            result = worker.ask({"op": GRADE, "student": student})
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


@dataclass
class Plan:
    """What :func:`prepare` checked and found: all that :func:`grade` and :func:`report` need of the course."""

    course: str  # the course directory, absolute: the workers run in it
    assignment: str
    layout: CourseLayout  # every folder, and the gradebook, as the course's nbgrader_config.py sets them
    students: list[str]  # the submitted folders' names, sorted: the ids graded, exactly as listed
    jobs: int  # worker processes to start, 1 to len(students)
    uid_base: int  # c.GradingSandbox.uid_base: where this course's sandbox uids start
    release_notebooks: list[str]  # the release's notebook names (similarity discounts their starter code)
    manual_before: dict  # (student, notebook, cell) -> manual score, before grading (see _manual_scores)
    exposed: list  # what course_check found others can read or change in the course folder ([] when private)
    report_path: str  # the integrity report, Markdown; its CSV and similarity's HTML page go beside it
    log_path: str  # nbgrader's own output, from every worker: <autograded>/autograde-<assignment>.log
    env: dict  # the workers' environment: this Python's bin/ first on PATH, as nbgrader commands need


@dataclass
class Graded:
    """What :func:`grade` leaves for :func:`report`."""

    results: dict  # student -> the worker's reply to its grade request ("success", "error", "seconds", "attempts")
    seconds: float  # wall time of the grading, from the first request to the last reply
    similarity: concurrent.futures.Future  # similarity.scan's report lines: it may still run beside report()
    worker: _Worker  # one worker left running, nbgrader loaded: report() asks it to verify and export, and closes it


def prepare(course: str, assignment: str, jobs: int | None = None, report: str | None = None) -> Plan:
    """Every check before a worker starts (ValueError for a wrong request, RuntimeError where grading is refused),
    then the folders grading writes to, and what must be read before it: the manual scores, the release notebooks.
    ``report`` is the integrity report's path (default: ``<autograded>/integrity-<assignment>.md``)."""
    course = os.path.abspath(course)
    if not os.path.exists(os.path.join(course, "nbgrader_config.py")):
        raise ValueError(f"course: {course} has no nbgrader_config.py; run this from the course directory")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive number of worker processes; got {jobs!r}")
    jobs = jobs or os.cpu_count() or 1
    layout = course_layout(course)
    students = submitted_students(course, assignment, layout)
    if not students:
        raise ValueError(f"assignment: no submissions of {assignment!r} in {layout.folder('submitted')}/<student>/")
    settings = _settings(course)
    refused = settings.refusal()
    if refused:
        raise RuntimeError(refused)
    from .course_check import warn_if_exposed

    exposed = warn_if_exposed(course)  # loud, with the exact chmod; the report repeats it
    for step in ("autograded", "feedback"):
        os.makedirs(layout.folder(step), exist_ok=True)
    release_dir = layout.folder("release", assignment=assignment)
    release_notebooks = sorted(n[:-len(".ipynb")] for n in os.listdir(release_dir)
                               if n.endswith(".ipynb")) if os.path.isdir(release_dir) else []
    return Plan(course=course, assignment=assignment, layout=layout, students=students,
                jobs=max(1, min(jobs, len(students))), uid_base=settings.uid_base, release_notebooks=release_notebooks,
                manual_before=_manual_scores(layout.gradebook, assignment), exposed=exposed,
                report_path=report or os.path.join(layout.folder("autograded"), f"integrity-{assignment}.md"),
                log_path=os.path.join(layout.folder("autograded"), f"autograde-{assignment}.log"),
                env=dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")))


def grade(plan: Plan, progress: bool = True) -> Graded:
    """Every student, by plan.jobs workers taking the next student from a shared queue; similarity beside them (it
    reads only the submitted notebooks, never a grade). A student whose grading failed, or whose worker died, has a
    result that says so: it never stops the others."""
    side = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    similar = side.submit(similarity.scan, plan.course, plan.assignment, plan.students, plan.release_notebooks,
                          os.path.dirname(plan.report_path))
    side.shutdown(wait=False)  # the scan goes on; report() waits for its lines
    start = time.perf_counter()
    workers = [_Worker(plan.course, plan.assignment, plan.log_path, plan.env) for _ in range(plan.jobs)]
    try:
        results = _run_workers(workers, plan.assignment, plan.students, progress)
    except BaseException:
        for w in workers:
            w.close()
        raise
    seconds = time.perf_counter() - start
    for w in workers[1:]:
        w.close()
    return Graded(results=results, seconds=seconds, similarity=similar, worker=workers[0])


def report(plan: Plan, graded: Graded, grades_csv: str | None = None, feedback: bool = False) -> Outcome:
    """The end of the run: the gradebook checked (and missing notebooks scored 0), feedback if asked, the grades CSV
    (default: COURSE/grades.csv), the integrity flags and report, and, as root, the files written given back to the
    course's owner. RuntimeError when the gradebook cannot be checked or exported."""
    layout, assignment, students = plan.layout, plan.assignment, plan.students
    outcome = Outcome(students, results=graded.results, seconds=graded.seconds)
    worker = graded.worker
    try:  # in the worker left running, which has nbgrader loaded already
        verified = worker.ask({"op": VERIFY, "students": students}) or {}
        if not verified.get("ok"):
            raise RuntimeError(f"checking the gradebook failed: {verified.get('error', 'the worker died')}")
        outcome.mismatches, notebooks = verified["mismatches"], verified["notebooks"]
        if feedback:
            _nbgrader(plan.course, plan.env, "generate_feedback", assignment, "--force")
        outcome.grades = grades_csv or os.path.join(plan.course, "grades.csv")
        exported = worker.ask({"op": EXPORT, "to": outcome.grades}) or {}
        if not exported.get("ok"):
            raise RuntimeError(f"nbgrader export failed: {exported.get('error', 'the worker died')}")
    finally:
        worker.close()
    release = layout.folder("release")
    for student in students:
        outcome.flags += integrity.scan_submission(plan.course, assignment, student, notebooks, release, layout=layout)
        outcome.flags += integrity.scan_graded(plan.course, assignment, student, notebooks, layout=layout)
        result = outcome.results.get(student, {})
        if not result.get("success"):
            last = (result.get("error") or "no result").strip().splitlines()[-1:]
            outcome.flags.append(integrity.Flag(student, "", "grading", f"nbgrader autograde failed: {last[0][:300]}"
                                                if last else "nbgrader autograde failed"))
    after = _manual_scores(layout.gradebook, assignment)
    for (student, nb, cell), score in sorted(after.items()):
        if score is not None and plan.manual_before.get((student, nb, cell)) != score:
            outcome.flags.append(integrity.Flag(student, nb, "gradebook", f"a manual score ({score}) appeared on "
                                                f"{cell} during autograding, which sets none"))
    extra = [f"{m}" for m in outcome.mismatches]
    if plan.exposed:
        from .course_check import report as exposure_report

        extra.append(exposure_report(plan.course, plan.exposed).replace("\n", " "))
    uids = {sandbox.sandbox_uid(sandbox.submission_key(layout.folder("autograded", student, assignment)), plan.uid_base)
            for student in students}
    extra += [f"left running after grading, and killed: {p}" for p in leftover_processes(uids)]
    extra.append("student code ran in a bubblewrap sandbox per student: " + (
        "as root, each with a uid of its own" if os.geteuid() == 0 else "in a user namespace of the grader's user")
        + "; no network, no course folder, only the assignment's packages; CPU-time limits")
    outcome.report = plan.report_path
    extra += graded.similarity.result()
    integrity.write_report(outcome.flags, outcome.report, assignment, len(students), extra)
    from .intake import give_back

    give_back(plan.course, trees=[layout.folder("autograded"), layout.folder("feedback"), outcome.grades,
                                  *([layout.gradebook] if layout.gradebook else [])])
    return outcome


_report = report  # autograde_class's parameter ``report`` (a path) hides the step of that name


def autograde_class(course: str, assignment: str, jobs: int | None = None, progress: bool = True,
                    grades_csv: str | None = None, report: str | None = None, feedback: bool = False) -> Outcome:
    """The whole run: :func:`prepare`, :func:`grade`, :func:`report`. ``report`` is the integrity report's path."""
    plan = prepare(course, assignment, jobs=jobs, report=report)
    return _report(plan, grade(plan, progress), grades_csv=grades_csv, feedback=feedback)


def _nbgrader(course: str, env: dict, *args: str) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "nbgrader")
    out = subprocess.run([exe, *args], cwd=course, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{out.stderr[-3000:]}")
