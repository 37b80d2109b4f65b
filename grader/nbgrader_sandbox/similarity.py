"""Similarity between submissions: which students' code overlaps, and whose overlaps with the course's references.

``python -m nbgrader_sandbox.similarity ASSIGNMENT [--threshold T]``, from the course directory; the parallel autograde
command (:mod:`.parallel`) runs it too: its summary and each flagged match head the integrity report, and the HTML
page (``autograded/similarity-ASSIGNMENT.html``) lies beside it.

A student's code is what they wrote in the assignment's notebooks, read as JSON and never run: the solution cells
(found by the ``grade_id`` of the release's solution cells, so that stripped metadata hides nothing) and any code
cell they added; cells left as released are not theirs. The fingerprinting is copydetect's (MOSS's winnowing of
k-grams), over the code with whitespace and comments removed, strings made ``S`` and every name the code binds
itself made ``V`` (:func:`filter_code`), so that renamed variables, moved functions and added comments still match
while the NumPy calls made still count. The release's own code (the function signatures and docstrings, imports,
test cells) is boilerplate: a match made only of it does not count.

Each pair of students gets two scores: the share of each one's code that is found in the other's. A pair is flagged
when the larger share reaches the threshold (``--threshold``, default :data:`DEFAULT_THRESHOLD`; or the environment
variable ``NBGRADER_SANDBOX_SIMILARITY_THRESHOLD`` for the autograde command) and at least :data:`MIN_TOKENS` filtered
characters match, so that a submission of two lines is not flagged for two common lines. Each student is also
compared with the course's references (its ``similarity_references``: for lnkit, its source files and the book's
code cells); a student whose code is found there
at the threshold is flagged too. The HTML page shows every flagged pair side by side with
the matching code highlighted, and the scores of every pair, so that the instructor sees where the honest pairs lie.

A submission is untrusted input: what is read of it is capped (:data:`MAX_BYTES` a notebook, :data:`MAX_CELLS` cells,
:data:`MAX_CELL_CHARS` a cell, :data:`MAX_CODE_CHARS` a student), and each student's code is tokenised in a process
of its own with a CPU-time and a memory limit (:func:`filter_isolated`): a submission past a cap, or one that breaks
the parser (200 KB of "-" is a MemoryError in CPython's), is named on the page and in the report, and every other
pair is still compared. Every student string on the page (ids, code) is HTML-escaped.

In the course this was built for (lnkit), the exercises are short and the book teaches one way to write them, so honest
answers share idioms (one line such as ``mean = x.mean(axis=-1, keepdims=True)``); a copy shares whole functions. The
threshold is the instructor's to set, looking at the distribution the page shows; ``tests/system/test_similarity.py``
measures planted copies and honest, independently written answers, and requires on 01-layernorm: copies of classmates
at 0.85 or more, a paste of lnkit's code flagged at the default threshold, honest pairs at 0.4 or less, honest answers
against lnkit and the book below the default threshold by 0.1 or more.
"""

from __future__ import annotations

import argparse
import ast
import glob
import html
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import notebook
from .layout import CourseLayout

if TYPE_CHECKING:  # copydetect works in NumPy arrays; importing it here would slow every command down
    import numpy as np

#: a pair (or a student and a reference) is flagged when this share of one side's code is found in the other
DEFAULT_THRESHOLD = 0.6
#: copydetect's noise threshold k: the shortest run of filtered characters that counts as a match. The guarantee
#: threshold is the same, so every k-gram is kept (a winnowing window of 1): the scores do not depend on Python's
#: per-process string hashing.
NOISE = 25
#: fewer matching filtered characters than this never flag, whatever the share
MIN_TOKENS = 60
ENV_THRESHOLD = "NBGRADER_SANDBOX_SIMILARITY_THRESHOLD"
#: what is read of a submission, which is untrusted: a notebook larger than MAX_BYTES is not read (the integrity
#: report and grading deal with it); of a notebook, the first MAX_CELLS cells; a cell longer than MAX_CELL_CHARS is
#: left out; a student's code past MAX_CODE_CHARS is cut there. Each is said on the page and in the report.
MAX_BYTES = 8 * 1024 * 1024
MAX_CELLS = 1000
MAX_CELL_CHARS = 20_000
MAX_CODE_CHARS = 200_000
#: each student's code is tokenised in a separate process (:func:`filter_isolated`), within this many CPU seconds
#: and this much memory: a submission that breaks the tokeniser or the parser is reported alone
TOKENISE_CPU_SECONDS = 10
TOKENISE_MEMORY_BYTES = 2 * 1024**3


