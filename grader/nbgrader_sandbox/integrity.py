"""The integrity report: per submission, what looks like tampering or hit a limit, and why.

Two sources. The submission itself (read, never run): notebooks missing or renamed, files that shadow a package,
test cells edited, deleted or turned into markdown, cells duplicated, and a static scan of the student's code for
the known tricks. And what grading recorded in each autograded notebook's metadata (:mod:`.preprocessors`): a test
that passed in the kernel but failed outside it, limits hit, references called, results refused, a kernel that
stopped, nbgrader metadata restored from the instructor's source. And what intake refused (:mod:`.intake`): links,
FIFOs, devices, files past the caps. And a submission time the student claimed that the exchange contradicts
(:mod:`.collect`). How student code was isolated is said once, at the top of the report.

Every string of the report may hold student text, a student id included (a folder name may hold anything but "/"):
the Markdown escapes it (:func:`markdown_text`) and the CSV neutralises it (:func:`csv_cell`), each on its own line
and in its own field, capped. Flags' kinds are the grader's words, never student text.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import stat
from dataclasses import asdict, dataclass

from . import notebook
from .layout import CourseLayout

# where nbgrader_sandbox.preprocessors records what grading saw, in each autograded notebook's metadata (defined here,
# not there, so that reading a report never imports nbgrader: three seconds)
METADATA_KEY = "nbgrader_sandbox"

# packages a file of the submission's folder could shadow in the in-kernel run (with the course's own, see _shadowed)
SHADOWED = {"numpy", "IPython", "ipykernel", "nbgrader", "sitecustomize", "usercustomize", "math"}

# (pattern, why): the tricks of the failure corpus, seen in the student's own cells
PATTERNS = [
    (r"input_transformers", "registers an IPython input transformer (can rewrite or blank the test cells)"),
    (r"\bset(profile|trace)\s*\(|settrace|setprofile", "installs a profiler or tracer (sys.setprofile/settrace)"),
    (r"\bevents\.register\s*\(", "registers an IPython event callback"),
    (r"\b(np|numpy)\.(allclose|array_equal|isclose|all)\s*=(?!=)", "replaces a NumPy comparison function"),
    (r"\b(np|numpy)\.testing(\.\w+)?\s*=(?!=)|setattr\(\s*(np|numpy)\.testing", "replaces numpy.testing"),
    (r"\bos\._exit\s*\(|\bos\.kill\s*\(|\bsignal\.", "ends or signals the process (os._exit, os.kill, signal)"),
    (r"\b(raise\s+SystemExit|sys\.exit\s*\(|exit\s*\(\s*\))", "exits the interpreter (SystemExit)"),
    (r"gradebook\.db|\bsolutions/|\bsource/|\bautograded/|\.\./",
     "names grading files or folders outside the notebook"),
    (r"\bopen\s*\(\s*['\"]/", "opens a file by an absolute path"),
    (r"__builtins__|builtins\.\w+\s*=(?!=)", "changes Python's builtins"),
    (r"sys\.modules\s*\[", "edits sys.modules"),
]


@dataclass
class Flag:
    student: str  # the folder name the grader listed under submitted/, never text from inside a submission
    notebook: str
    kind: str  # the grader's word: "tampering", "structure", "intake", "limit", "reference", "grading", "gradebook",
    #            "time", "content"; never student text
    detail: str


# Every string of a report may hold student text (an exception message, a file name, even a student id: a folder
# name may hold a newline or a "#"). Each is written on its own line and in its own field, capped, inert.
MAX_ID_CHARS = 120
MAX_DETAIL_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_MARKDOWN = re.compile(r"[\\`*_\[\]{}#|!~$]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def one_line(text, cap: int = MAX_DETAIL_CHARS) -> str:
    """text as one printable line: control characters, line and paragraph separators and bidirectional overrides
    shown as ``\\xNN``/``\\uNNNN`` (so a terminal or a page never acts on them), and at most ``cap`` characters."""
    if not isinstance(cap, int) or cap < 10:
        raise ValueError(f"cap must be an int of at least 10 characters; got {cap!r}")
    # a folder name that is not UTF-8 reaches Python as lone surrogates, which no file or terminal can encode
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= cap else text[:cap - 20] + f"... ({len(text) - cap + 20} more)"


def markdown_text(text, cap: int = MAX_DETAIL_CHARS) -> str:
    """text as inert Markdown on one line: every character that could start markup (emphasis, code, links, images,
    headings, tables, math) escaped with a backslash, and ``<``, ``>``, ``&`` written as entities (no raw HTML, in
    every renderer); what it shows is the text itself."""
    text = one_line(text, cap)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN.sub(lambda m: "\\" + m.group(), text)
    return re.sub(r"\A(\s*\d{0,9})([-+.)])(?=\s|\Z)", r"\1\\\2", text)  # nor a list item where a line begins


def csv_cell(text, cap: int = MAX_DETAIL_CHARS) -> str:
    """text as a CSV cell that no spreadsheet runs: one line, and a cell that would start a formula gets a ``'``."""
    text = one_line(text, cap)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _course(course_root: str):
    """The course's description (nbgrader_sandbox.course) where the folder has a configuration, else None."""
    if not os.path.exists(os.path.join(course_root, "nbgrader_config.py")):
        return None
    from .settings import for_course

    return for_course(course_root).course_spec()


