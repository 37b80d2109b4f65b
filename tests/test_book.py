"""The book as a reader gets it: built for real with warnings as errors, then opened page by page in Chromium.

The build goes to _build/test-html with the execution cache in _build/.jupyter_cache, shared with `make book`, so a
re-run after a prose edit takes seconds. Every page is written again (`--all`): Sphinx does not notice a change to
book/_ext, and a stale page would test the old code. The browser is Debian's chromium driven by Playwright; Playwright's own
browser download is never used (it cannot work offline).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.slow


def toc_pages() -> list[str]:
    """Every document named in _toc.yml, in reading order (paths without suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


@pytest.fixture(scope="session")
def built_book() -> Path:
    out = ROOT / "_build" / "test-html"
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "--all", "-W", "-n", "--keep-going"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def site(built_book):
    """Serve the built book on a loopback port, as a reader's web server would."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium).")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def test_every_toc_page_was_built(built_book):
    for page in toc_pages():
        assert (built_book / f"{page}.html").is_file(), page
    assert (built_book / "index.html").is_file()


def test_no_solution_notebook_is_published(built_book):
    assert not (built_book / "solutions").exists()
    assert not list(built_book.rglob("*BEGIN SOLUTION*"))


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_in_a_real_browser(page, site, browser):
    ctx = browser.new_context()
    tab = ctx.new_page()
    problems: list[str] = []
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    tab.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    tab.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
    tab.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    url = urljoin(site, f"{page}.html")
    response = tab.goto(url, wait_until="load")
    assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"

    # math: every formula Sphinx emitted has been typeset by MathJax
    n_math = tab.locator(".math").count()
    if n_math:
        tab.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
        tab.evaluate("MathJax.startup.promise")
        untypeset = tab.evaluate(
            "[...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length"
        )
        assert untypeset == 0, f"{page}: {untypeset} of {n_math} formulas were not typeset"

    # images: every one has loaded (a broken image has natural width 0)
    broken = tab.evaluate(
        "[...document.querySelectorAll('article img')].filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))"
    )
    assert broken == [], f"{page}: images that did not load: {broken}"

    # internal links: every target exists on the server, and a #fragment names an element there
    hrefs = tab.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
    for href in sorted(set(hrefs)):
        parsed = urlparse(href)
        if not href.startswith(site):
            continue
        target = href.split("#")[0]
        check = ctx.request.get(target)
        assert check.ok, f"{page}: link to {href} answers HTTP {check.status}"
        if parsed.fragment and target.endswith(".html"):
            html = check.text()
            assert f'id="{parsed.fragment}"' in html, f"{page}: link to {href}: no element with that id"
    assert problems == [], f"{page}: " + "\n".join(problems)
    ctx.close()


def test_search_finds_rmsnorm(site, browser):
    tab = browser.new_page()
    tab.goto(urljoin(site, "search.html?q=RMSNorm"), wait_until="load")
    tab.wait_for_selector("#search-results ul.search li", timeout=20_000)
    results = tab.locator("#search-results ul.search li").all_inner_texts()
    assert results, "the search page found nothing for RMSNorm"
    tab.close()



def _links(page_html: str) -> set[str]:
    return {html.unescape(h) for h in re.findall(r'href="([^"]+)"', page_html)}


def test_exercises_have_download_and_launch_buttons_with_the_right_urls(built_book):
    """Binder, JupyterHub (nbgitpuller) and Colab cannot be reached offline: check the URLs they are given."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo, branch = config["repository"]["url"], config["repository"]["branch"]
    org, name = urlparse(repo).path.strip("/").split("/")
    launch = config["launch_buttons"]
    exercises = [p for p in toc_pages() if p.startswith("exercises/")]
    assert len(exercises) == 8
    for page in exercises:
        links = _links((built_book / f"{page}.html").read_text())
        notebook = f"{page}.ipynb"
        assert f"{launch['binderhub_url']}/v2/gh/{org}/{name}/{branch}?urlpath=lab/tree/{notebook}" in links, page
        assert f"{launch['colab_url']}/github/{org}/{name}/blob/{branch}/{notebook}" in links, page
        hub = [h for h in links if h.startswith(f"{launch['jupyterhub_url']}/hub/user-redirect/git-pull?")]
        assert len(hub) == 1, page
        query = parse_qs(urlparse(hub[0]).query)
        assert query == {"repo": [repo], "branch": [branch], "urlpath": [f"lab/tree/{name}/{notebook}"]}, query
        download = [h for h in links if h.endswith(f"_sources/{notebook}")]
        assert download, f"{page}: no download link to the notebook"
        served = built_book / "_sources" / notebook
        assert served.is_file() and served.read_bytes() == (ROOT / notebook).read_bytes(), page


def test_chapters_launch_on_binder_and_jupyterhub_but_not_colab(built_book):
    """Colab opens .ipynb files only; the chapters are MyST Markdown."""
    for page in [p for p in toc_pages() if p.startswith("book/ch")]:
        links = _links((built_book / f"{page}.html").read_text())
        assert any("mybinder.org/v2/gh/" in h and h.endswith(f"{page}.md") for h in links), page
        assert any("/hub/user-redirect/git-pull?" in h for h in links), page
        assert not any("colab.research.google.com" in h for h in links), page


def test_the_exercises_install_lnkit_from_the_books_repository():
    """The notebooks' fall-back install (for Colab) names the repository the launch buttons use."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for notebook in sorted((ROOT / "exercises").glob("*/*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        setup = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "setup"]
        assert len(setup) == 1, notebook
        assert f"lnkit @ git+{repo}" in "".join(setup[0]["source"]), notebook
