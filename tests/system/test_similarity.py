"""The similarity report (nbgrader_sandbox.similarity): planted copies are flagged, honest answers are not.

The class: seven honest answers to 01-layernorm, written independently (tests/similarity_corpus.py; each passes
lnkit's checks), three students who copied one of them and disguised it (names renamed, comments and blank lines
added, functions reordered, statements swapped), and one who pasted lnkit's own code. Run with ``-s`` to see every
score.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CORRECT, LNKIT_COURSE, write_submission
from similarity_corpus import HONEST, PLANTED

pytest.importorskip("copydetect", reason="copydetect comes with lnkit[grading]")

from nbgrader_sandbox import similarity  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "01-layernorm"


def make_course(root: Path, answers: dict) -> Path:
    """A course folder: the real release, the book, and one submission per student."""
    shutil.copytree(ROOT / "exercises" / ASSIGNMENT, root / "exercises" / ASSIGNMENT)
    os.symlink(ROOT / "book", root / "book")
    (root / "nbgrader_config.py").write_text(f"c = get_config()\nc.GradingSandbox.course = {LNKIT_COURSE!r}\n"
                                             f"c.CourseDirectory.release_directory = 'exercises'\n")
    release = root / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for student, cells in answers.items():
        write_submission(release, cells, root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("course"), {**HONEST, **{s: v[0] for s, v in PLANTED.items()}})
    matches, page = similarity.run(str(course), ASSIGNMENT)
    return course, matches, page


def _table(matches) -> str:
    rows = [f"{m.score:5.2f} {'FLAG' if m.flagged else '    '} {m.a:8s} {m.b}" for m in matches
            if m.kind == "pair" or m.score >= 0.2]
    return "\n".join(rows)


def test_honest_answers_are_correct():
    """The honest corpus is made of right answers: lnkit's checks pass on every one (visible and hidden cases)."""
    import numpy as np

    from lnkit.checks import check_layer_norm, check_layer_norm_stats

    for cells in {**HONEST, **{s: v[0] for s, v in PLANTED.items()}}.values():
        namespace = {"np": np}
        for source in cells.values():
            exec(source, namespace)  # noqa: S102 - our own corpus
        with contextlib.redirect_stdout(io.StringIO()):
            for hidden in (False, True):
                check_layer_norm_stats(namespace["layer_norm_stats"], hidden=hidden)
                check_layer_norm(namespace["layer_norm"], hidden=hidden)


def test_planted_copies_are_flagged(graded):
    _, matches, _ = graded
    print("\n" + _table(matches))
    flagged = {(m.a, m.b) for m in matches if m.flagged}
    for copier, (_, source, how) in PLANTED.items():
        pair = tuple(sorted((copier, source))) if source in HONEST else (copier, source)
        assert pair in flagged, f"{copier} ({how}, from {source}) was not flagged:\n{_table(matches)}"


def test_honest_answers_are_not_flagged(graded):
    _, matches, _ = graded
    wrong = [m for m in matches if m.flagged and m.a in HONEST and (m.b in HONEST or m.kind == "reference")]
    assert not wrong, "honest answers flagged:\n" + _table(wrong)
    # and with a margin: the most similar honest pair, and the honest answer closest to lnkit or the book
    honest = [m.score for m in matches if m.a in HONEST and (m.b in HONEST or m.kind == "reference")]
    assert max(honest) < similarity.DEFAULT_THRESHOLD - 0.1, _table(matches)


def test_copies_and_honest_pairs_are_far_apart(graded):
    """Copies of classmates score near 1; honest pairs share idioms only: a wide gap for the instructor's threshold."""
    _, matches, _ = graded
    copies = [m.score for m in matches if m.kind == "pair" and any(
        {m.a, m.b} == {c, src} for c, (_, src, _) in PLANTED.items())]
    honest = [m.score for m in matches if m.kind == "pair" and m.a in HONEST and m.b in HONEST]
    assert len(copies) == 3 and min(copies) >= 0.85, copies
    assert max(honest) <= 0.4, honest


def test_renamed_names_are_seen_through_but_not_numpy_calls():
    a = "def f(x):\n    mean = x.mean(axis=-1, keepdims=True)\n    return np.sqrt(mean)\n"
    b = "def g(inp):\n    mu = inp.mean(axis = -1, keepdims = True)  # same\n\n    return np.sqrt(mu)\n"
    c = "def f(x):\n    mean = x.var(axis=-1, keepdims=True)\n    return np.exp(mean)\n"
    assert similarity.filter_code(a)[0] == similarity.filter_code(b)[0]
    assert similarity.filter_code(a)[0] != similarity.filter_code(c)[0]
    # a keyword argument keeps its name even where the code also binds that name
    assert "out=" in similarity.filter_code("out = 1\nnp.add(a, b, out=c)\n")[0]


