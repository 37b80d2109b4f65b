"""What several test modules share: one Chromium for the whole session, driven by Playwright's sync API.

Playwright's sync API cannot start twice in one process while a first one is alive (it runs an event loop of its
own), so the book's pages, the student's JupyterLab and the JupyterHub journey all use this one browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
