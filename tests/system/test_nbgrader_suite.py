"""nbgrader stays nbgrader: nbgrader 0.9.6's own autograde, generate_feedback and export tests, run with this course's
grading configuration injected (issue 10, item 6).

nbgrader's tests (``nbgrader/tests/apps``, shipped with the package) call ``run_nbgrader`` in their own process, from
a temporary folder whose ``nbgrader_config.py`` sets only ``CourseDirectory.root``. nbgrader reads its configuration
from every folder of ``jupyter --paths``' config list, ``JUPYTER_CONFIG_DIR`` first, and then from the current folder
(which wins where both set the same value). So a ``nbgrader_config.py`` in a temporary ``JUPYTER_CONFIG_DIR``, holding
every grading line of the repository's ``nbgrader_config.py`` (generated from it here, so that the two cannot drift:
everything except ``CourseDirectory``, which points at this repository's course), is in effect in every test that does
not set the same option itself. That it is really in effect is checked twice: a probe (a pytest plugin loaded into the
suite's process) records every call of the course's ``CheckOutsideKernel``, and each deliberate difference below must
fail (``xfail(strict=True)``): it passes with stock nbgrader.

``DIFFERENCES`` is the short list of nbgrader tests that are expected to fail with the course's configuration, each
with its reason; README ("Grading that can be trusted", its limits) and book/instructors.md ("Limits of the
guarantees") give the same list. Every other collected test must pass (or be skipped by nbgrader itself).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from corpus import LNKIT_COURSE
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from nbgrader_sandbox import integrity
from nbgrader_sandbox.checker import run_job
from nbgrader_sandbox.preprocessors import CheckOutsideKernel, RunnableOutsideKernel, outside_problem

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# nbgrader's test modules (under nbgrader.tests) run with the course's config; the last one tests the OverwriteCells
# preprocessor directly (add_missing_cells among others), so it runs with the course's OverwriteCellsFromSource in its
# place (the plugin substitutes it)
SUITES = ("apps.test_nbgrader_autograde", "apps.test_nbgrader_generate_feedback", "apps.test_nbgrader_export",
          "preprocessors.test_overwritecells")

# nbgrader test -> why it fails with the course's configuration, on purpose (the same list as README's limits).
DIFFERENCES: dict[str, str] = {
    "test_nbgrader_autograde.py::TestNbGraderAutograde::test_side_effects":
        "files the notebook's code writes stay in its sandbox and never reach autograded/: copying them out would let "
        "student code put files of its choosing into the course folder",
    "test_nbgrader_autograde.py::TestNbGraderAutograde::test_handle_failure":
        "a submission with grade cells the instructor's notebook does not have is graded (those cells as ordinary "
        "cells, reported to the instructor) where nbgrader stops and leaves the student ungraded",
    "test_nbgrader_autograde.py::TestNbGraderAutograde::test_handle_failure_single_notebook":
        "the same, for one notebook of the assignment",
    "test_overwritecells.py::TestOverwriteCells::test_nonexistent_grade_id":
        "a cell whose grade id the instructor's notebook lacks loses all its nbgrader metadata (an ordinary cell), "
        "not only its grade id, so that no half-marked cell reaches grading",
}

PLUGIN = '''
"""Loaded into nbgrader's test run by tests/system/test_nbgrader_suite.py: the deliberate differences become
xfail(strict=True); every call of the course's CheckOutsideKernel and every test outcome is recorded."""
import json
import os

import pytest

DIFFERENCES = json.loads(os.environ["LNKIT_SUITE_DIFFERENCES"])
LOG = os.environ["LNKIT_SUITE_LOG"]


def _write(record):
    with open(LOG, "a") as f:
        f.write(json.dumps(record) + "\\n")


def pytest_configure(config):
    from nbgrader_sandbox import preprocessors

    checked = preprocessors.CheckOutsideKernel.preprocess

    def preprocess(self, nb, resources):
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        _write({"probe": "CheckOutsideKernel", "test": test})
        return checked(self, nb, resources)

    preprocessors.CheckOutsideKernel.preprocess = preprocess