def _shadowed(spec) -> set[str]:
    return SHADOWED | set(spec.references + spec.refused_unless_granted + spec.kernel_packages if spec else ())


def _patterns(spec) -> list[tuple[str, str]]:
    """PATTERNS, and one per module of the course's checks: replacing a check (``checks.check_x = ...``)."""
    extra = []
    for module in spec.check_modules if spec else ():
        parts = module.split(".")
        name = re.escape(parts[-1])
        prefix = "".join(rf"({re.escape(p)}\.)?" for p in parts[:-1])
        extra.append((rf"{prefix}{name}\.\w+\s*=(?!=)|setattr\(\s*{prefix}{name}\b",
                      f"replaces a function of {module}"))
    return PATTERNS + extra


def scan_submission(course: str, assignment: str, student: str, notebooks: list[str], release_dir: str,
                    layout: CourseLayout | None = None) -> list[Flag]:
    """Flags from the submitted folder alone (``layout``: the course's folders; nbgrader's defaults if None)."""
    flags = []
    spec = _course(course)
    layout = layout or CourseLayout(course)
    folder = layout.folder("submitted", student, assignment)
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.ipynb")))
    for name in notebooks if os.path.isdir(folder) else []:  # a folder set aside whole is flagged by intake
        if f"{name}.ipynb" not in present:
            others = [p for p in present if p[:-6] not in notebooks]
            hint = f"; found {', '.join(others)} instead (renamed?)" if others else ""
            flags.append(Flag(student, name, "structure", f"notebook {name}.ipynb is missing: scored 0{hint}"))
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        stem = entry[:-3] if entry.endswith(".py") else entry
        if stem in _shadowed(spec) and (entry.endswith(".py") or os.path.isdir(os.path.join(folder, entry))):
            flags.append(Flag(student, "", "tampering", f"the submission contains {entry}, which shadows the "
                                                        f"package {stem} in the notebook's folder"))
    flags += _submission_time(layout, student, assignment)
    for item in _refused(layout, student, assignment):
        kept = f" (moved aside to {item['kept_at']}, never read)" if item.get("kept_at") else ""
        flags.append(Flag(student, "", "intake", f"{item.get('file')} was refused: {item.get('why')}{kept}"))
    for name in notebooks:
        path = os.path.join(folder, f"{name}.ipynb")
        release = os.path.join(release_dir, assignment, f"{name}.ipynb")
        # a regular file only (intake moved links and FIFOs aside; this never opens one, whatever ran before)
        if os.path.exists(release) and os.path.lexists(path) and stat.S_ISREG(os.lstat(path).st_mode):
            flags += _scan_notebook(student, name, path, release, _patterns(spec))
    return flags