@dataclass
class Match:
    a: str  # a student
    b: str  # another student, or a reference ("lnkit/norms.py", "book/ch01_layernorm_from_scratch.md", ...)
    kind: str  # "pair" or "reference"
    share_a: float  # the share of a's code found in b
    share_b: float
    tokens: int  # matching characters of the filtered code (copydetect's token overlap)
    flagged: bool = False
    html_a: str = field(default="", repr=False)
    html_b: str = field(default="", repr=False)

    @property
    def score(self) -> float:
        return max(self.share_a, self.share_b) if self.kind == "pair" else self.share_a


def _cells(path: str, notes: list | None = None) -> list[dict]:
    cells = []
    for cell in notebook.read(path, max_cells=MAX_CELLS, notes=notes).cells:
        nbg = cell.metadata.get("nbgrader") if isinstance(cell.metadata.get("nbgrader"), dict) else {}
        cells.append({"type": cell.get("cell_type"), "source": cell.source, "grade_id": nbg.get("grade_id"),
                      "solution": bool(nbg.get("solution"))})
    return cells


def release_code(release_path: str) -> tuple[str, set[str]]:
    """The release notebook's code (the boilerplate), and the grade_ids of its cells that are not solution cells."""
    cells = _cells(release_path)
    others = {c["grade_id"] for c in cells if not c["solution"] and c["grade_id"]}
    return "\n\n".join(c["source"] for c in cells if c["type"] == "code"), others


def student_code(path: str, release_path: str, notes: list | None = None) -> str:
    """What the student wrote in one submitted notebook: its solution cells and added code cells, never run.

    Within the caps (:data:`MAX_CELLS`, :data:`MAX_CELL_CHARS`); what was left out is added to ``notes``."""
    _, others = release_code(release_path)
    released = {notebook.normal(c["source"]) for c in _cells(release_path) if c["type"] == "code"}
    kept = []
    for c in _cells(path, notes):
        # a solution cell (whatever its metadata says) or an added cell, unless left exactly as released; never a
        # cell that the release has under another grade_id (tests, read-only cells: the integrity report checks those)
        if c["type"] != "code" or c["grade_id"] in others:
            continue
        if len(c["source"]) > MAX_CELL_CHARS:
            if notes is not None:
                notes.append(f"{os.path.basename(path)}: a cell of {len(c['source'])} characters was left out "
                             f"(more than {MAX_CELL_CHARS})")
            continue
        if notebook.normal(c["source"]) not in released:
            kept.append(c["source"])
    return "\n\n".join(kept)


def _own_names(code: str) -> set[str] | None:
    """The names the code binds itself (parameters, assigned and loop variables, its functions); None if unparsable."""
    for text in (code, re.sub(r"(?m)^\s*[%!].*$", "", code)):  # a second try without IPython magics and shell lines
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # the parser's limits too: copydetect's filter
            continue
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                names.add(node.id)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
        return names
    return None


def filter_code(code: str) -> tuple[str, np.ndarray]:
    """copydetect's token filter, but only the code's own names become ``V``: NumPy's and the attributes stay.

    copydetect's ``filter_code`` turns every name into ``V``, so that ``x.mean(axis=-1, keepdims=True)`` and
    ``x.var(axis=-1, keepdims=True)`` are the same string, and a five-line answer matches any large code base (lnkit,
    the book) on idioms alone. Renaming one's variables is the disguise to see through; which NumPy functions one
    calls is not. Whitespace and comments go, strings become ``S``, and the offsets back into the source are
    recorded as copydetect's filter records them, so that its highlighting works unchanged. Code that Python cannot
    parse goes through copydetect's own filter.
    """
    import numpy as np
    from copydetect.utils import filter_code as copydetect_filter
    from pygments import lexers, token

    own = _own_names(code)
    if own is None:
        return copydetect_filter(code, "code.py", "python")
    tokens = list(lexers.get_lexer_by_name("python").get_tokens(code))
    significant = [i for i, (kind, _) in enumerate(tokens) if not (kind in token.Text or kind in token.Comment)]
    following = {i: tokens[j][1] for i, j in zip(significant, significant[1:])}
    out, offset, offsets, previous, depth = "", 0, [[0, 0]], "", 0
    for i, (kind, value) in enumerate(tokens):
        if kind in token.Text or kind in token.Comment:
            offsets.append([len(out) - 1, offset])
            offset += len(value)
            continue
        depth += value in ("(", "[", "{")
        depth -= value in (")", "]", "}")
        # an attribute (after a dot) or a keyword argument's name (before "=" inside a call) is the API's, not theirs
        if kind in token.Name and value in own and previous != "." and not (depth > 0 and following.get(i) == "="):
            short = "V"
        elif kind in token.Literal.String and value not in ("'", '"'):
            short = "S"
        else:
            short = value
        out += short
        if short != value:
            offsets.append([len(out) - 1, offset])
            offset += len(value) - len(short)
        previous = value
    return out, np.array(offsets)


