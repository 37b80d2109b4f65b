"""The checker: runs the instructor's test cells in a clean process, against the student's functions served remotely.

``python -I -m lnkit.grading.checker`` reads one job (JSON on stdin) and writes the verdicts (JSON on stdout)::

    {"cells": [code of the notebook, in order], "tests": [{"grade_id": ..., "source": ...}], "limits": {...},
     "secret": "hex of the course's secret: the seed of the hidden cases"}
    -> {"verdicts": [{"grade_id", "passed", "stdout", "ename", "evalue"}], "events": [...], "load_errors": [...]}

Student code never runs in this process: every name a test cell uses that it does not define itself (``layer_norm``
in ``check_layer_norm(layer_norm)``) is a :class:`~lnkit.grading.remote.RemoteFunction`, and the checks compare plain
arrays rebuilt from bytes. The test cell's source comes from the gradebook (the instructor's, hidden tests included),
never from the submission.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import sys
import time

from .remote import Limits, RemoteFunction, RemoteProblem, SandboxRefused, StudentServer


def free_names(source: str) -> list[str]:
    """Names the test cell reads but neither assigns, imports nor gets from builtins: the student's functions."""
    tree = ast.parse(source)
    bound, read = set(), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                read.append(node.id)
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
    return sorted({n for n in read if n not in bound and not hasattr(builtins, n)})


def run_test(source: str, server: StudentServer) -> dict:
    namespace = {"__name__": "__main__"}
    for name in free_names(source):
        namespace[name] = RemoteFunction(server, name)
    out = io.StringIO()
    verdict = {"passed": True, "stdout": "", "ename": "", "evalue": ""}
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(source, "<test cell>", "exec"), namespace)  # noqa: S102 - the instructor's test cell
        except RemoteProblem as problem:  # raised outside a check (a test cell that calls the function itself)
            verdict.update(passed=False, ename=type(problem).__name__, evalue=problem.describe("the function"))
        except BaseException as e:  # noqa: BLE001 - a failing check is an AssertionError; anything else fails too
            verdict.update(passed=False, ename=type(e).__name__, evalue=str(e))
    verdict["stdout"] = out.getvalue()
    verdict["seconds"] = round(time.perf_counter() - start, 3)
    return verdict


def run_job(job: dict) -> dict:
    from lnkit.checks import set_hidden_secret

    # hidden cases come from the course's secret, which never enters a sandbox
    set_hidden_secret(bytes.fromhex(job["secret"]) if job.get("secret") else None)
    limits = Limits(**job.get("limits", {}))
    try:
        server = StudentServer(list(job["cells"]), limits)
    except SandboxRefused as e:
        return {"verdicts": [], "events": [], "load_errors": [], "error": str(e), "refused": True}
    try:
        verdicts = []
        for test in job["tests"]:
            verdicts.append({"grade_id": test["grade_id"], **run_test(test["source"], server)})
        return {"verdicts": verdicts, "events": server.events, "load_errors": server.load_errors,
                "isolation": server.isolation}
    finally:
        server.close()


def main() -> None:
    job = json.loads(sys.stdin.read())
    result = run_job(job)
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
