"""nbgrader preprocessors: the out-of-kernel verdicts become the graded outputs; a dead kernel stops nothing.

Plugged in by ``nbgrader_config.py``::

    c.Autograde.autograde_preprocessors = [SafeExecute, ..., LimitOutput, CheckOutsideKernel, SaveAutoGrades, ...]

- :class:`SafeExecute` is nbgrader's Execute with an isolated kernel (:mod:`.kernel`); a kernel that dies or a cell
  that times out ends the in-kernel run instead of failing the submission (nbgrader would leave it "needs
  autograding").
- :class:`CheckOutsideKernel` runs every autograded test cell (the instructor's source, from the gradebook) in the
  checker process (:mod:`.checker`) against the student's code served by the student server, and replaces the cell's
  outputs with that verdict: the check's printed line on success, an ``error`` output with its message on failure.
  SaveAutoGrades, generate_feedback and export then work unchanged on what is now the outside verdict. It also
  records, in the notebook's metadata (``lnkit_grading``), what the integrity report needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import DeduplicateIds, Execute, NbGraderPreprocessor
from traitlets import Float, Integer, Unicode

from . import sandbox
from .integrity import METADATA_KEY
from .kernel import IsolatedKernelManager


def _record(nb: NotebookNode, **items) -> None:
    nb.metadata.setdefault(METADATA_KEY, {}).update(items)  # read back by lnkit.grading.integrity


class DeduplicateIdsFully(DeduplicateIds):
    """nbgrader's DeduplicateIds leaves a duplicated cell with ``nbgrader: {}``, on which OverwriteCells'
    add_missing_cells fails (KeyError 'grade_id', the whole submission ungraded): remove the empty dict instead."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.metadata.get("nbgrader") == {}:
            del cell.metadata["nbgrader"]
        return cell, resources


class SafeExecute(Execute):
    """nbgrader's Execute, in an isolated kernel, where a dead or stuck kernel ends the run and grading goes on."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", IsolatedKernelManager)
        super().__init__(*args, **kwargs)
        # after a timeout, interrupting may not stop code that ignores SIGINT: end the run instead (the kernel is
        # shut down), and let the outside checks grade what was submitted
        self.interrupt_on_timeout = False

    def preprocess(self, nb, resources=None, km=None):
        try:
            return super().preprocess(nb, resources, km)
        except (DeadKernelError, CellTimeoutError, RuntimeError, TimeoutError) as e:
            what = "timeout" if isinstance(e, (CellTimeoutError, TimeoutError)) else "died"
            message = (f"The kernel stopped (a cell ran past {self.timeout} s)" if what == "timeout"
                       else f"The kernel died ({type(e).__name__}: {str(e)[:200]})")
            self.log.warning("%s; the cells after it were not run in the kernel. The graded cells are checked "
                             "outside the kernel all the same.", message)
            # resources, not metadata: ClearMetadataPreprocessor runs between here and CheckOutsideKernel
            resources["lnkit_kernel"] = {"stopped": what, "message": message}
            for cell in nb.cells:  # mark where it stopped: the first code cell that never got a reply
                if cell.cell_type == "code" and cell.get("execution_count") is None:
                    cell.setdefault("outputs", []).append(NotebookNode(
                        output_type="stream", name="stdout",
                        text=f"[{message}; this cell and the ones after it were not run in the kernel.]\n"))
                    break
            return nb, resources


def _student_code(nb: NotebookNode, tests: list[int]) -> list[str]:
    """The code cells a student's functions come from: every code cell before the last test, tests excluded.

    IPython syntax (magics, ``!commands``) is turned into plain Python first; in the student server ``get_ipython``
    does not exist, so such lines fail there as they would in a plain interpreter, without stopping the cell's
    other definitions from running.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    transform = TransformerManager().transform_cell
    last = max(tests) if tests else -1
    cells = []
    for i, cell in enumerate(nb.cells[:last]):
        if cell.cell_type != "code" or i in tests:
            continue
        try:
            cells.append(transform(cell.source))
        except Exception:  # noqa: BLE001 - a cell IPython cannot parse runs as it is (and fails as it would)
            cells.append(cell.source)
    return cells