def _fingerprint(name: str, code: str, boilerplate, noise: int, filtered=None):
    """copydetect's fingerprint of code; ``filtered`` is :func:`filter_code`'s result where it was made elsewhere."""
    import numpy as np
    from copydetect import CodeFingerprint

    filtered, offsets = filtered if filtered is not None else filter_code(code)
    fp = CodeFingerprint(f"{name}.py", noise, 1, boilerplate, filter=False, fp=io.StringIO(filtered))
    # compare_files maps matches back to the source through these
    fp.raw_code, fp.offsets = code, np.asarray(offsets).reshape(-1, 2)
    return fp


def _tokeniser() -> None:
    """The child of :func:`filter_isolated`: one JSON request a line (``{"code": ...}``), one JSON reply a line."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (TOKENISE_MEMORY_BYTES, TOKENISE_MEMORY_BYTES))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        # the soft limit: SIGXCPU ends this process when one submission takes more than its budget
        soft = spent + TOKENISE_CPU_SECONDS
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        try:
            filtered, offsets = filter_code(json.loads(line)["code"])
            reply = {"filtered": filtered, "offsets": [[int(a), int(b)] for a, b in offsets]}
        except BaseException as e:  # noqa: BLE001 - MemoryError and RecursionError included: that student alone
            reply = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


_TOKENISER = "from nbgrader_sandbox.similarity import _tokeniser; _tokeniser()"


def filter_isolated(codes: dict[str, str]) -> tuple[dict[str, tuple], dict[str, str]]:
    """:func:`filter_code` of each student's code, in a separate process with a CPU-time and a memory limit
    (:data:`TOKENISE_CPU_SECONDS`, :data:`TOKENISE_MEMORY_BYTES`): the parser and the lexer are not made for hostile
    input (200 KB of "-" is a MemoryError). Returns ``{student: (filtered, offsets)}`` and ``{student: why}`` for
    each student whose code could not be tokenised; one failure never stops the others."""
    import select
    import signal
    import subprocess

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-c", _TOKENISER]
    done: dict[str, tuple] = {}
    failed: dict[str, str] = {}
    child = None
    try:
        for student, code in codes.items():
            if child is None or child.poll() is not None:
                child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=env)
            try:
                child.stdin.write(json.dumps({"code": code}) + "\n")
                child.stdin.flush()
                # a wall-clock backstop: the CPU limit is the rule, this only ends a child that stopped running
                ready, _, _ = select.select([child.stdout], [], [], 20 * TOKENISE_CPU_SECONDS + 30)
                answer = child.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError):
                answer = ""
            try:
                reply = json.loads(answer) if answer else None
            except ValueError:
                reply = None
            if isinstance(reply, dict) and "filtered" in reply:
                done[student] = (reply["filtered"], reply["offsets"])
                continue
            if isinstance(reply, dict) and "error" in reply:
                failed[student] = f"its code could not be tokenised ({reply['error']})"
                continue
            if child.poll() is None:
                child.kill()
            code_ = child.wait()
            failed[student] = (f"tokenising its code took more than {TOKENISE_CPU_SECONDS} CPU seconds"
                               if code_ == -signal.SIGXCPU else
                               f"the tokeniser stopped on its code (exit status {code_})")
            child = None
    finally:
        if child is not None:
            child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return done, failed


def compare(students: dict[str, str], refs: dict[str, str], boilerplate: str = "", threshold: float = DEFAULT_THRESHOLD,
            noise: int = NOISE, min_tokens: int = MIN_TOKENS, failures: dict | None = None) -> list[Match]:
    """Every pair of students, and every student against every reference, scored; the flagged ones marked.

    Each student's code is tokenised on its own (:func:`filter_isolated`); a student whose code cannot be, or whose
    comparison fails, is added to ``failures`` (student -> why) and the others are compared all the same."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a share of the code, in (0, 1]; got {threshold!r}")
    if not isinstance(noise, int) or noise < 5:
        raise ValueError(f"noise must be an int of at least 5 filtered characters; got {noise!r}")
    import numpy as np
    from copydetect import compare_files
    from copydetect.utils import highlight_overlap

    failures = {} if failures is None else failures
    bp_hashes = np.array(sorted(_fingerprint("boilerplate", boilerplate, None, noise).hashes))
    filtered, failed = filter_isolated({s: code for s, code in students.items() if code.strip()})
    failures.update(failed)
    prints = {}
    for s, result in filtered.items():
        try:
            prints[s] = _fingerprint(s, students[s], bp_hashes, noise, result)
        except Exception as e:  # noqa: BLE001 - that student alone is not compared
            failures[s] = f"its code could not be fingerprinted ({type(e).__name__})"
    ref_prints = {r: _fingerprint(r, code, bp_hashes, noise) for r, code in refs.items()}
    names = sorted(prints)
    matches = []

    def one(a, fa, b, fb, kind):
        if not fa.hashes or not fb.hashes:
            return
        try:
            tokens, (sa, sb), slices = compare_files(fa, fb)
        except Exception as e:  # noqa: BLE001 - one pair that cannot be compared never hides the others
            failures.setdefault(a, f"comparing it with {b} failed ({type(e).__name__})")
            return
        if tokens == 0:
            matches.append(Match(a, b, kind, 0.0, 0.0, 0))
            return
        m = Match(a, b, kind, float(sa), float(sb), int(tokens))
        m.flagged = m.score >= threshold and m.tokens >= min_tokens
        if m.flagged:
            try:
                m.html_a = highlight_overlap(fa.raw_code, slices[0], "<mark>", "</mark>", escape_html=True)[0]
                m.html_b = highlight_overlap(fb.raw_code, slices[1], "<mark>", "</mark>", escape_html=True,
                                             truncate=-1 if kind == "pair" else 6)[0]
            except Exception:  # noqa: BLE001 - still flagged; the page shows the code without highlights
                m.html_a, m.html_b = html.escape(fa.raw_code), html.escape(fb.raw_code)
        matches.append(m)

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            one(a, prints[a], b, prints[b], "pair")
        for r, fr in ref_prints.items():
            one(a, prints[a], r, fr, "reference")
    matches.sort(key=lambda m: (-m.flagged, -m.score, m.a, m.b))
    return matches


