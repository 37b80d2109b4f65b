"""The book as a reader gets it: built for real with warnings as errors, then opened page by page in Chromium.

The build goes to _build/test-html with the execution cache in _build/.jupyter_cache, shared with `make book`, so a
re-run after a prose edit takes seconds. Every page is written again (`--all`): Sphinx does not notice a change to
book/_ext, and a stale page would test the old code. The browser is Debian's chromium driven by Playwright; Playwright's
own browser download is never used (it cannot work offline).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

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
    prebuilt = os.environ.get("LNKIT_BUILT_BOOK")  # a book already built with -W, e.g. by `make book`, for a quick loop
    if prebuilt:
        return Path(prebuilt)
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

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # the browser dropped a request it no longer wanted (it left the page): no error of the book's
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    handler = functools.partial(Quiet, directory=str(built_book))
    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


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


# What a reader must never see on a page: a library's warning, a path of the machine that built the book, a
# traceback. A folder named in prose (`/tmp`, `/home/student` in the instructors' page) is not a path into one.
NOISE = re.compile(
    r"site-packages|dist-packages|\w*Warning:|/root/|/home/[^/\s]+/|/tmp/|Traceback \(most recent call last\)"
    r"|Cell In\[\d+\]|File \"[^\"]+\", line \d+"
)


def page_noise(page_html: str) -> list[str]:
    """The lines of a built page that a reader sees (prose and cell outputs, not code cells' source) and that hold
    noise, each as 'line N: text'."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page_html, "html.parser")
    article = soup.select_one("article") or soup.body
    for source in article.select(".cell_input, script, style"):
        source.decompose()
    lines = article.get_text("\n").splitlines()
    return [f"line {n}: {line.strip()[:200]}" for n, line in enumerate(lines, 1) if NOISE.search(line)]


def test_no_page_shows_warnings_build_paths_or_tracebacks(built_book):
    noisy = {page: found for page in toc_pages() if (found := page_noise((built_book / f"{page}.html").read_text()))}
    assert noisy == {}, "noise on the pages (page: lines of its text):\n" + "\n".join(
        f"{page}.html: {line}" for page, lines in noisy.items() for line in lines)


def test_the_noise_check_sees_a_cell_warning_and_ignores_code_and_prose():
    warned = ('<article><div class="cell_input"><pre>import site-packages</pre></div><div class="cell_output">'
              "<pre>/opt/venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found."
              "</pre></div><p>a private <code>/tmp</code> in <code>/home/student</code></p></article>")
    assert len(page_noise(warned)) == 1 and "TqdmWarning" in page_noise(warned)[0]
    assert page_noise(warned.replace("TqdmWarning: IProgress", "IProgress").replace("site-packages", "x")) == []


def _links(page_html: str) -> set[str]:
    return {html.unescape(h) for h in re.findall(r'href="([^"]+)"', page_html)}


def test_exercises_have_download_and_launch_buttons_with_the_right_urls(built_book):
    """Binder, JupyterHub (nbgitpuller) and Colab cannot be reached offline: check the URLs they are given."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo, branch = config["repository"]["url"], config["repository"]["branch"]
    org, name = urlparse(repo).path.strip("/").split("/")
    launch = config["launch_buttons"]
    exercises = [p for p in toc_pages() if p.startswith("exercises/")]
    # every released assignment is in the book, once
    assert sorted(exercises) == sorted(f"exercises/{d.name}/{d.name}" for d in (ROOT / "exercises").iterdir()
                                       if d.is_dir())
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


# --- Figures: every one loads and has alt text; the diagrams are readable in the theme's dark mode ---------------

CHAPTERS = [p for p in toc_pages() if p.startswith("book/ch")]
# the pages whose diagrams are drawn as inline SVG in the page's own colours (class course-diagram)
DIAGRAM_PAGES = ["book/ch02_which_axis", "book/ch03_counting_statistics", "book/ch06_pre_ln_post_ln"]

FIGURES_JS = """() => [...document.querySelectorAll('article figure')].map(f => {
    const img = f.querySelector('img'), svg = f.querySelector('svg');
    if (img) return {id: f.id, kind: 'img', src: img.getAttribute('src'), alt: img.getAttribute('alt') || '',
                     loaded: img.complete && img.naturalWidth > 0};
    if (svg) return {id: f.id, kind: 'svg', role: svg.getAttribute('role'),
                     alt: svg.getAttribute('aria-label') || '',
                     loaded: svg.getBoundingClientRect().width > 0 && svg.querySelectorAll('path, text').length > 0};
    return {id: f.id, kind: 'none', alt: '', loaded: false};
})"""


@pytest.mark.parametrize("page", CHAPTERS)
def test_every_figure_loads_and_has_alt_text(page, site, browser):
    tab = browser.new_page()
    tab.goto(urljoin(site, f"{page}.html"), wait_until="load")
    figures = tab.evaluate(FIGURES_JS)
    tab.close()
    assert figures, f"{page}: no figure"
    for fig in figures:
        where = f"{page}#{fig['id']}"
        assert fig["kind"] != "none", f"{where}: a figure with neither an image nor a diagram"
        assert fig["loaded"], f"{where}: the {fig['kind']} did not load or is empty"
        alt = fig["alt"].strip()
        # docutils falls back to the image's file name when no alt text is given: that is not alt text
        assert len(alt) >= 40 and not re.search(r"\.(png|svg|jpe?g)$|_images/", alt), f"{where}: alt text {alt!r}"
        if fig["kind"] == "svg":
            assert fig["role"] == "img", f"{where}: an inline diagram needs role=img for its aria-label to be read"


def _luminance(rgb) -> float:
    """WCAG relative luminance of an (r, g, b) colour in 0..255."""
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _blend(rgba, background):
    """The colour `rgba` (alpha in 0..1) painted over an opaque background."""
    *rgb, alpha = rgba
    return tuple(alpha * c + (1 - alpha) * b for c, b in zip(rgb, background))


# For every diagram: the background it is drawn on (the first ancestor with an opaque background), and the colour
# and opacity of everything drawn with ink: its text, and its lines (strokes) drawn at full opacity. Lines drawn
# faint on purpose (a grid) are decoration and are left out.
INK_JS = """() => {
    const rgba = s => { const m = s.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
        const v = m[1].split(',').map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
    const opacity = (el, svg, prop) => { let o = parseFloat(getComputedStyle(el)[prop] || '1');
        for (let e = el; e && e !== svg.parentElement; e = e.parentElement) o *= parseFloat(getComputedStyle(e).opacity);
        return o; };
    return [...document.querySelectorAll('article svg.course-diagram')].map(svg => {
        let bg = null;
        for (let e = svg; e && !bg; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor); if (c && c[3] > 0.99) bg = c; }
        bg = bg || rgba(getComputedStyle(document.documentElement).backgroundColor) || [255, 255, 255, 1];
        const texts = [...svg.querySelectorAll('text')].map(t => ({text: t.textContent,
            colour: rgba(getComputedStyle(t).fill), alpha: opacity(t, svg, 'fillOpacity')}));
        const lines = [...svg.querySelectorAll('path, line, polyline, polygon, rect, circle')]
            .filter(e => getComputedStyle(e).stroke !== 'none')
            .map(e => ({colour: rgba(getComputedStyle(e).stroke), alpha: opacity(e, svg, 'strokeOpacity')}))
            .filter(l => l.colour && l.alpha > 0.99);
        return {label: (svg.getAttribute('aria-label') || '').slice(0, 40), bg, texts, lines};
    });
}"""  # noqa: E501 - JavaScript the browser runs, kept as written: a long line is inside this string


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("page", DIAGRAM_PAGES)
def test_diagrams_are_readable_in_light_and_dark_mode(page, theme, site, browser):
    """WCAG AA contrast against the page's background in the theme: 4.5:1 for text, 3:1 for lines."""
    tab = browser.new_page()
    tab.goto(urljoin(site, f"{page}.html"), wait_until="load")
    tab.evaluate(f"document.documentElement.dataset.theme = {theme!r}")
    background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
    diagrams = tab.evaluate(INK_JS)
    tab.close()
    assert diagrams, f"{page}: no diagram"
    page_dark = _luminance([float(v) for v in re.findall(r"[\d.]+", background)[:3]]) < 0.2
    assert page_dark == (theme == "dark"), f"{page}: the theme did not switch to {theme} ({background})"
    for diagram in diagrams:
        bg = diagram["bg"][:3]
        assert diagram["texts"] and diagram["lines"], f"{page}: {diagram['label']}: no text or no lines"
        for t in diagram["texts"]:
            ratio = _contrast(_blend([*t["colour"][:3], t["colour"][3] * t["alpha"]], bg), bg)
            assert ratio >= 4.5, f"{page} ({theme}): text {t['text']!r} has contrast {ratio:.2f} on {bg}"
        for line in diagram["lines"]:
            ratio = _contrast(_blend([*line["colour"][:3], line["colour"][3] * line["alpha"]], bg), bg)
            assert ratio >= 3, f"{page} ({theme}): a line in {line['colour']} has contrast {ratio:.2f} on {bg}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_images_get_a_light_backing_in_dark_mode(page, site, browser):
    """Matplotlib's PNG figures are drawn in dark ink: in dark mode the theme must put them on a light card."""
    tab = browser.new_page()
    tab.goto(urljoin(site, f"{page}.html"), wait_until="load")
    tab.evaluate("document.documentElement.dataset.theme = 'dark'")
    backings = tab.evaluate("[...document.querySelectorAll('article figure img')]"
                            ".map(i => getComputedStyle(i).backgroundColor)")
    tab.close()
    for backing in backings:
        rgb = [float(v) for v in re.findall(r"[\d.]+", backing)[:3]]
        assert len(rgb) == 3 and _luminance(rgb) > 0.8, f"{page}: an image on {backing} in dark mode"

