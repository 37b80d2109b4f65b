"""The one seam between lnkit and the grader (nbgrader_sandbox.course): what crosses it, and nothing else.

Every name a check sends to the student's side (a stand-in, a carried class) is registered by the course module and
checked when it is loaded; an unknown one is an error there, never a silent no-op during a student's call. Neither
package imports the other's insides. (tests/system/test_course_helpers_sandboxed.py sends each helper through a real
sandbox.)
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
from corpus import LNKIT_COURSE

from lnkit import checks
from nbgrader_sandbox import course as courses
from nbgrader_sandbox.preprocessors import outside_problem

ROOT = Path(__file__).resolve().parents[3]
LNKIT = courses.load(LNKIT_COURSE)


def test_the_course_module_registers_every_public_check_and_nothing_else():
    assert set(LNKIT.checks) == set(checks.__all__)
    assert LNKIT.check_modules == ("lnkit.checks",) and LNKIT.references == ("lnkit",)
    assert LNKIT.refused(("numpy",)) == ("lnkit", "torch") and LNKIT.refused(("numpy", "torch")) == ("lnkit",)


def _course_module(tmp_path, monkeypatch, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return name


def test_a_check_that_names_an_unregistered_helper_is_refused_when_the_course_loads(tmp_path, monkeypatch):
    module = _course_module(tmp_path, monkeypatch, "course_bad_stand_in", """
        STAND_INS = {"helper": "def make_helper(k):\\n    return lambda x: k * x\\n"}
        CHECKS = {"check_f": {"stand_ins": ("helpr",)}}
    """)
    with pytest.raises(courses.CourseError, match=r"CHECKS\['check_f'\] uses the stand-in 'helpr'"):
        courses.from_module(module)
    module = _course_module(tmp_path, monkeypatch, "course_bad_source", """
        STAND_INS = {"helper": "def make_other(k):\\n    return k\\n"}
    """)
    with pytest.raises(courses.CourseError, match="defines no make_helper"):
        courses.from_module(module)
    module = _course_module(tmp_path, monkeypatch, "course_bad_carried", """
        CARRIED = {"Box": (int, "class Box:\\n    pass\\n")}
    """)
    with pytest.raises(courses.CourseError, match=r"needs \.from_state"):
        courses.from_module(module)
    with pytest.raises(courses.CourseError, match="cannot import it"):
        courses.from_module("no_such_course_module_here")


def test_a_test_cell_importing_an_unregistered_check_is_refused_at_release():
    assert outside_problem("from lnkit.checks import check_layer_norm\ncheck_layer_norm(layer_norm)", LNKIT) == ""
    why = outside_problem("from lnkit.checks import check_layer_nrom\ncheck_layer_nrom(layer_norm)", LNKIT)
    assert "check_layer_nrom is not a check of the course lnkit.checks.course" in why


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_neither_package_imports_the_others_insides():
    for path in sorted((ROOT / "grader" / "nbgrader_sandbox").glob("*.py")):
        assert not [m for m in _imports(path) if m.split(".")[0] == "lnkit"], path
    for path in sorted((ROOT / "lnkit").rglob("*.py")):
        assert not [m for m in _imports(path) if m.split(".")[0] in ("nbgrader_sandbox", "nbgrader")], path


def test_the_course_install_pulls_no_grader_and_no_nbgrader():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(";")[0].replace(" ", "") for d in project["dependencies"]]
    assert not [d for d in names if d.lower().startswith(("nbgrader", "copydetect"))], names
    extras = project["optional-dependencies"]
    assert not [d for e in extras.values() for d in e if "nbgrader-sandbox" in d or "nbgrader_sandbox" in d]