class CheckOutsideKernel(NbGraderPreprocessor):
    """Decide every autograded test cell outside the student's kernel and make that the cell's output."""

    call_seconds = Float(10.0, help="time limit of one call of a student function, seconds").tag(config=True)
    start_seconds = Float(30.0, help="time limit for running the notebook's code before the checks").tag(config=True)
    memory_bytes = Integer(4 * 1024**3, help="address-space limit of the student's process, bytes").tag(config=True)
    user = Unicode("nobody", help="the unprivileged user student code runs as when grading as root").tag(config=True)
    notebook_seconds = Float(600.0, help="a backstop on the whole checker process per notebook").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            try:
                source = {c.name: c.source for c in gb.find_notebook(info["notebook"], info["assignment"]).source_cells}
            except MissingEntry:
                source = {}
        tests = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and utils.is_grade(c)
                 and not utils.is_solution(c)]
        if not tests:
            return nb, resources
        box = sandbox.sandbox(self.user)
        job = {
            "cells": _student_code(nb, tests),
            "tests": [{"grade_id": nb.cells[i].metadata.nbgrader["grade_id"],
                       "source": source.get(nb.cells[i].metadata.nbgrader["grade_id"], nb.cells[i].source)}
                      for i in tests],
            "limits": {"call_seconds": self.call_seconds, "start_seconds": self.start_seconds,
                       "memory_bytes": self.memory_bytes, "user": self.user},
        }
        result = self._run_checker(job)
        verdicts = {v["grade_id"]: v for v in result.get("verdicts", [])}
        cells = {}
        for i in tests:
            cell = nb.cells[i]
            grade_id = cell.metadata.nbgrader["grade_id"]
            ran = cell.get("execution_count") is not None
            in_kernel, max_points = utils.determine_grade(cell, self.log)
            verdict = verdicts.get(grade_id) or {"passed": False, "stdout": "", "ename": "GradingError",
                                                 "evalue": result.get("error", "the checker gave no verdict")}
            cell.outputs = _outputs(verdict)
            cells[grade_id] = {"passed": verdict["passed"], "points": max_points,
                               "in_kernel": in_kernel if ran else None, "message": verdict.get("evalue", "")[:500]}
        _record(nb, cells=cells, events=result.get("events", []), load_errors=result.get("load_errors", []),
                isolation=sandbox.isolation_warning(box) or f"student code ran as {box.user.pw_name}",
                checker_error=result.get("error", ""), kernel=resources.get("lnkit_kernel", {}))
        return nb, resources

    def _run_checker(self, job: dict) -> dict:
        work = tempfile.mkdtemp(prefix="lnkit-checker-")
        try:
            proc = subprocess.run([sys.executable, "-I", "-m", "lnkit.grading.checker"], input=json.dumps(job),
                                  capture_output=True, text=True, cwd=work, timeout=self.notebook_seconds)
        except subprocess.TimeoutExpired:
            return {"error": f"grading stopped: checking this notebook took more than {self.notebook_seconds:g} s"}
        finally:
            sandbox.remove_tree(work)
        if proc.returncode != 0:
            self.log.error("lnkit.grading.checker failed:\n%s", proc.stderr[-3000:])
            return {"error": f"the checker failed (exit status {proc.returncode}); see the grading log"}
        return json.loads(proc.stdout)


def _outputs(verdict: dict) -> list:
    outputs = []
    if verdict.get("stdout"):
        outputs.append(NotebookNode(output_type="stream", name="stdout", text=verdict["stdout"]))
    if not verdict["passed"]:
        if not outputs:
            outputs.append(NotebookNode(output_type="stream", name="stdout",
                                        text="(checked outside your notebook's kernel)\n"))
        outputs.append(NotebookNode(output_type="error", ename=verdict["ename"], evalue=verdict["evalue"],
                                    traceback=[f"{verdict['ename']}: {verdict['evalue']}"]))
    return outputs


