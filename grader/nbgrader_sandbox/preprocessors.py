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
  records, in the notebook's metadata (``nbgrader_sandbox``), what the integrity report needs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import Preprocessor
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, DeduplicateIds, Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool

from . import sandbox, wire
from .course import Course
from .intake import course_secret, hidden_cases_key, submission_digest
from .integrity import METADATA_KEY
from .kernel import IsolatedKernelManager, submission_of
from .remote import SandboxRefused, server_packages
from .settings import GradingSandbox


def _record(nb: NotebookNode, **items) -> None:
    nb.metadata.setdefault(METADATA_KEY, {}).update(items)  # read back by nbgrader_sandbox.integrity


class HiddenTestsOutOfFeedback(ClearHiddenTests):
    """nbgrader's ClearHiddenTests for the feedback: the hidden tests' source leaves the test cells (stock
    generate_feedback shows it to every student). Only the instructor's test cells are touched; a student's own cell
    that happens to hold the delimiters is left as the student wrote it, and never stops the feedback."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            if self._remove_hidden_test_region(cell):
                cell.source = cell.source.rstrip("\n") + "\n# (hidden tests: not shown)"
        return cell, resources


class DeduplicateIdsFully(DeduplicateIds):
    """nbgrader's DeduplicateIds leaves a duplicated cell with ``nbgrader: {}``, on which OverwriteCells'
    add_missing_cells fails (KeyError 'grade_id', the whole submission ungraded): remove the empty dict instead."""

    def preprocess_cell(self, cell, resources, cell_index):
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.metadata.get("nbgrader") == {}:
            del cell.metadata["nbgrader"]
        return cell, resources


class OverwriteCellsFromSource(OverwriteCells):
    """nbgrader's OverwriteCells, made to hold whatever a student did to the notebook's nbgrader metadata.

    Every cell whose ``grade_id`` the gradebook knows gets its nbgrader metadata back from the instructor's source
    (grade, solution, task, locked, points), so a test cell marked as a solution, as not graded, or given other
    points is graded as the instructor wrote it; a cell with an unknown ``grade_id`` becomes an ordinary cell; every
    source cell missing from the submission is put back after the source cell before it that is present (nbgrader's
    own ``add_missing_cells`` fails with a KeyError when two cells in a row are missing, and leaves the student
    ungraded). What was changed is recorded for the integrity report. The restored hidden tests (a locked cell whose
    checksum differs by design) are not reported to the instructor as a change.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        self._changes: list[str] = []
        with Gradebook(info["db_url"]) as gb:
            try:
                source = gb.find_notebook(info["notebook"], info["assignment"])
            except MissingEntry:
                return super().preprocess(nb, resources)
            self._order = [c.name for c in source.source_cells]
            self._source = {c.name: c for c in source.source_cells}
            self._grade = {c.name: c.max_score for c in source.grade_cells}
            self._solution = {c.name for c in source.solution_cells}
            self._task = {c.name: c.max_score for c in source.task_cells}
            self._source_text = {name: c.source for name, c in self._source.items()}
        self.add_missing_cells = False  # done below, robustly
        nb, resources = super().preprocess(nb, resources)
        self._restore_missing(nb)
        _record(nb, intake={"metadata_changes": self._changes})
        return nb, resources

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.metadata.get("nbgrader")
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if grade_id is None:
            if meta is not None and not isinstance(meta, dict):
                del cell.metadata["nbgrader"]
            return cell, resources
        if grade_id not in getattr(self, "_source", {}):
            self._changes.append(f"cell {str(grade_id)[:60]!r} is not in the instructor's notebook: graded as an "
                                 f"ordinary cell")
            del cell.metadata["nbgrader"]
            return cell, resources
        wanted = {"grade": grade_id in self._grade, "solution": grade_id in self._solution,
                  "task": grade_id in self._task, "locked": bool(self._source[grade_id].locked)}
        for key, value in wanted.items():
            if bool(meta.get(key, False)) != value:
                self._changes.append(f"cell {grade_id!r}: {key} was {meta.get(key)!r}, restored to {value!r}")
            meta[key] = value
        points = self._grade.get(grade_id, self._task.get(grade_id))
        if points is not None:
            if meta.get("points") != points:
                self._changes.append(f"cell {grade_id!r}: points were {meta.get('points')!r}, restored to {points}")
            meta["points"] = points
        else:
            meta.pop("points", None)
        return super().preprocess_cell(cell, resources, cell_index)

    def report_change(self, name, attr, old, new):
        if attr == "checksum" and self._source_text.get(name, "").find("BEGIN HIDDEN TESTS") >= 0:
            return  # the submission carries the release's test cell, without the hidden tests: expected
        self._changes.append(f"cell {name!r}: {attr} changed; the instructor's version is graded")
        self.log.info("Restored the instructor's %s of cell %s (the submission's differed)", attr, name)

    def _restore_missing(self, nb) -> None:
        present = {c.metadata.nbgrader["grade_id"] for c in nb.cells if "nbgrader" in c.metadata
                   and "grade_id" in c.metadata.nbgrader}
        at_end: set = set()
        for k, name in enumerate(self._order):
            if name in present:
                continue
            if name in self._task:  # as nbgrader does: where a task cell stood cannot be told, so at the end
                nb.cells.append(self._missing_cell(name))
                present.add(name)
                at_end.add(name)
                self._changes.append(f"cell {name!r} was missing: the instructor's version was put back")
                continue
            at = 0  # after the nearest earlier source cell that is in the notebook, else first
            for earlier in reversed(self._order[:k]):
                if earlier in at_end:
                    continue
                found = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == earlier]
                if found:
                    at = found[0] + 1
                    break
            nb.cells.insert(at, self._missing_cell(name))
            present.add(name)
            self._changes.append(f"cell {name!r} was missing: the instructor's version was put back")

    def _missing_cell(self, name: str) -> NotebookNode:
        src = self._source[name]
        meta = {"grade": name in self._grade, "solution": name in self._solution, "task": name in self._task,
                "locked": bool(src.locked), "grade_id": name, "checksum": src.checksum, "schema_version": 3}
        if name in self._grade or name in self._task:
            meta["points"] = self._grade.get(name, self._task.get(name))
        note = self.missing_cell_notification.format(cell_id=name)
        if src.cell_type == "code":  # the notice as comment lines, then the cell's own first line intact
            note = "".join(f"# {line}\n" for line in note.strip().splitlines())
        cell = NotebookNode(cell_type=src.cell_type, metadata=NotebookNode(nbgrader=NotebookNode(meta)),
                            source=note + src.source)
        if src.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if src.locked:
            cell.source = src.source  # a locked cell must match its checksum: no notice inside it
        return cell