def pytest_collection_modifyitems(items):
    from nbgrader_sandbox.preprocessors import OverwriteCellsFromSource

    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.endswith(".test_overwritecells"):
            module.OverwriteCells = OverwriteCellsFromSource  # the course's, where nbgrader's tests build theirs
        name = item.nodeid.rsplit("/", 1)[-1]
        if name in DIFFERENCES:
            item.add_marker(pytest.mark.xfail(reason=DIFFERENCES[name], strict=True))


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _write({"test": report.nodeid.rsplit("/", 1)[-1], "when": report.when, "outcome": report.outcome,
                "xfail": hasattr(report, "wasxfail")})
'''


def course_grading_config(config_file: Path = ROOT / "nbgrader_config.py") -> str:
    """The repository's nbgrader_config.py without its CourseDirectory lines, as the text of a config file."""
    from traitlets.config import Config

    config = Config()
    runpy.run_path(str(config_file), init_globals={"get_config": lambda: config}, run_name="nbgrader_config")
    lines = ["# generated by tests/system/test_nbgrader_suite.py from the repository's nbgrader_config.py",
             "c = get_config()"]
    for section, values in sorted(config.items()):
        if section == "CourseDirectory":
            continue  # the course folder and its gradebook: nbgrader's tests make their own
        for key, value in sorted(values.items()):
            lines.append(f"c.{section}.{key} = {value!r}")
    return "\n".join(lines) + "\n"


def test_the_injected_config_is_the_course_grading_config(tmp_path):
    """What is injected equals the repository's grading configuration, section by section (nothing but the course
    folder left out), so a change to nbgrader_config.py is what nbgrader's tests run with."""
    from traitlets.config import Config

    text = course_grading_config()
    (tmp_path / "nbgrader_config.py").write_text(text)
    injected, course = Config(), Config()
    runpy.run_path(str(tmp_path / "nbgrader_config.py"), init_globals={"get_config": lambda: injected})
    runpy.run_path(str(ROOT / "nbgrader_config.py"), init_globals={"get_config": lambda: course})
    assert "CourseDirectory" in course and "CourseDirectory" not in injected
    del course["CourseDirectory"]
    assert injected == course
    assert "nbgrader_sandbox.preprocessors.CheckOutsideKernel" in injected.Autograde.autograde_preprocessors


def _site_tests() -> Path:
    import nbgrader

    return Path(nbgrader.__file__).parent / "tests"


def start_suite(suite: str, work: Path) -> subprocess.Popen:
    """Start one of nbgrader's test modules in a process of its own, with the course's config injected."""
    config_dir, data_dir = work / "jupyter-config", work / "jupyter-data"
    config_dir.mkdir()
    data_dir.mkdir()
    (config_dir / "nbgrader_config.py").write_text(course_grading_config())
    (work / "lnkit_nbgrader_suite_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (work / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config_dir), JUPYTER_DATA_DIR=str(data_dir),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(work),
               LNKIT_SUITE_DIFFERENCES=json.dumps(DIFFERENCES), LNKIT_SUITE_LOG=str(work / "log.jsonl"))
    env.pop("PYTEST_ADDOPTS", None)
    with open(work / "output.txt", "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "lnkit_nbgrader_suite_plugin",
             "-c", str(work / "pytest.ini"), "--rootdir", str(_site_tests()), "-W", "ignore", "-rfEX",
             "--pyargs", f"nbgrader.tests.{suite}"],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def finish_suite(proc: subprocess.Popen, work: Path, timeout: float = 1800) -> tuple[int, str, list[dict]]:
    """Wait for it: (exit status, the end of its output, the plugin's records)."""
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = work / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return code, (work / "output.txt").read_text()[-8000:], records


@pytest.fixture(scope="module")
def suites(request, tmp_path_factory):
    """The selected modules, started together (each is mostly waiting on kernels and sandboxes): suite -> (proc,
    work)."""
    selected = {item.callspec.params["suite"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_nbgrader_suite_passes_with_the_course_config"}
    started = {}
    try:
        for suite in [s for s in SUITES if s in selected]:
            work = tmp_path_factory.mktemp(suite.rsplit(".", 1)[-1])
            started[suite] = (start_suite(suite, work), work)
        yield started
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
def test_nbgrader_suite_passes_with_the_course_config(suite, suites):
    code, tail, records = finish_suite(*suites[suite])
    outcomes = [r for r in records if "outcome" in r]
    failed = [r["test"] for r in outcomes if r["outcome"] == "failed"]
    assert not failed and code == 0, f"nbgrader's {suite} with the course's config:\n{tail}"
    ran = {r["test"] for r in outcomes}
    module = suite.rsplit(".", 1)[-1]
    assert any(t.startswith(module + ".py::") for t in ran), tail
    # the deliberate differences of this suite each failed with the course's configuration (strict xfail)
    mine = [name for name in DIFFERENCES if name.startswith(module + ".py::")]
    xfailed = {r["test"] for r in outcomes if r["xfail"] and r["outcome"] == "skipped"}
    assert set(mine) <= xfailed, f"expected to differ but did not fail: {sorted(set(mine) - xfailed)}\n{tail}"
    # and the course's preprocessors really graded inside nbgrader's tests
    probed = {r["test"] for r in records if r.get("probe") == "CheckOutsideKernel"}
    if module in ("test_nbgrader_autograde", "test_nbgrader_generate_feedback"):
        assert len(probed) >= 5, f"the course's CheckOutsideKernel ran in {len(probed)} of the tests:\n{tail}"


# --- the semantics nbgrader's tests rely on, one by one (each ran into a wall before issue 10, item 6) -------------

NOTEBOOK = (
    "import numpy as np\nimport math\nfrom collections import OrderedDict\n"
    "a = 1\nb = 'hello'\nc = [1, 2, 'test']\narr = np.arange(3.0)\nscale = 2\n"
    "class Point:\n    pass\n\npoint = Point()\n"
    "def squares(n):\n    if n < 1:\n        raise ValueError('n must be at least 1')\n"
    "    return [i ** 2 for i in range(1, n + 1)]\n\n"
    "def sum_of_squares(n):\n    return sum(squares(n))\n\n"
    "def scaled(x):\n    return scale * x\n"
)
USES_SQUARES = ("orig_squares = squares\ndel squares\ntry:\n    sum_of_squares(1)\nexcept NameError:\n    pass\n"
                "else:\n    raise AssertionError('sum_of_squares does not use squares')\nfinally:\n"
                "    squares = orig_squares\n")
CELLS = {
    "variables": "assert a == 1 and b == 'hello' and c == [1, 2, 'test'] and type(a) is int",
    "modules": "assert np.allclose(arr, [0, 1, 2]) and isinstance(arr, np.ndarray) and math.pi > 3\n"
               "assert OrderedDict(x=1)['x'] == 1",
    "try-except": "try:\n    squares(0)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no error')\n"
                  "assert squares(3) == [1, 4, 9]",
    "defines": "expected = 14",
    "shared": "assert sum_of_squares(3) == expected",
    "uses-squares": USES_SQUARES,
    "after-del": "assert sum_of_squares(2) == 5 and orig_squares(2) == [1, 4]",
    "assigns-data": "scale = 10\nassert scaled(3) == 30",
    "object": "assert point",
}


def _grade(cells: list[str], tests: dict, course: str = "", **limits) -> dict:
    out = run_job({"cells": cells, "tests": [{"grade_id": k, "source": v} for k, v in tests.items()],
                   "course": course, "limits": {"call_seconds": 5, "start_seconds": 20, **limits}})
    return {v["grade_id"]: v for v in out["verdicts"]}


def test_ordinary_test_cells_score_as_in_the_kernel():
    """Asserts on a student's variables, modules imported in earlier cells, try/except around a student's call, names
    an earlier test cell defined, a test cell deleting or assigning one of the notebook's names: as in the kernel."""
    got = _grade([NOTEBOOK], CELLS)
    assert {k: v["passed"] for k, v in got.items()} == {**{k: True for k in CELLS}, "object": False}
    assert got["object"]["ename"] == "NameError"
    assert "point is a __main__.Point" in got["object"]["evalue"] and "plain data" in got["object"]["evalue"]
    # a sum_of_squares that does not call squares is caught, as nbgrader's own example expects
    cheat = NOTEBOOK.replace("return sum(squares(n))", "return sum(i * i for i in range(1, n + 1))")
    got = _grade([cheat], {"uses-squares": USES_SQUARES})
    assert not got["uses-squares"]["passed"]
    assert got["uses-squares"]["evalue"] == "sum_of_squares does not use squares"


def test_execute_timeout_limits_a_test_cell_by_the_time_its_code_took():
    """c.Execute.timeout fails a test cell whose student code used more CPU seconds, or took longer not counting waits
    for a CPU (a sleep counts, as in nbgrader's kernel), both measured from outside the sandbox; a failure found by
    the check keeps its own message; no limit, no failure."""
    cells = ["import time\ndef slow():\n    end = time.process_time() + 2.5\n    while time.process_time() < end:\n"
             "        pass\n    return True\ndef quick():\n    return True\n"
             "def sleepy():\n    time.sleep(2.5)\n    return True\n"]
    tests = {"slow": "assert slow()", "quick": "assert quick()", "wrong": "assert not slow()",
             "sleepy": "assert sleepy()"}
    limited = _grade(cells, tests, cell_seconds=1.5)
    assert not limited["slow"]["passed"] and limited["slow"]["ename"] == "TimeoutError"
    assert "more than the time limit of 1.5 s per cell (c.Execute.timeout)" in limited["slow"]["evalue"]
    assert not limited["sleepy"]["passed"] and "not counting waits for a CPU" in limited["sleepy"]["evalue"]
    assert limited["quick"]["passed"]
    assert limited["wrong"]["ename"] == "AssertionError"
    assert all(v["passed"] for k, v in _grade(cells, tests).items() if k != "wrong")


def test_execute_timeout_does_not_count_waiting_for_a_cpu():
    """The cell limit counts CPU seconds: with four CPU hogs beside it, a call that computes for 1 CPU second stays
    under a 2 s cell limit however long it waited (each hog in a session of its own, so that the scheduler's
    per-session groups do not shield the student's sandbox from them)."""
    cells = ["import time\ndef spin():\n    end = time.process_time() + 1.0\n    while time.process_time() < end:\n"
             "        pass\n    return True\n"]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(min(8, 2 * (os.cpu_count() or 2)))]
    try:
        start = time.monotonic()
        got = _grade(cells, {"spin": "assert spin()"}, cell_seconds=2)
        wall = time.monotonic() - start
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert got["spin"]["passed"], f"{got} after {wall:.1f} s on the clock"


def _notebook_with_test(source: str, outputs: list) -> nbformat.NotebookNode:
    cell = new_code_cell(source, outputs=outputs, execution_count=1)
    cell.metadata.nbgrader = {"grade": True, "solution": False, "locked": True, "grade_id": "t", "points": 1,
                              "schema_version": 3}
    return new_notebook(cells=[new_code_cell("def f():\n    return 1\n"), cell])


def test_no_execute_runs_no_student_code_and_keeps_the_saved_outputs(tmp_path, monkeypatch):
    """`nbgrader autograde --no-execute` (Execute.enabled = False): no checker, no sandbox; the outputs saved in the
    submission stay, as nbgrader grades them, and the notebook records that they were not verified."""
    def no_checker(self, job):
        raise AssertionError("the checker ran student code under --no-execute")

    monkeypatch.setattr(CheckOutsideKernel, "_run_checker", no_checker)
    saved = [nbformat.v4.new_output("stream", name="stdout", text="Success!\n")]
    nb = _notebook_with_test("assert f() == 1", saved)
    resources = {"nbgrader": {"db_url": f"sqlite:///{tmp_path / 'gradebook.db'}", "notebook": "p1",
                              "assignment": "ps1"}, "metadata": {"path": str(tmp_path / "foo" / "ps1")}}
    (tmp_path / "foo" / "ps1").mkdir(parents=True)
    config = Config()
    config.Execute.enabled = False
    nb, _ = CheckOutsideKernel(config=config).preprocess(nb, resources)
    assert nb.cells[1].outputs == saved
    assert nb.metadata["nbgrader_sandbox"]["not_executed"] is True
    graded = tmp_path / "autograded" / "foo" / "ps1" / "p1.ipynb"  # and the integrity report says so
    graded.parent.mkdir(parents=True)
    nbformat.write(nb, graded)
    flags = integrity.scan_graded(str(tmp_path), "ps1", "foo", ["p1"])
    assert [(f.kind, "--no-execute" in f.detail) for f in flags] == [("grading", True)]
    with pytest.raises(AssertionError, match="--no-execute"):  # and with execution on, the checker is what runs
        CheckOutsideKernel(config=Config()).preprocess(_notebook_with_test("assert f() == 1", saved), resources)


def test_test_cells_the_checker_cannot_run_are_refused_at_generate_assignment():
    assert outside_problem("assert squares(2) == [1, 4]") == ""
    assert "IPython syntax" in outside_problem("%timeit squares(10)\nassert squares(1) == [1]")
    assert "IPython syntax" in outside_problem("files = !ls\nassert files")
    assert "IPython's display" in outside_problem("display(squares(3))")
    assert "not valid Python" in outside_problem("assert (")
    nb = _notebook_with_test("%time f()", [])
    with pytest.raises(ValueError, match="test cell 't' cannot be graded outside the student's kernel: it uses "
                                         "IPython syntax"):
        RunnableOutsideKernel().preprocess(nb, {})
    RunnableOutsideKernel().preprocess(_notebook_with_test("assert f() == 1", []), {})


def test_the_documented_differences_are_the_expected_failures():
    """README's limits and the instructors' appendix name exactly the nbgrader tests of DIFFERENCES."""
    import re

    expected = {name.rsplit("::", 1)[-1] for name in DIFFERENCES}
    for doc in (ROOT / "README.md", ROOT / "book" / "instructors.md"):
        text = doc.read_text()
        start = text.index("nbgrader 0.9.6's own")
        listed = set(re.findall(r"`(test_\w+)`", text[start:start + 1500]))
        assert listed == expected, f"{doc.name} lists {sorted(listed)}, the suite expects {sorted(expected)}"


def test_names_bound_to_modules_reach_only_what_the_sandbox_has():
    """A module name of the notebook is imported again by the checker only from the standard library or a granted
    package, never lnkit (the references), never a private or side-effecting module."""
    cells = ["import lnkit\nimport numpy as np\nimport __hello__ as hello\nimport antigravity as sky\nnp2 = lnkit\n"]
    tests = {"lnkit": "lnkit.layer_norm", "alias": "np2.layer_norm", "private": "hello.main()", "side-effect": "sky.x",
             "granted": "assert np.add(1, 1) == 2"}
    got = _grade(cells, tests, course=LNKIT_COURSE)  # lnkit's course: lnkit is its reference, refused in the sandbox
    assert got["granted"]["passed"]
    for name in ("lnkit", "alias", "private", "side-effect"):
        assert not got[name]["passed"] and "which grading does not load" in got[name]["evalue"], got[name]


def test_a_students_name_never_reaches_a_module_that_acts_with_the_graders_rights(tmp_path):
    """The test cell is the instructor's, but which module or class its names reach is the student's choice: a name
    bound to subprocess, os or one of their classes is refused outside the kernel, so the instructor's innocent call
    runs nothing on the grader's machine; modules that only compute are the checker's own import."""
    marker = tmp_path / "ran-outside"
    cells = ["import subprocess as math\nfrom subprocess import Popen as Fraction\nimport os as statistics\n"
             "import collections\n"]
    tests = {"module": f"math.run(['touch', {str(marker)!r}])",
             "class": f"Fraction(['touch', {str(marker)!r}]).wait()",
             "os": f"statistics.system('touch {marker}')",
             "pure": "assert collections.Counter('aab')['a'] == 2"}
    got = _grade(cells, tests)
    assert got["pure"]["passed"], got["pure"]
    for name in ("module", "class", "os"):
        assert not got[name]["passed"] and "which grading does not load" in got[name]["evalue"], got[name]
    assert not marker.exists()