def test_student_code_is_what_they_wrote(tmp_path):
    """Solution cells (by grade_id, even with the metadata stripped) and added cells; not tests nor the template."""
    release = ROOT / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    sub = tmp_path / "sub.ipynb"
    write_submission(release, {"layer_norm_stats": "def layer_norm_stats(x):\n    return MARK_ONE\n"}, sub)
    nb = json.loads(sub.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "layer_norm_stats":
            cell["metadata"] = {}  # stripped: still the student's code
    nb["cells"].append({"cell_type": "code", "metadata": {}, "source": "helper = MARK_TWO\n", "outputs": [],
                        "execution_count": None})
    sub.write_text(json.dumps(nb))
    code = similarity.student_code(str(sub), str(release))
    assert "MARK_ONE" in code and "MARK_TWO" in code
    assert "check_layer_norm" not in code  # test cells are not the student's
    assert "NotImplementedError" not in code  # the untouched template of layer_norm is not theirs


def test_html_page_shows_pairs_side_by_side(graded):
    course, matches, page = graded
    assert page == str(course / "autograded" / f"similarity-{ASSIGNMENT}.html")
    text = Path(page).read_text()
    for m in (m for m in matches if m.flagged):
        assert f"<section id='{m.a}--{m.b}'>" in text
    section = text.split("<section id='bob--mallory'>")[1].split("</section>")[0]
    left, right = section.split("<div><h3>")[1:3]
    assert left.startswith("bob</h3>") and right.startswith("mallory</h3>")
    assert left.count("<mark>") >= 1 and "<mark>" in right
    assert "np.sqrt" in left
    quinn = text.split("<section id='quinn--lnkit/blocked.py'>")[1].split("</section>")[0]
    assert "ij-&gt;i" in quinn and "ij->i" not in quinn  # the code is escaped: the only tags are ours
    assert "All scores" in text and text.count("<tr class=") >= 55  # every pair of the 11 students is listed


def test_scan_gives_the_integrity_reports_lines(graded):
    course, _, _ = graded
    students = sorted(HONEST) + sorted(PLANTED)
    lines = similarity.scan(str(course), ASSIGNMENT, students, [ASSIGNMENT], str(course / "autograded"))
    assert lines[0].startswith("similarity: 55 pairs of students compared") and "4 above 60%" in lines[0]
    assert f"similarity-{ASSIGNMENT}.html" in lines[0]
    named = set(re.findall(r"[\w/.]+(?<!\.)", " ".join(lines[1:])))
    assert set(PLANTED) | {"bob", "carol", "dave", "lnkit/blocked.py"} <= named, lines
    assert not (set(HONEST) - {"bob", "carol", "dave"}) & named, lines
    assert len(similarity.scan(str(course), ASSIGNMENT, students, [ASSIGNMENT], str(course / "autograded"),
                               limit=2)) == 4  # the summary, two matches, "2 more on the page"


def test_scan_never_raises(tmp_path):
    lines = similarity.scan(str(tmp_path), "no-such-assignment", ["a"], ["nb"], str(tmp_path))
    assert len(lines) == 1 and "similarity: the report failed: ValueError" in lines[0]


def test_threshold_is_the_instructors(graded, monkeypatch):
    course, _, _ = graded
    with pytest.raises(ValueError, match="threshold"):
        similarity.run(str(course), ASSIGNMENT, threshold=1.5)
    monkeypatch.setenv(similarity.ENV_THRESHOLD, "0.99")
    matches, _ = similarity.run(str(course), ASSIGNMENT, html_path=str(course / "t.html"))
    assert {(m.a, m.b) for m in matches if m.flagged} == {("bob", "mallory"), ("carol", "nina")}


def test_command_line(graded):
    course, _, _ = graded
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "nbgrader_sandbox.similarity", ASSIGNMENT, "--course", str(course),
                          "--html", str(course / "cli.html")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "55 pairs compared; 4 flagged at 60%" in out.stdout, out.stdout
    assert "bob ~ mallory" in out.stdout and (course / "cli.html").exists()
    bad = subprocess.run([sys.executable, "-m", "nbgrader_sandbox.similarity", ASSIGNMENT, "--course", str(course),
                          "--threshold", "lots"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "threshold must be a number" in bad.stderr


def _add_cells(notebook: Path, *sources: str) -> None:
    nb = json.loads(notebook.read_text())
    nb["cells"] += [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
                    for s in sources]
    notebook.write_text(json.dumps(nb))


def test_a_submission_that_breaks_the_parser_is_reported_alone(tmp_path):
    """A cell of 200 KB of "-" made the whole class's scan fail (MemoryError). Now what is read is capped, each
    student is tokenised on their own, and every copy is still flagged; the report names that student alone."""
    answers = {**HONEST, **{s: v[0] for s, v in PLANTED.items()}, "dashes": {}}
    course = make_course(tmp_path, answers)
    _add_cells(course / "submitted" / "dashes" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
               "-" * 200_000, "x = " + "-" * 19_000 + "1\n")  # the second is under the cell cap: the parser's turn
    students = sorted(answers)
    lines = similarity.scan(str(course), ASSIGNMENT, students, [ASSIGNMENT], str(course / "autograded"))
    assert lines[0].startswith("similarity: 66 pairs of students compared") and "4 above 60%" in lines[0], lines
    for copier, (_, source, _) in PLANTED.items():
        assert any(copier in line and source in line for line in lines[1:] if line.startswith("similar:")), lines
    problems = [line for line in lines if line.startswith("similarity: ") and line is not lines[0]]
    assert problems == [f"similarity: dashes: {ASSIGNMENT}.ipynb: a cell of 200000 characters was left out "
                        f"(more than {similarity.MAX_CELL_CHARS})"], lines
    page = (course / "autograded" / f"similarity-{ASSIGNMENT}.html").read_text()
    assert "dashes: " in page and "a cell of 200000 characters was left out" in page


def test_the_tokeniser_fails_one_student_at_a_time(monkeypatch):
    """Whatever the tokeniser meets (an exception, MemoryError included; a crash; CPU time past the budget), that
    student alone is reported, and the students after it are tokenised all the same."""
    sabotage = (
        "import os, signal, nbgrader_sandbox.similarity as s\n"
        "s.TOKENISE_CPU_SECONDS = 1\n"
        "real = s.filter_code\n"
        "def filter_code(code):\n"
        "    if 'MEMORY' in code: raise MemoryError\n"
        "    if 'CRASH' in code: os.kill(os.getpid(), signal.SIGSEGV)\n"
        "    if 'SPIN' in code:\n"
        "        while True: pass\n"
        "    return real(code)\n"
        "s.filter_code = filter_code\n"
        "s._tokeniser()\n")
    monkeypatch.setattr(similarity, "_TOKENISER", sabotage)
    monkeypatch.setattr(similarity, "TOKENISE_CPU_SECONDS", 1)
    good = "def f(x):\n    return x + 1\n"
    codes = {"a": good, "b": "MEMORY", "c": good, "d": "CRASH", "e": good, "f": "SPIN", "g": good}
    done, failed = similarity.filter_isolated(codes)
    assert sorted(done) == ["a", "c", "e", "g"] and done["g"] == done["a"]
    assert failed == {"b": "its code could not be tokenised (MemoryError: )",
                      "d": f"the tokeniser stopped on its code (exit status {-__import__('signal').SIGSEGV})",
                      "f": "tokenising its code took more than 1 CPU seconds"}, failed


def test_every_student_string_on_the_page_is_escaped(tmp_path):
    """A student id is a folder name (anything but "/"), the code is the student's: neither becomes a tag."""
    code = {"layer_norm": CORRECT["layer_norm"]
            + '\nNOTE = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"\n'}
    course = make_course(tmp_path, {"<img src=x onerror=alert(3)>": code, "eve' onmouseover='alert(4)": code,
                                    "not-utf8-\udcff": code})  # a folder name os.listdir gives with a lone surrogate
    _, page = similarity.run(str(course), ASSIGNMENT)
    text = Path(page).read_text()
    assert "flagged" in text and "<section id=" in text  # the pair is flagged: its code is on the page
    assert "<script" not in text and "<img" not in text and "onmouseover='" not in text
    assert "&lt;img src=x onerror=alert(3)&gt;" in text
    assert f"http-equiv='Content-Security-Policy' content=\"{similarity.PAGE_POLICY}\"" in text  # the second wall
