"""The checker: runs the instructor's test cells in a clean process, against the student's functions served remotely.

``python -I -m nbgrader_sandbox.checker`` reads one job (JSON on stdin) and writes the verdicts (JSON on stdout)::

    {"cells": [code of the notebook, in order], "tests": [{"grade_id": ..., "source": ...}], "limits": {...},
     "hidden_key": "hex of this submission's key (nbgrader_sandbox.intake.hidden_cases_key): the seed of the hidden
     cases", "course": "the course's module (nbgrader_sandbox.course), or empty"}
    -> {"verdicts": [{"grade_id", "passed", "stdout", "ename", "evalue"}], "events": [...], "load_errors": [...]}

Student code never runs in this process. Each name a test cell uses is bound to what the notebook made it
(:func:`bind_student_names`): a function (``layer_norm`` in ``check_layer_norm(layer_norm)``) is a
:class:`~nbgrader_sandbox.proxy.StudentFunction` that runs in the student's sandbox; a module or a class is the
checker's own import of it (standard library and granted packages only, never the course's references); plain data
arrives as its value, rebuilt
from bytes. The test cells share one namespace, as in a kernel, and deleting or assigning one of the notebook's names
there does the same in the sandbox. The test cell's source comes from the gradebook (the instructor's, hidden tests
included), never from the submission.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import json
import sys
import time

from . import course as courses
from . import sandbox, wire
from .proxy import StudentCodeProblem, StudentFunction
from .remote import Limits, SandboxRefused, StudentServer


def names_read(source: str) -> list[str]:
    """Every name the test cell uses that is not a builtin (``a`` in ``assert a == 1``, ``np`` in ``np.allclose``,
    ``squares`` in ``del squares``): the names the student's notebook may provide, or that the cell may change."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the cell fails when it is run, with its SyntaxError
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return sorted(n for n in used if not hasattr(builtins, n))


# The standard library modules a student's name may stand for in the checker: the test cell is the instructor's, but
# which module its name reaches is the student's choice (``import subprocess as math``), and the checker runs with the
# grader's rights. Deny by default: modules that compute, never ones that reach files, processes, the network or the
# interpreter (os, sys, subprocess, shutil, pathlib, io, socket, ctypes, importlib, pickle, ...). A test cell that
# needs one of those imports it itself, and its own import is the real module.
PURE_STDLIB = frozenset({
    "math", "cmath", "statistics", "numbers", "decimal", "fractions", "random", "itertools", "functools", "operator",
    "collections", "heapq", "bisect", "array", "copy", "string", "re", "textwrap", "unicodedata", "difflib", "json",
    "hashlib", "hmac", "base64", "binascii", "struct", "datetime", "calendar", "time", "enum", "dataclasses",
    "typing", "types", "abc", "contextlib", "warnings", "pprint", "reprlib", "graphlib", "zlib",
})
# Modules the checker never imports for a student's name, whatever the notebook bound to it: importing them does
# something (opens a browser, prints, starts a program). Modules already imported here are always fine.
_NEVER_IMPORTED = frozenset({"antigravity", "this", "idlelib", "turtledemo", "turtle", "tkinter"})


class Unavailable:
    """A name the student's notebook binds to something a test cell outside the kernel cannot have (a class, an
    object that is not plain data, a module the checker does not load): any use of it fails, saying why."""

    def __init__(self, name: str, why: str):
        object.__setattr__(self, "_why", f"{name} is {why}: a test cell checked outside the kernel can use the "
                                         f"notebook's functions, modules and plain data (numbers, strings, lists, "
                                         f"tuples, dicts, NumPy arrays) only")

    def _fail(self, *args, **kwargs):
        raise NameError(self._why)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    __call__ = __bool__ = __iter__ = __len__ = __getitem__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = _fail
    __ge__ = __add__ = __radd__ = __sub__ = __mul__ = __truediv__ = __float__ = __int__ = __index__ = _fail
    __hash__ = object.__hash__


def _module(name: str, module: str, packages: tuple, what: str = "the module", refused: tuple = ()):
    """The checker's own copy of the module a notebook bound to ``name``, if it may import it here: only the standard
    library and the packages the assignment grants the sandbox (never one of the course's references, ``refused``:
    nothing a student's name can reach here is a reference the sandbox lacks)."""
    parts = module.split(".") if isinstance(module, str) and module else [""]
    allowed = (set(packages) | PURE_STDLIB) - set(refused)
    if not all(p.isidentifier() and not p.startswith("_") for p in parts) or parts[0] in _NEVER_IMPORTED \
            or parts[0] not in allowed or set(refused) & set(parts):
        return Unavailable(name, f"{what} {module!r:.80}, which grading does not load")
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - not importable here: the test cell that uses it fails, saying so
        return Unavailable(name, f"{what} {module!r:.80}, which cannot be imported here ({type(e).__name__})")


def _class(name: str, module: str, qualname: str, packages: tuple, refused: tuple = ()):
    """The checker's own copy of a class the notebook imported (``from collections import OrderedDict``)."""
    where = _module(name, module, packages, what=f"the class {qualname!r:.80} of the module", refused=refused)
    if isinstance(where, Unavailable):
        return where
    found = where
    for part in qualname.split(".") if isinstance(qualname, str) and qualname else [""]:
        found = getattr(found, part, None) if part.isidentifier() and not part.startswith("__") else None
    if not isinstance(found, type):
        return Unavailable(name, f"the class {qualname!r:.80} of {module!r:.80}, which grading cannot import")
    return found