# Names a test cell can use only inside an IPython kernel: the checker that decides the score is plain Python.
_IPYTHON_ONLY = ("get_ipython", "display", "In", "Out")


def outside_problem(source: str, course: Course | None = None) -> str:
    """Why the checker cannot run this test cell outside the kernel ("" when it can): IPython syntax (magics, shell
    commands), IPython's own names, or a check the course does not register (its CHECKS: the helpers a check sends
    to the student's side are known only for those). Every other test cell runs there as it runs in the kernel."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        from IPython.core.inputtransformer2 import TransformerManager

        try:
            ast.parse(TransformerManager().transform_cell(source))
        except SyntaxError:
            return f"it is not valid Python (line {e.lineno}: {e.msg})"
        return (f"it uses IPython syntax (a %magic or !command, line {e.lineno}), which only a kernel runs; write it "
                f"as plain Python")
    used = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & set(_IPYTHON_ONLY))
    if used:
        return f"it uses IPython's {', '.join(used)}, which only a kernel has; write it as plain Python"
    for node in ast.walk(tree) if course is not None else ():
        if isinstance(node, ast.ImportFrom) and node.module in course.check_modules:
            for alias in node.names:
                why = course.check_uses(alias.name)
                if why:
                    return f"it imports {alias.name} from {node.module}, but {why}"
    return ""


class RunnableOutsideKernel(NbGraderPreprocessor):
    """For ``nbgrader generate_assignment``: refuse, with a clear error, a test cell that the checker could not run
    outside the student's kernel (it would fail for every student). In ``nbgrader_config.py``, nbgrader's list with
    this one after InstantiateTests (which writes out the AUTOTEST lines)::

        c.GenerateAssignment.preprocessors = [
            "nbgrader.preprocessors.IncludeHeaderFooter", "nbgrader.preprocessors.InstantiateTests",
            "nbgrader_sandbox.preprocessors.RunnableOutsideKernel", "nbgrader.preprocessors.LockCells",
            "nbgrader.preprocessors.ClearSolutions", "nbgrader.preprocessors.ClearOutput",
            "nbgrader.preprocessors.CheckCellMetadata", "nbgrader.preprocessors.ComputeChecksums",
            "nbgrader.preprocessors.SaveCells", "nbgrader.preprocessors.ClearHiddenTests",
            "nbgrader.preprocessors.ClearMarkScheme", "nbgrader.preprocessors.ComputeChecksums",
            "nbgrader.preprocessors.CheckCellMetadata"]
    """

    def preprocess(self, nb, resources):
        # the course's description is loaded and checked here, so a name it gets wrong stops the release
        self._course = GradingSandbox(parent=self).course_spec()
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            problem = outside_problem(cell.source, self._course)
            if problem:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", f"#{cell_index}")
                raise ValueError(f"test cell {grade_id!r} cannot be graded outside the student's kernel: {problem}")
        return cell, resources


class SafeExecute(Execute):
    """nbgrader's Execute, in an isolated kernel, where a dead or stuck kernel ends the run and grading goes on.

    The whole in-kernel run has a budget: the kernel's sandbox may use ``c.GradingSandbox.notebook_cpu_seconds`` of CPU
    time (measured outside it) and, as a backstop that sleeping cannot extend, ``notebook_wall_seconds`` since the
    kernel started; then the kernel is stopped and the remaining cells are not run (the first of them says why). The run
    only makes what the feedback shows (the scores are decided outside), so this bounds the time per student.
    """

    def create_kernel_manager(self):
        settings = GradingSandbox(parent=self)
        km = super().create_kernel_manager()
        km.budget_cpu_seconds, km.budget_wall_seconds = settings.notebook_cpu_seconds, settings.notebook_wall_seconds
        self._last_km = km  # nbclient forgets it on cleanup; its stop_reason is read after
        return km

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", IsolatedKernelManager)
        super().__init__(*args, **kwargs)
        # after a timeout, interrupting may not stop code that ignores SIGINT: end the run instead (the kernel is
        # shut down), and let the outside checks grade what was submitted
        self.interrupt_on_timeout = False

    def preprocess(self, nb, resources=None, km=None):
        refusal = GradingSandbox(parent=self).refusal()
        if refusal:
            raise SandboxRefused(refusal)  # nbgrader reports it and grades nobody: no student code ran
        self._last_km = None
        try:
            return super().preprocess(nb, resources, km)
        except (DeadKernelError, CellTimeoutError, RuntimeError, TimeoutError) as e:
            what = "timeout" if isinstance(e, (CellTimeoutError, TimeoutError)) else "died"
            message = (f"The kernel stopped (a cell ran past {self.timeout} s)" if what == "timeout"
                       else f"The kernel died ({type(e).__name__}: {str(e)[:200]})")
            stopped = getattr(self._last_km, "stop_reason", "")
            if not stopped and getattr(self._last_km, "exit_status", None) is not None:
                self.log.warning("the kernel's sandbox exited with status %s", self._last_km.exit_status)
            if stopped:  # stopped from outside, for a reason the grader knows: say it
                what = "budget" if "budget" in stopped else "limit"
                message = f"The kernel was stopped: {stopped}"
            self.log.warning("%s; the cells after it were not run in the kernel. The graded cells are checked "
                             "outside the kernel all the same.", message)
            # resources, not metadata: ClearMetadataPreprocessor runs between here and CheckOutsideKernel
            resources["sandbox_kernel"] = {"stopped": what, "message": message}
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
        execute = SafeExecute(config=self.config)
        if not execute.enabled:
            # `nbgrader autograde --no-execute`: the instructor asked for no student code to run. As in nbgrader, the
            # test cells keep the outputs saved in the submission, which are the student's own; the notebook's
            # metadata records that these scores were not verified (nbgrader_sandbox.not_executed).
            self.log.warning("--no-execute: no student code is run; the test cells are scored from the outputs saved "
                             "in the submission, which the student could have edited (not verified)")
            _record(nb, not_executed=True)
            return nb, resources
        timeout = execute.timeout if execute.timeout and execute.timeout > 0 else None
        settings = GradingSandbox(parent=self)
        folder = resources.get("metadata", {}).get("path") or "."
        student, assignment = submission_of(folder)
        files, _ = sandbox.regular_files(folder)
        cells = _student_code(nb, tests)
        # the hidden cases of this submission alone: a key derived here, outside any sandbox, from the course's
        # secret, the student and what they submitted; the secret itself never reaches the checker
        digest = submission_digest(self._submitted_folder(info) or folder)
        hidden_key = hidden_cases_key(course_secret(info["db_url"]), str(info.get("student") or student),
                                      str(info.get("assignment") or assignment), str(info["notebook"]), digest)
        packages = tuple(settings.packages_for(assignment))
        job = {
            "cells": cells,
            "tests": [{"grade_id": nb.cells[i].metadata.nbgrader["grade_id"],
                       "source": source.get(nb.cells[i].metadata.nbgrader["grade_id"], nb.cells[i].source)}
                      for i in tests],
            "limits": {"call_seconds": settings.call_seconds, "start_seconds": settings.start_seconds,
                       "memory_bytes": settings.memory_bytes, "cpu_seconds": settings.cpu_seconds,
                       "packages": list(packages), "key": sandbox.submission_key(folder),
                       "files": files, "uid_base": settings.uid_base,
                       "allow_unsandboxed": settings.allow_unsandboxed, "cell_seconds": timeout,
                       "binds": self._server_binds(packages)},
            "machine": sandbox.machine_facts(),
            "hidden_key": hidden_key.hex(),
            "course": settings.course,
        }
        result = self._run_checker(job)
        if result.get("refused"):
            raise SandboxRefused(result["error"])
        verdicts = {v["grade_id"]: v for v in result.get("verdicts", [])}
        cells = {}
        for i in tests:
            cell = nb.cells[i]
            grade_id = cell.metadata.nbgrader["grade_id"]
            ran = cell.get("execution_count") is not None
            in_kernel, max_points = utils.determine_grade(cell, self.log)
            verdict = verdicts.get(grade_id) or {"passed": False, "stdout": "", "ename": "GradingError",
                                                 "evalue": result.get("error", "the checker gave no verdict")}
            verdict = _bounded(verdict)
            cell.outputs = _outputs(verdict)
            cells[grade_id] = {"passed": verdict["passed"], "points": max_points,
                               "in_kernel": in_kernel if ran else None, "message": wire.cut(verdict["evalue"], 500)}
        _record(nb, cells=cells, events=result.get("events", []), load_errors=result.get("load_errors", []),
                isolation=result.get("isolation", ""), checker_error=result.get("error", ""),
                kernel=resources.get("sandbox_kernel", {}))
        return nb, resources

    def _submitted_folder(self, info: dict) -> str | None:
        """``submitted/<student>/<assignment>``, as the student handed it in (after intake): what the hidden cases'
        key hashes. nbgrader's converter (this preprocessor's exporter's parent) knows where it is; None elsewhere,
        and the folder being graded is hashed instead (the same submission, as nbgrader copied it)."""
        coursedir = getattr(getattr(self.parent, "parent", None), "coursedir", None)
        if coursedir is None:
            return None
        path = coursedir.format_path(coursedir.submitted_directory, info["student"], info["assignment"])
        return path if os.path.isdir(path) and not os.path.islink(path) else None

    @staticmethod
    def _server_binds(packages: tuple) -> list:
        """The student server's package binds, found once in this process rather than again in each notebook's
        checker ([]: the checker finds them itself, and reports what is wrong with them, as before)."""
        if sandbox.unavailable():
            return []
        try:
            return [list(b) for b in sandbox.package_binds(server_packages(packages))]
        except ValueError:
            return []

    def _run_checker(self, job: dict) -> dict:
        wall = GradingSandbox(parent=self).checker_wall_seconds
        work = tempfile.mkdtemp(prefix="sandbox-checker-")
        try:
            # the instructor's test cells see the grader's environment as they would in nbgrader's kernel (which gets
            # os.environ as it is now: NBGRADER_EXECUTION=autograde included); student code never does
            proc = subprocess.run([sys.executable, "-I", "-m", "nbgrader_sandbox.checker"], input=json.dumps(job),
                                  capture_output=True, text=True, cwd=work, timeout=wall,
                                  env=dict(os.environ))
        except subprocess.TimeoutExpired:
            return {"error": f"grading stopped: checking this notebook took more than {wall:g} s"}
        finally:
            sandbox.remove_tree(work)
        if proc.returncode != 0:
            self.log.error("nbgrader_sandbox.checker failed:\n%s", proc.stderr[-3000:])
            return {"error": f"the checker failed (exit status {proc.returncode}); see the grading log"}
        return json.loads(proc.stdout)


def _bounded(verdict: dict) -> dict:
    """The verdict's text fields as str, each cut to its length: they quote the student's text (exception names and
    messages, printed data), and the graded notebook and the feedback page hold them twice."""
    text = lambda key, limit: wire.cut(verdict.get(key) or "", limit)  # noqa: E731
    return {**verdict, "passed": verdict.get("passed") is True, "stdout": text("stdout", wire.VERDICT_CHARS),
            "ename": text("ename", wire.NAME_CHARS), "evalue": text("evalue", wire.VERDICT_CHARS)}


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


# --- outputs reduced to safe types --------------------------------------------------------------------------------

_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*\Z")


class SafeOutputs(Preprocessor):
    """What a graded notebook keeps of its outputs: only what no page can run. A student's kernel can display anything
    (``display(HTML(...))``, ``Javascript``, an SVG with a script, widget state), and the formgrader and the feedback
    render the graded notebook in a browser, the formgrader in the instructor's Jupyter origin. Kept: stream text
    (stdout, stderr), errors, ``text/plain``, and PNG/JPEG/GIF images as base64 data; everything else is dropped
    (``text/html``, ``text/markdown``, ``text/latex``, ``application/javascript``, ``image/svg+xml``, widget views and
    the notebook's ``metadata.widgets``, any output metadata but an image's width and height, attachments of markdown
    and raw cells that are not such images). What was dropped is recorded in the notebook's ``nbgrader_sandbox``
    metadata (``unsafe_outputs``: the cell index and the kind), for the integrity report."""

    # nbconvert's Preprocessor, not nbgrader's: the formgrader's HTMLExporter runs it too, and nbgrader's base
    # redefines a trait of nbconvert's without its config tag (a warning on every page)
    enabled = Bool(True, help="Whether to reduce outputs to safe types (always, on student work)").tag(config=True)

    SAFE_DATA = ("text/plain", "image/png", "image/jpeg", "image/gif")
    SAFE_IMAGES = ("image/png", "image/jpeg", "image/gif")
    OUTPUT_CHARS = 100_000  # one text output (LimitOutput bounds the number of lines, not their length)
    TRACEBACK_LINES = 200
    IMAGE_CHARS = 8 * 1024**2  # base64 characters of one image (a 6 MiB picture)

    def preprocess(self, nb, resources):
        dropped = []
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") == "code":
                outputs = []
                for output in cell.get("outputs", []) or []:
                    safe = self._safe_output(output, lambda kind: dropped.append({"cell": index, "kind": kind}))
                    if safe is not None:
                        outputs.append(safe)
                cell.outputs = outputs
            attachments = cell.get("attachments")
            if attachments is not None:
                kept = {}
                for name, bundle in (attachments.items() if isinstance(attachments, dict) else []):
                    images = {m: v for m, v in (bundle.items() if isinstance(bundle, dict) else [])
                              if m in self.SAFE_IMAGES and isinstance(v, str) and _BASE64.match(v)}
                    if images:
                        kept[name] = NotebookNode(images)
                    if not isinstance(bundle, dict) or len(images) != len(bundle):
                        dropped.append({"cell": index, "kind": "attachment"})
                if kept:
                    cell.attachments = NotebookNode(kept)
                else:
                    del cell["attachments"]
        if "widgets" in nb.metadata:
            del nb.metadata["widgets"]
            dropped.append({"cell": None, "kind": "metadata.widgets"})
        if dropped:
            _record(nb, unsafe_outputs=dropped)
        return nb, resources

    def _safe_output(self, output, drop):
        kind = output.get("output_type") if isinstance(output, dict) else None
        # Sizes are the student's too (a 24 MB exception class name, one endless line that LimitOutput, which
        # counts lines, lets through): every text is cut, and an image past the cap is dropped.
        if kind == "stream":
            if output.get("name") in ("stdout", "stderr") and isinstance(output.get("text"), str):
                return NotebookNode(output_type="stream", name=output["name"],
                                    text=wire.cut(output["text"], self.OUTPUT_CHARS))
        elif kind == "error":
            traceback = output.get("traceback")
            lines = traceback[:self.TRACEBACK_LINES] if isinstance(traceback, list) else []
            return NotebookNode(output_type="error", ename=wire.cut(str(output.get("ename", "")), wire.NAME_CHARS),
                                evalue=wire.cut(str(output.get("evalue", "")), wire.MESSAGE_CHARS),
                                traceback=[wire.cut(str(line), wire.MESSAGE_CHARS) for line in lines])
        elif kind in ("execute_result", "display_data"):
            data, metadata = {}, {}
            items = output.get("data", {})
            for mime, value in (items.items() if isinstance(items, dict) else []):
                if mime == "text/plain" and isinstance(value, str):
                    data[mime] = wire.cut(value, self.OUTPUT_CHARS)
                elif mime in self.SAFE_IMAGES and isinstance(value, str) and len(value) <= self.IMAGE_CHARS \
                        and _BASE64.match(value):
                    data[mime] = value
                    size = (output.get("metadata") or {}).get(mime)
                    if isinstance(size, dict):
                        size = {k: v for k, v in size.items() if k in ("width", "height")
                                and isinstance(v, (int, float)) and not isinstance(v, bool)}
                        if size:
                            metadata[mime] = size
                else:
                    drop(mime)
            if not data:
                return None
            safe = NotebookNode(output_type=kind, data=NotebookNode(data), metadata=NotebookNode(metadata))
            if kind == "execute_result":
                count = output.get("execution_count")
                safe.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None
            return safe
        drop(str(kind))
        return None
