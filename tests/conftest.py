"""What every test module shares: the order the files run in, and one Chromium per test process.

`make test` runs the files on pytest-xdist workers (`-n 3 --dist loadfile --no-loadscope-reorder`): each file whole
on one worker, in the order collected here, the longest first, so that the workers end together (longest processing
time first). The order changes no result: each file sets up all it uses.

Playwright's sync API cannot start twice in one process while a first one is alive (it runs an event loop of its
own), so the book's pages, the student's JupyterLab and the JupyterHub journey all use the one browser of their
process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# tests/system's files that take longest (fresh clone, 2 cores; the closing note of issue 19 gives the figures), longest
# first; every other file follows in pytest's own order
SLOWEST_FIRST = ("test_grading.py", "test_book.py", "test_failures.py", "test_nbgrader_suite.py",
                 "test_hub_journey.py", "test_instructor_docs.py", "test_trained_model.py", "test_students.py",
                 "test_instructor_pages_inert.py", "test_hidden_cases.py", "test_collect.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: within a rank, pytest's order


# Debian's Chromium (make test installs it); Playwright never downloads a browser of its own here
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium).")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()