def bind_student_names(tests: list[str], server: StudentServer, namespace: dict) -> None:
    """Put into the test cells' namespace what each name they read is in the student's notebook: a function is a
    :class:`StudentFunction` (it runs in the student's sandbox), a module is the checker's own import of the same
    module, plain data is its value rebuilt from bytes. A name the notebook does not define (or when its code could
    not run at all) is a StudentFunction too, which reports why when called."""
    want = sorted({n for source in tests for n in names_read(source)})
    server.want = want
    try:
        server.ensure_started()
        names = server.names
    except StudentCodeProblem:
        names = {}  # the notebook's code did not run: each call says why (StudentFunction raises the start problem)
    for name in want:
        info = names.get(name)
        kind = info.get("kind") if info else None
        if kind == "data":
            namespace[name] = info["value"]
        elif kind == "module":
            namespace[name] = _module(name, info.get("module", ""), server.limits.packages,
                                      refused=server.course.references)
        elif kind == "class":
            namespace[name] = _class(name, info.get("module", ""), info.get("qualname", ""), server.limits.packages,
                                     refused=server.course.references)
        elif kind == "other":
            namespace[name] = Unavailable(name, f"a {info.get('type', 'value')}")
        else:
            namespace[name] = StudentFunction(server, name)


class _CellNames(dict):
    """The test cell's top-level names (exec's ``locals``): they live in the shared namespace, and deleting or
    assigning one of the notebook's own names (a function or plain data) does the same in the student's process, as
    it would in the kernel: ``del squares`` makes the student's ``sum_of_squares`` fail with a NameError there."""

    def __init__(self, namespace: dict, server: StudentServer):
        super().__init__()
        self.namespace, self.server = namespace, server
        self.student = {n for n, info in server.names.items() if info.get("kind") in ("callable", "data")}

    def __getitem__(self, name):
        return self.namespace[name]

    def __contains__(self, name):
        return name in self.namespace

    def get(self, name, default=None):
        return self.namespace.get(name, default)

    def __setitem__(self, name, value):
        self.namespace[name] = value
        if name in self.student:
            if isinstance(value, StudentFunction) and value.server is self.server:
                self.server.rebind(name, source=value.name)
            else:
                self.server.rebind(name, value=value)

    def __delitem__(self, name):
        del self.namespace[name]
        if name in self.student:
            self.server.rebind(name, delete=True)


def run_test(source: str, server: StudentServer, namespace: dict | None = None) -> dict:
    """Run one test cell. The test cells of a notebook share one namespace, as they share the kernel's: names an
    earlier test cell defines are there for the later ones; the student's names are bound once, before the first."""
    if namespace is None:
        namespace = {"__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()):
            bind_student_names([source], server, namespace)
    out = io.StringIO()
    verdict = {"passed": True, "stdout": "", "ename": "", "evalue": ""}
    start, cpu_before, active_before = time.perf_counter(), server.cpu_used, server.active_used
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(source, "<test cell>", "exec"), namespace,  # noqa: S102 - the instructor's test cell
                 _CellNames(namespace, server))
        except StudentCodeProblem as problem:  # raised outside a check (a test cell that calls the function itself)
            verdict.update(passed=False, ename=type(problem).__name__,
                           evalue=problem.describe(getattr(problem, "function", "the function")))
        except BaseException as e:  # noqa: BLE001 - a failing check is an AssertionError; anything else fails too
            verdict.update(passed=False, ename=type(e).__name__, evalue=str(e))
    cpu, active = server.cpu_used - cpu_before, server.active_used - active_before
    limit = server.limits.cell_seconds
    if verdict["passed"] and limit is not None and max(cpu, active) > limit:
        # nbgrader's Execute.timeout, per cell as in the kernel, counted from outside the sandbox (never what the
        # student's process says): the CPU seconds the student's processes used, or the calls' time less what they
        # waited for a CPU (a sleep counts, as in nbgrader; a busy machine does not). A failure already found keeps
        # its own message.
        how = (f"used {cpu:.1f} CPU seconds" if cpu >= active else
               f"took {active:.1f} s (computing, sleeping or waiting, not counting waits for a CPU)")
        verdict.update(passed=False, ename="TimeoutError",
                       evalue=f"the student code this test cell ran {how}, more than the time limit of {limit:g} s "
                              f"per cell (c.Execute.timeout)")
    # the student's text reaches a verdict through messages, names and printed data: bounded here, outside the sandbox
    cut = wire.cut
    verdict.update(stdout=cut(out.getvalue(), wire.VERDICT_CHARS), ename=cut(verdict["ename"], wire.NAME_CHARS),
                   evalue=cut(verdict["evalue"], wire.VERDICT_CHARS))
    verdict["seconds"] = round(time.perf_counter() - start, 3)
    return verdict


def run_job(job: dict) -> dict:
    if job.get("machine"):  # the grader's own probe of this machine, made once for all its notebooks
        sandbox.adopt_machine_facts(job["machine"])
    course = courses.load(job.get("course") or "")
    # hidden cases come from this submission's key (derived by the grader from the course's secret, which never
    # reaches this process, nor any sandbox)
    course.set_hidden_key(bytes.fromhex(job["hidden_key"]) if job.get("hidden_key") else None)
    limits = Limits(**job.get("limits", {}))
    try:
        server = StudentServer(list(job["cells"]), limits, course=course)
    except SandboxRefused as e:
        return {"verdicts": [], "events": [], "load_errors": [], "error": str(e), "refused": True}
    try:
        verdicts = []
        namespace = {"__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()):  # an import's output must not reach the verdicts (stdout)
            bind_student_names([t["source"] for t in job["tests"]], server, namespace)
        for test in job["tests"]:
            verdicts.append({"grade_id": test["grade_id"], **run_test(test["source"], server, namespace)})
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
