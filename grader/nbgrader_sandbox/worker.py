"""One autograding worker: ``python -m nbgrader_sandbox.worker ASSIGNMENT`` in the course directory.

The protocol is JSON only, in both directions: each line on stdin is one JSON object, a request, and each request
gets one line on stdout, one JSON object. A student id is always a string inside a request, never a line of its own,
so no id (one holding a newline, or starting with ``{``: a folder name can be anything but ``/``) can ever be read as
a request. nbgrader is imported once per worker, not once per student.

- ``{"op": "grade", "student": ID}``: autograde one student with nbgrader's own API (``NbGraderAPI.autograde``, the
  same converter and preprocessors as ``nbgrader autograde``, configured by the course's nbgrader_config.py);
  the reply is ``{"student": ID, "success": ..., "error": ..., "seconds": ..., "attempts": ...}``.
- ``{"op": "verify", "students": [...]}`` (zero missing notebooks, check the gradebook against the submissions) and
  ``{"op": "export", "to": PATH}`` (``nbgrader export``), for the end of the run, done here because nbgrader is
  already loaded; the reply is ``{"ok": ...}``.

A line that is not such a request gets ``{"ok": false, "error": ...}`` and nothing is done.
"""

from __future__ import annotations

import json
import os
import sys
import time


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
            reply = {"ok": False, "error": "not a request: each line must be one JSON object"}
        elif request.get("op") == "grade":
            reply = _grade(api, assignment, request.get("student"))
        else:
            reply = _command(request, app, api, assignment)
        out.write(json.dumps(reply) + "\n")  # json.dumps escapes every newline: one reply, one line
        out.flush()


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
        if cmd.get("op") == "verify":
            from .parallel import zero_missing_and_verify

            mismatches, notebooks = zero_missing_and_verify(app.coursedir.root, api.coursedir.db_url, assignment,
                                                            cmd["students"])
            return {"ok": True, "mismatches": mismatches, "notebooks": notebooks}
        if cmd.get("op") == "export":
            from nbgrader.apps.exportapp import ExportApp

            export = ExportApp()
            export.initialize([f"--to={cmd['to']}"])
            export.start()
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {str(cmd.get('op'))[:100]!r}"}
    except Exception as e:  # noqa: BLE001 - reported to the parallel command, which fails loudly
        import traceback

        return {"ok": False, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"}


if __name__ == "__main__":
    main(sys.argv[1:])