def collect(course: str, assignment: str, students: list[str] | None = None,
            notebooks: list[str] | None = None, notes: dict | None = None,
            layout: CourseLayout | None = None) -> tuple[dict[str, str], str]:
    """Each student's code for the assignment (all its notebooks, in order), and the release's code.

    Within the caps on what is read; ``notes`` gets, per student, what was left out or could not be read."""
    notes = {} if notes is None else notes
    layout = layout or CourseLayout(course)
    release_dir = layout.folder("release", assignment=assignment)
    if notebooks is None:
        notebooks = sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(release_dir, "*.ipynb")))
    if not notebooks:
        raise ValueError(f"assignment: no released notebooks in {release_dir}")
    if students is None:
        root = layout.folder("submitted")
        students = sorted(s for s in os.listdir(root) if os.path.isdir(os.path.join(root, s, assignment))) \
            if os.path.isdir(root) else []
    boilerplate = []
    codes: dict[str, str] = {}
    for name in notebooks:
        release = os.path.join(release_dir, f"{name}.ipynb")
        if not os.path.exists(release):
            continue
        boilerplate.append(release_code(release)[0])
        for student in students:
            path = layout.notebook("submitted", student, assignment, name)
            said = notes.setdefault(student, [])
            try:  # regular files of a sane size only: a submission is untrusted
                ok = os.path.isfile(path) and not os.path.islink(path)
                if ok and os.path.getsize(path) > MAX_BYTES:
                    said.append(f"{name}.ipynb was not read (larger than {MAX_BYTES // 1024**2} MiB)")
                    ok = False
                code = student_code(path, release, said) if ok else ""
            except (ValueError, OSError, UnicodeDecodeError):  # unreadable: the integrity report says so already
                code = ""
            except Exception as e:  # noqa: BLE001 - RecursionError, MemoryError: this student alone, said
                said.append(f"{name}.ipynb could not be read ({type(e).__name__})")
                code = ""
            codes[student] = (codes.get(student, "") + "\n\n" + code).strip("\n")
    for student, code in codes.items():
        if len(code) > MAX_CODE_CHARS:
            notes[student].append(f"only the first {MAX_CODE_CHARS} characters of its code were compared")
            codes[student] = code[:MAX_CODE_CHARS]
    for student in [s for s, said in notes.items() if not said]:
        del notes[student]
    if not boilerplate:
        raise ValueError(f"assignment: none of the notebooks {', '.join(notebooks)} is in {release_dir}")
    return codes, "\n\n".join(boilerplate)


PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; } tr.flagged td { background: #fff0f0; } td.num { text-align: right; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; margin-bottom: 2.5em; } .pair > div { min-width: 0; }
pre { background: #fafafa; border: 1px solid #ddd; padding: .6em; overflow-x: auto; font-size: 13px; margin: 0; }
mark { background: #ffd54f; } h3 { margin: .2em 0; font-size: 1em; }
"""


def write_html(matches: list[Match], path: str, assignment: str, threshold: float, students: int,
               noise: int = NOISE, max_rows: int = 500, problems: dict | None = None) -> str:
    """One self-contained page: the students not (wholly) compared and why, the flagged pairs side by side, then
    the scores (the highest ``max_rows``). Every student string is escaped: the only tags are the page's own."""
    e = html.escape
    flagged = [m for m in matches if m.flagged]
    # students' code is escaped below; the policy is the second wall: this page runs no script and loads nothing
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
           f"content=\"{PAGE_POLICY}\"><title>Similarity: {e(assignment)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>Similarity report: {e(assignment)}</h1>",
           f"<p>{students} submissions; {sum(m.kind == 'pair' for m in matches)} pairs compared. Flagged when the "
           f"larger share of code found in the other reaches <b>{threshold:.0%}</b> with at least {MIN_TOKENS} "
           f"matching characters (copydetect, names and strings abstracted, k={noise}). "
           f"<b>{len(flagged)}</b> flagged.</p>"]
    if problems:
        out.append("<h2>Not compared, or not wholly</h2><ul>")
        out += [f"<li>{e(student)}: {e(why)}</li>" for student, whys in sorted(problems.items()) for why in whys]
        out.append("</ul>")
    for m in flagged:
        what = "and" if m.kind == "pair" else "matches"
        out += [f"<section id='{e(m.a)}--{e(m.b)}'><h2>{e(m.a)} {what} {e(m.b)}: {m.score:.0%}</h2>",
                f"<p>{m.share_a:.0%} of {e(m.a)}'s code is found in {e(m.b)}"
                + (f"; {m.share_b:.0%} of {e(m.b)}'s in {e(m.a)}'s" if m.kind == "pair" else "")
                + f" ({m.tokens} matching characters).</p><div class='pair'>",
                f"<div><h3>{e(m.a)}</h3><pre>{m.html_a}</pre></div>",
                f"<div><h3>{e(m.b)}</h3><pre>{m.html_b}</pre></div></div></section>"]
    shown = [m for m in matches if not (m.kind == "reference" and m.tokens == 0)]  # sorted: flagged, then by score
    out.append("<h2>All scores</h2><p>"
               f"{'The ' + str(max_rows) + ' highest of ' + str(len(shown)) if len(shown) > max_rows else 'Every'}"
               " comparison with any match, the highest first.</p><table><tr><th>code</th><th>compared with</th>"
               "<th>share of the first</th><th>share of the second</th><th>matching characters</th></tr>")
    for m in shown[:max(max_rows, len(flagged))]:
        out.append(f"<tr class='{'flagged' if m.flagged else ''}'><td>{e(m.a)}</td><td>{e(m.b)}</td>"
                   f"<td class='num'>{m.share_a:.0%}</td><td class='num'>"
                   f"{m.share_b:.0%}</td><td class='num'>{m.tokens}</td></tr>")
    out.append("</table></body></html>")
    text = "\n".join(out)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # errors: a folder name or a notebook's JSON may hold lone surrogates, which UTF-8 cannot encode
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)
    return text


def _threshold(value) -> float:
    if value is None:
        value = os.environ.get(ENV_THRESHOLD) or DEFAULT_THRESHOLD
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number between 0 and 1; got {value!r}") from None
    if not 0 < t <= 1:
        raise ValueError(f"threshold must be a share of the code, in (0, 1]; got {value!r}")
    return t


def run(course: str, assignment: str, students: list[str] | None = None, notebooks: list[str] | None = None,
        threshold: float | None = None, html_path: str | None = None,
        problems: dict | None = None) -> tuple[list[Match], str]:
    """Compare the class, write the HTML page; returns the matches and the page's path.

    ``problems`` gets, per student, what was left out of the comparison or why the student was not compared at all
    (the caps, a notebook that could not be read, code that could not be tokenised)."""
    course = os.path.abspath(course)
    threshold = _threshold(threshold)
    problems = {} if problems is None else problems
    from .layout import for_course as course_layout
    from .settings import for_course  # the course's own references (its code, its book): c.GradingSandbox.course

    layout = course_layout(course)
    codes, boilerplate = collect(course, assignment, students, notebooks, notes=problems, layout=layout)
    failures: dict = {}
    references = dict(for_course(course).course_spec().similarity_references(course))
    matches = compare(codes, references, boilerplate, threshold, failures=failures)
    for student, why in failures.items():
        problems.setdefault(student, []).append(f"not compared: {why}")
    html_path = html_path or os.path.join(layout.folder("autograded"), f"similarity-{assignment}.html")
    write_html(matches, html_path, assignment, threshold, len(codes), problems=problems)
    return matches, html_path


def scan(course: str, assignment: str, students: list[str], notebooks: list[str], report_dir: str,
         limit: int = 20) -> list[str]:
    """The integrity report's lines on similarity (its summary, then each flagged match); writes the HTML page.

    Lines at the top of the report, not per-student flags: a similar pair is a question for the instructor, not a
    finding of tampering, and the page beside the report shows why. Never raises: a failure is itself a line, and
    grading's report is still written.
    """
    problems: dict = {}
    try:
        threshold = _threshold(None)
        matches, page = run(course, assignment, students, notebooks, threshold=threshold,
                            html_path=os.path.join(report_dir, f"similarity-{assignment}.html"), problems=problems)
    except Exception as e:  # noqa: BLE001 - the grades and the rest of the report come first
        return [f"similarity: the report failed: {type(e).__name__}: {str(e)[:300]}"]
    flagged = [m for m in matches if m.flagged]
    pairs = sum(m.kind == "pair" for m in matches)
    lines = [f"similarity: {pairs} pairs of students compared, and each student with the course's references; "
             f"{len(flagged)} above {threshold:.0%} (copydetect; {os.path.basename(page)} shows them side by side)"]
    lines += [f"similarity: {student}: {why}" for student, whys in sorted(problems.items()) for why in whys[:3]]
    for m in flagged[:limit]:
        if m.kind == "pair":
            lines.append(f"similar: {m.a} and {m.b}: {m.share_a:.0%} of {m.a}'s code is in {m.b}'s, "
                         f"{m.share_b:.0%} of {m.b}'s in {m.a}'s")
        else:
            lines.append(f"similar: {m.share_a:.0%} of {m.a}'s code is in {m.b}")
    if len(flagged) > limit:
        lines.append(f"similar: {len(flagged) - limit} more on the page")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nbgrader_sandbox.similarity",
                                description="Similarity between the submissions of an assignment, and with the "
                                            "course's references; writes an HTML page and prints the flagged pairs.")
    p.add_argument("assignment")
    p.add_argument("--course", default=".", help="the course directory (default: the current one)")
    p.add_argument("--threshold", "-t", default=None,
                   help=f"flag when this share of one side's code is found in the other (default {DEFAULT_THRESHOLD}, "
                        f"or ${ENV_THRESHOLD})")
    p.add_argument("--html", help="where to write the page (default: COURSE/autograded/similarity-ASSIGNMENT.html)")
    args = p.parse_args(argv)
    from .integrity import one_line  # student ids are folder names: no newline or terminal escape is printed

    problems: dict = {}
    try:
        threshold = _threshold(args.threshold)
        matches, page = run(args.course, args.assignment, threshold=threshold, html_path=args.html,
                            problems=problems)
    except ValueError as e:
        p.error(str(e))
    flagged = [m for m in matches if m.flagged]
    pairs = [m for m in matches if m.kind == "pair"]
    print(f"{len(pairs)} pairs compared; {len(flagged)} flagged at {threshold:.0%}")
    for m in flagged:
        print(f"  {one_line(m.a, 120)} ~ {one_line(m.b, 120)}: {m.share_a:.0%}"
              + (f" / {m.share_b:.0%}" if m.kind == "pair" else "") + f" ({m.tokens} characters)")
    for student, whys in sorted(problems.items()):
        for why in whys:
            print(f"  {one_line(student, 120)}: {one_line(why, 300)}")
    print(f"page: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
