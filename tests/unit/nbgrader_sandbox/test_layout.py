"""The course's folders (nbgrader_sandbox.layout) are exactly where nbgrader's own CourseDirectory puts them."""

from __future__ import annotations

import os

import pytest

from nbgrader_sandbox.layout import CourseLayout, for_course

CONFIGS = {
    "defaults": "",
    "lnkit": "c.CourseDirectory.source_directory = 'solutions'\nc.CourseDirectory.release_directory = 'exercises'\n",
    "elsewhere": "c.CourseDirectory.submitted_directory = 'in'\nc.CourseDirectory.autograded_directory = 'out'\n"
                 "c.CourseDirectory.feedback_directory = 'fb'\nc.CourseDirectory.db_url = 'sqlite:///db/grades.db'\n",
    "rooted": "import os\nc.CourseDirectory.root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'r')\n"
              "c.CourseDirectory.db_url = 'sqlite:////tmp/abs-gradebook.db?timeout=60'\n",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_layout_is_nbgraders(tmp_path, name, monkeypatch):
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n" + CONFIGS[name])
    monkeypatch.chdir(tmp_path)  # nbgrader's root defaults to the current folder: the course's, as nbgrader runs
    cd = CourseDirectory(config=PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config())
    got = for_course(str(tmp_path))
    assert got.root == os.path.abspath(cd.root)
    for step in ("source", "release", "submitted", "autograded", "feedback"):
        assert getattr(got, step) == getattr(cd, f"{step}_directory"), step
    assert got.folder("submitted", "ada", "ps1") == cd.format_path(cd.submitted_directory, "ada", "ps1")
    assert got.folder("release", "", "ps1") == os.path.normpath(cd.format_path(cd.release_directory, ".", "ps1"))
    path = cd.db_url.split("sqlite:///", 1)[1].split("?")[0]
    assert got.gradebook == (path if os.path.isabs(path) else os.path.join(cd.root, path))


def test_a_folder_without_configuration_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="has no nbgrader_config.py; run this from the course directory"):
        for_course(str(tmp_path))
    assert CourseLayout(str(tmp_path)).folder("autograded", "ada") == str(tmp_path / "autograded" / "ada")