def _submission_time(layout: CourseLayout, student: str, assignment: str) -> list[Flag]:
    """A submission time the student claimed that the exchange contradicts (:mod:`.collect`), or one that only the
    student vouches for: a timestamp.txt that came through a collect without the grader's."""
    student_dir = layout.folder("submitted", student)
    try:
        with open(os.path.join(student_dir, f".collected-{assignment}.json"), encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        if os.path.lexists(os.path.join(student_dir, assignment, "timestamp.txt")):
            return [Flag(student, "", "time", "the submission time is the student's own timestamp.txt: it was not "
                                              "collected by nbgrader_sandbox.collect (see nbgrader_config.py)")]
        return []
    except (OSError, ValueError) as e:
        return [Flag(student, "", "time", f"the collect record cannot be read: {type(e).__name__}")]
    differs = record.get("differs") if isinstance(record, dict) else None
    if not isinstance(differs, list):
        return [Flag(student, "", "time", "the collect record is not one nbgrader_sandbox.collect writes")]
    return [Flag(student, "", "time", f"claimed submission time: {why}") for why in differs]


def _refused(layout: CourseLayout, student: str, assignment: str) -> list[dict]:
    """What intake (:mod:`.intake`) moved aside from this submission."""
    from .intake import REFUSED_PREFIX

    path = os.path.join(layout.folder("submitted", student), REFUSED_PREFIX + assignment, "intake.json")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return []


def _scan_notebook(student: str, name: str, path: str, release_path: str,
                   patterns: list[tuple[str, str]] = PATTERNS) -> list[Flag]:
    flags = []
    try:
        nb = notebook.read(path)
    except Exception as e:  # noqa: BLE001 - an unreadable notebook is itself the finding
        return [Flag(student, name, "structure", f"the notebook cannot be read: {type(e).__name__}: {e}")]
    release = notebook.read(release_path)
    tests = {c.metadata["nbgrader"]["grade_id"]: c for c in release.cells
             if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}
    by_id: dict = {}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id:
            by_id.setdefault(grade_id, []).append(cell)
    for grade_id, cells in by_id.items():
        if len(cells) > 1:
            flags.append(Flag(student, name, "structure", f"cell {grade_id} appears {len(cells)} times (duplicated)"))
    for grade_id, original in tests.items():
        cells = by_id.get(grade_id, [])
        if not cells:
            flags.append(Flag(student, name, "tampering", f"test cell {grade_id} was deleted (put back and graded)"))
        elif cells[0].cell_type != original.cell_type:
            flags.append(Flag(student, name, "tampering", f"test cell {grade_id} was turned into {cells[0].cell_type} "
                                                          f"(restored and graded)"))
        elif notebook.normal(cells[0].source) != notebook.normal(original.source):
            flags.append(Flag(student, name, "tampering", f"test cell {grade_id} was edited (restored and graded)"))
    found: dict = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or (meta.get("grade") and not meta.get("solution")):
            continue
        for pattern, why in patterns:
            if why not in found and re.search(pattern, cell.source):
                found[why] = meta.get("grade_id") or "an added cell"
    for why, where in found.items():
        flags.append(Flag(student, name, "tampering", f"code in {where} {why}"))
    return flags


def scan_graded(course: str, assignment: str, student: str, notebooks: list[str],
                layout: CourseLayout | None = None) -> list[Flag]:
    """Flags from what grading recorded in the autograded notebooks."""
    flags = []
    layout = layout or CourseLayout(course)
    for name in notebooks:
        path = layout.notebook("autograded", student, assignment, name)
        if not os.path.exists(path):
            continue
        record = notebook.read(path).metadata.get(METADATA_KEY, {})
        for grade_id, cell in sorted(record.get("cells", {}).items()):
            if not cell["passed"] and cell.get("in_kernel") is not None and cell["in_kernel"] >= cell["points"] > 0:
                flags.append(Flag(student, name, "tampering", f"{grade_id} passed in the student's kernel but failed "
                                                              f"outside it: {cell['message'].splitlines()[0][:200]}"))
        for event in record.get("events", []):
            kind = {"reference": "reference", "refused": "tampering"}.get(event["event"], "limit")
            what = {"timeout": "hit the time limit", "memory": "hit the memory limit", "died": "ended its process",
                    "reference": "called the reference", "refused": "returned an object that is not plain data",
                    "SystemExit": "raised SystemExit", "KeyboardInterrupt": "raised KeyboardInterrupt",
                    "RecursionError": "recursed without end"}.get(event["event"], event["event"])
            where = event.get("function") or "the notebook's code"
            flags.append(Flag(student, name, kind, f"{where} {what} ({str(event.get('detail', ''))[:160]})"))
        for change in record.get("intake", {}).get("metadata_changes", []):
            flags.append(Flag(student, name, "tampering", f"nbgrader metadata: {change}"))
        if record.get("kernel"):
            flags.append(Flag(student, name, "limit", record["kernel"]["message"] + " (in the kernel)"))
        dropped = record.get("unsafe_outputs") or []
        if isinstance(dropped, list) and dropped:
            # the kinds are mime types the student's outputs named: shown (escaped by the writer), a few, cut short
            kinds = sorted({str(d.get("kind", "?"))[:60] for d in dropped if isinstance(d, dict)})
            flags.append(Flag(student, name, "content", f"{len(dropped)} output(s) of kinds that could run script in "
                                                        f"a page were removed before anyone opened them: "
                                                        f"{', '.join(kinds[:10])}{' ...' if len(kinds) > 10 else ''}"))
        if record.get("not_executed"):
            flags.append(Flag(student, name, "grading", "graded with --no-execute: the test cells were scored from "
                                                        "the outputs saved in the submission, not verified"))
        if record.get("checker_error"):
            flags.append(Flag(student, name, "grading", record["checker_error"]))
    return flags


def write_report(flags: list[Flag], path_md: str, assignment: str, graded: int, extra: list[str] = ()) -> str:
    """Markdown for people and CSV beside it for tools; returns the Markdown."""
    by_student: dict = {}
    for f in flags:
        by_student.setdefault(f.student, []).append(f)
    md = markdown_text
    lines = [f"# Integrity report: {md(assignment, MAX_ID_CHARS)}", "",
             f"{graded} submissions graded; {len(by_student)} flagged.", ""]
    lines += [f"- {md(line)}" for line in extra]
    if extra:
        lines.append("")
    for student in sorted(by_student):
        lines.append(f"## {md(student, MAX_ID_CHARS)}")
        for f in by_student[student]:
            where = f" ({md(f.notebook, MAX_ID_CHARS)})" if f.notebook else ""
            lines.append(f"- **{md(f.kind, 40)}**{where}: {md(f.detail)}")
        lines.append("")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path_md)), exist_ok=True)
    with open(path_md, "w", encoding="utf-8") as fh:
        fh.write(text)
    caps = {"student": MAX_ID_CHARS, "notebook": MAX_ID_CHARS, "kind": 40, "detail": MAX_DETAIL_CHARS}
    with open(os.path.splitext(path_md)[0] + ".csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(caps))
        writer.writeheader()
        for f in flags:
            writer.writerow({k: csv_cell(v, caps[k]) for k, v in asdict(f).items()})
    return text



