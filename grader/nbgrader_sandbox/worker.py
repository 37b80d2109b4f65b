"""One autograding worker: ``python -m nbgrader_sandbox.worker ASSIGNMENT`` in the course directory.

The protocol is JSON only, in both directions: each line on stdin is one JSON object, a request with an ``"op"``, and
each request gets exactly one line on stdout, one JSON object, its reply (``json.dumps`` escapes every newline and,
with its default ``ensure_ascii``, every character past ASCII, so one object is always one ASCII line). A student id
is a folder name, which may hold anything but ``/`` (a newline, a quote, a backslash, a first ``{``, bytes that are
not UTF-8, read as surrogates): it is always a string inside a request and inside its reply, never a line of its
own, so every id round-trips exactly and none can ever be read as a request. nbgrader is imported once per worker,
not once per student. The requests, and their replies:

- ``{"op": "grade", "student": ID}``: autograde one student with nbgrader's own API (``NbGraderAPI.autograde``, the
  same converter and preprocessors as ``nbgrader autograde``, configured by the course's nbgrader_config.py), retried
  while SQLite stays locked by another worker; the reply is
  ``{"student": ID, "success": ..., "error": ..., "seconds": ..., "attempts": ...}``, or ``{"ok": false, "error": ...}``
  (no ``"student"``) when ID is not a non-empty string.
- ``{"op": "verify", "students": [ID, ...]}``: score 0 for notebooks missing from a submission, then check the
  gradebook against the submitted folders (:func:`zero_missing_and_verify`); the reply is
  ``{"ok": true, "mismatches": [...], "notebooks": [...]}``.
- ``{"op": "export", "to": PATH}``: ``nbgrader export`` of the grades CSV to PATH; the reply is ``{"ok": true}``.
- ``{"op": "bye"}``: the reply is ``{"ok": true}``, and the worker exits (as it does at the end of its stdin).

verify and export are for the end of the run, done here because nbgrader is already loaded. A failed verify or
export, a line that is not a JSON object, and an unknown op, get ``{"ok": false, "error": ...}``, and nothing is done.
This module imports nothing from the parallel command (:mod:`.parallel`), which drives it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .layout import for_course as course_layout

# the ops of a request; the parallel command sends them
GRADE, VERIFY, EXPORT, BYE = "grade", "verify", "export", "bye"
NOT_A_REQUEST = "not a request: each line must be one JSON object"


def encode(message: dict) -> str:
    """One request or reply as one line: JSON, ASCII only, with its newline."""
    return json.dumps(message) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m nbgrader_sandbox.worker ASSIGNMENT  (JSON requests on stdin, one a line)")
    assignment = argv[0]
    out = os.fdopen(os.dup(1), "w")  # our JSON lines; anything else printed goes to stderr (the log)
    os.dup2(2, 1)
    from nbgrader.apps import NbGraderAPI
    from nbgrader.apps.nbgraderapp import NbGraderApp

    app = NbGraderApp()
    app.initialize([])  # loads nbgrader_config.py from the current directory
    api = NbGraderAPI(parent=app)
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            reply = {"ok": False, "error": NOT_A_REQUEST}
        elif request.get("op") == GRADE:
            reply = _grade(api, assignment, request.get("student"))
        elif request.get("op") == BYE:
            reply = {"ok": True}
        else:
            reply = _command(request, app, api, assignment)
        out.write(encode(reply))
        out.flush()
        if isinstance(request, dict) and request.get("op") == BYE:
            return


def _grade(api, assignment: str, student) -> dict:
    if not isinstance(student, str) or not student:
        return {"ok": False, "error": f"grade: student must be a non-empty string; got {student!r:.100}"}
    start = time.perf_counter()
    for attempt in range(3):
        result = api.autograde(assignment, student, force=True, create=True)
        if result["success"] or "database is locked" not in str(result.get("error", "")):
            break
        time.sleep(1 + attempt)  # another worker held SQLite's lock past the timeout: try again
    return {"student": student, "success": result["success"], "error": str(result.get("error", ""))[-3000:],
            "seconds": round(time.perf_counter() - start, 3), "attempts": attempt + 1}


def _command(cmd: dict, app, api, assignment: str) -> dict:
    try:
        if cmd.get("op") == VERIFY:
            mismatches, notebooks = zero_missing_and_verify(app.coursedir.root, api.coursedir.db_url, assignment,
                                                            cmd["students"])
            return {"ok": True, "mismatches": mismatches, "notebooks": notebooks}
        if cmd.get("op") == EXPORT:
            from nbgrader.apps.exportapp import ExportApp

            export = ExportApp()
            export.initialize([f"--to={cmd['to']}"])
            export.start()
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {str(cmd.get('op'))[:100]!r}"}
    except Exception as e:  # noqa: BLE001 - reported to the parallel command, which fails loudly
        import traceback

        return {"ok": False, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"}


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


if __name__ == "__main__":
    main(sys.argv[1:])
