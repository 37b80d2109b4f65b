"""One autograding worker: ``python -m lnkit.grading.worker ASSIGNMENT`` in the course directory.

Reads student ids, one per line, on stdin; autogrades each with nbgrader's own API (``NbGraderAPI.autograde``, the
same converter and preprocessors as ``nbgrader autograde``, configured by the course's nbgrader_config.py), and
writes one JSON line per student on stdout. nbgrader is imported once per worker, not once per student.

A line holding a JSON object is a command for the end of the run, done here because nbgrader is already loaded:
``{"op": "verify", "students": [...]}`` (zero missing notebooks, check the gradebook against the submissions) and
``{"op": "export", "to": PATH}`` (``nbgrader export``).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m lnkit.grading.worker ASSIGNMENT  (student ids on stdin)")
    assignment = argv[0]
    out = os.fdopen(os.dup(1), "w")  # our JSON lines; anything else printed goes to stderr (the log)
    os.dup2(2, 1)
    from nbgrader.apps import NbGraderAPI
    from nbgrader.apps.nbgraderapp import NbGraderApp

    app = NbGraderApp()
    app.initialize([])  # loads nbgrader_config.py from the current directory
    api = NbGraderAPI(parent=app)
    for line in sys.stdin:
        student = line.strip()
        if not student:
            continue
        if student.startswith("{"):
            out.write(json.dumps(_command(json.loads(student), app, api, assignment)) + "\n")
            out.flush()
            continue
        start = time.perf_counter()
        for attempt in range(3):
            result = api.autograde(assignment, student, force=True, create=True)
            if result["success"] or "database is locked" not in str(result.get("error", "")):
                break
            time.sleep(1 + attempt)  # another worker held SQLite's lock past the timeout: try again
        out.write(json.dumps({"student": student, "success": result["success"],
                              "error": str(result.get("error", ""))[-3000:],
                              "seconds": round(time.perf_counter() - start, 3), "attempts": attempt + 1}) + "\n")
        out.flush()


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
        return {"ok": False, "error": f"unknown command {cmd.get('op')!r}"}
    except Exception as e:  # noqa: BLE001 - reported to the parallel command, which fails loudly
        import traceback

        return {"ok": False, "error": f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"}


if __name__ == "__main__":
    main(sys.argv[1:])
