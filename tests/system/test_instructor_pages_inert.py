"""Nothing a student submits runs in a page the instructor (or the student) opens (issue 18, class 1).

Each vector below, if it ran, would add its name to ``window.__pwned``, change the page's title and request
``/hit/<name>`` from a small HTTP server of the test's own: the probe. Vectors: markdown ``<img onerror>``,
``<script>``, ``<svg onload>``, ``<iframe srcdoc>``, ``<details ontoggle>``, ``javascript:`` links (clicked), an image
from a foreign server, an SVG attachment; outputs ``text/html`` with script (also ``isolated``), ``text/markdown``,
``application/javascript``, ``image/svg+xml`` with a script, a widget view, and notebook-level widget state.

- fast: SafeOutputs keeps only inert types and records what it dropped; the course's nbgrader configuration,
  loaded as nbgrader loads it, renders none of it (formgrade and feedback templates).
- slow, in Chromium: the stock exporter runs the vectors (the probe works), SafeHTMLExporter runs none; then a
  submission of 06-pre-post-ln carrying them (in its hand-graded written answer and in cells that display them) is
  autograded, its feedback is generated and opened, and the formgrader's Manual Grading page of a Jupyter server
  started in the course folder is opened, scored by hand (its own scripts still work), and no vector ran.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSIGNMENT = "06-pre-post-ln"
STUDENT = "mallory"
BOOTSTRAP_CSS = str(Path(nbformat.__file__).parents[1] / "nbgrader" / "server_extensions" / "formgrader" / "static"
                    / "node_modules" / "bootstrap" / "dist" / "css")


def probe(name: str, port: int) -> str:
    """JavaScript (single quotes only) that leaves three traces if it runs."""
    return (f"window.__pwned=(window.__pwned||[]).concat(['{name}']);document.title='pwned {name}';"
            f"fetch('http://127.0.0.1:{port}/hit/{name}').catch(function(e){{}})")


def markdown_vectors(port: int) -> str:
    p = lambda name: probe(name, port)  # noqa: E731
    srcdoc = f"&lt;script&gt;parent.{p('md-iframe-srcdoc')}&lt;/script&gt;".replace("window.", "parent.window.")
    return "\n\n".join([
        "**My answer**: the final LayerNorm divides by the stream's size.",
        f'<img src=x onerror="{p("md-img-onerror")}">',
        f"<script>{p('md-script')}</script>",
        f'<svg onload="{p("md-svg-onload")}"><script>{p("md-svg-script")}</script></svg>',
        f'<iframe srcdoc="{srcdoc}"></iframe>',
        f'<details open ontoggle="{p("md-details-ontoggle")}"><summary>s</summary>d</details>',
        f'<a href="javascript:{p("md-html-link")}">click-me</a>',
        f"[click-me](javascript:{p('md-markdown-link')})",
        f'<img src="http://127.0.0.1:{port}/hit/md-foreign-image">',
        "![diagram](attachment:diagram.svg)",
    ])


def svg_with_script(name: str, port: int) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" onload="{probe(name + "-onload", port)}">'
            f"<script>{probe(name + '-script', port)}</script><circle r='5'/></svg>")


def output_vectors(port: int) -> list[tuple[dict, dict]]:
    """(data, metadata) of each display a student's cell can make."""
    p = lambda name: probe(name, port)  # noqa: E731
    return [
        ({"text/html": f"<script>{p('out-html-script')}</script><img src=x onerror=\"{p('out-html-img')}\">",
          "text/plain": "<HTML>"}, {}),
        ({"text/html": f"<script>{p('out-html-isolated')}</script>"}, {"text/html": {"isolated": True}}),
        ({"text/html": f'<a href="javascript:{p("out-html-link")}">click-me</a>'}, {}),
        ({"text/markdown": f'<img src=x onerror="{p("out-markdown")}">'}, {}),
        ({"application/javascript": p("out-javascript")}, {}),
        ({"image/svg+xml": svg_with_script("out-svg", port), "text/plain": "<SVG>"}, {}),
        ({"application/vnd.jupyter.widget-view+json": {"model_id": "m1", "version_major": 2, "version_minor": 0},
          "text/plain": "<Widget>"}, {}),
        ({"text/latex": "$x$", "text/plain": "x"}, {}),
        ({"image/png": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(), "text/plain": "<Figure>"},
         {"image/png": {"width": 10, "height": "1 onerror=x"}}),
    ]


WIDGET_STATE = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": {}}}


def attachments(port: int) -> dict:
    svg = base64.b64encode(svg_with_script("md-attachment", port).encode()).decode()
    return {"diagram.svg": {"image/svg+xml": svg}}


def vector_notebook(port: int) -> nbformat.NotebookNode:
    """A notebook holding every vector, its outputs already there (as a kernel would have made them)."""
    code = new_code_cell("print('hello')", outputs=[new_output("stream", name="stdout", text="hello\n"),
                                                    new_output("error", ename="ValueError", evalue="<b>no</b>",
                                                               traceback=["ValueError: <b>no</b>"])])
    code.outputs += [new_output("display_data", data=data, metadata=meta) for data, meta in output_vectors(port)]
    code.outputs.append(new_output("execute_result", data={"text/html": f"<script>{probe('out-result', port)}"
                                                                        "</script>", "text/plain": "1"},
                                   execution_count=1))
    answer = new_markdown_cell(markdown_vectors(port), attachments=attachments(port))
    answer.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "points": 6,
                                   "grade_id": "answer_gradient_norms", "schema_version": 3, "score": 0}
    nb = new_notebook(cells=[new_markdown_cell("# Exercise"), code, answer],
                      metadata={"widgets": WIDGET_STATE, "kernelspec": {"name": "python3", "display_name": "P",
                                                                        "language": "python"}})
    return nb


def course_config():
    """The course's nbgrader_config.py, loaded as nbgrader loads it."""
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()


# --- fast --------------------------------------------------------------------------------------------------------

def test_safe_outputs_keeps_only_inert_types():
    from nbgrader_sandbox.integrity import METADATA_KEY
    from nbgrader_sandbox.preprocessors import SafeOutputs

    nb, _ = SafeOutputs().preprocess(vector_notebook(port=1), {})
    outputs = nb.cells[1].outputs
    kinds = [(o.output_type, sorted(o.get("data", {}))) for o in outputs]
    assert kinds == [("stream", []), ("error", []), ("display_data", ["text/plain"]),
                     ("display_data", ["text/plain"]), ("display_data", ["text/plain"]),
                     ("display_data", ["text/plain"]), ("display_data", ["image/png", "text/plain"]),
                     ("execute_result", ["text/plain"])], kinds
    assert outputs[6].metadata == {"image/png": {"width": 10}}  # a size that is not a number is dropped
    assert outputs[1].evalue == "<b>no</b>"  # text stays text: the templates escape it
    assert "attachments" not in nb.cells[2] and "widgets" not in nb.metadata
    dropped = {(d["cell"], d["kind"]) for d in nb.metadata[METADATA_KEY]["unsafe_outputs"]}
    assert dropped == {(1, "text/html"), (1, "text/markdown"), (1, "application/javascript"), (1, "image/svg+xml"),
                       (1, "application/vnd.jupyter.widget-view+json"), (1, "text/latex"), (2, "attachment"),
                       (None, "metadata.widgets")}, dropped


def test_safe_outputs_keeps_a_clean_notebook_as_it_is():
    from nbgrader_sandbox.preprocessors import SafeOutputs

    nb = new_notebook(cells=[new_code_cell("1", outputs=[new_output("execute_result", data={"text/plain": "1"},
                                                                    execution_count=1)]),
                             new_markdown_cell("text")])
    before = json.loads(json.dumps(nb))
    nb, _ = SafeOutputs().preprocess(nb, {})
    assert json.loads(json.dumps(nb)) == before


def _render(template: str, exporter_class=None, config=None):
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    config = course_config() if config is None else config
    config.HTMLExporter.template_name = template
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.HTMLExporter.extra_template_paths = [BOOTSTRAP_CSS]  # as GenerateFeedback sets it
    exporter = (exporter_class or HTMLExporter)(config=config)
    resources = {"base_url": "", "submission_id": "s1", "notebook_id": "n", "assignment_id": "a", "index": 0,
                 "total": 1, "student": STUDENT,
                 "nbgrader": {"notebook": "n", "score": 0, "max_score": 6, "late_penalty": 0}}
    html, _ = exporter.from_notebook_node(vector_notebook(port=1), resources=resources)
    return html


@pytest.mark.parametrize("template", ["formgrade", "feedback"])
def test_the_course_configuration_renders_no_student_markup(template):
    """What the formgrader builds (an HTMLExporter from the course's configuration) emits no student markup."""
    html = _render(template)
    tags, attributes, scripts = _markup(html)
    assert not {"iframe", "svg", "object", "embed", "details", "style"} & tags, tags
    assert "pwned" not in scripts  # every vector's payload holds it
    live = [(k, v) for k, v in attributes if k.startswith("on") and "toggle_name" not in v  # the template's own
            or v.strip().lower().startswith("javascript:") or k in ("src", "srcdoc", "data") and "/hit/" in v]
    assert not live, f"the {template} page holds live student markup: {live}"
    assert "&lt;script&gt;" in html  # what the student wrote is shown, as text


def _markup(html: str) -> tuple[set[str], list[tuple[str, str]], str]:
    """The page's tag names (in its body: the head's <style> is the template's), its attributes, and its scripts'
    text; its text (which quotes what the student wrote, escaped) is left out."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, features="html.parser")
    attributes = [(k.lower(), " ".join(v) if isinstance(v, list) else str(v))
                  for e in soup.find_all(True) for k, v in e.attrs.items()]
    return ({e.name for e in (soup.body or soup).find_all(True)}, attributes,
            " ".join(s.string or "" for s in soup.find_all("script")))


def test_safe_exporter_refuses_to_render_unsanitized():
    from traitlets.config import Config

    from nbgrader_sandbox.render import SafeHTMLExporter

    config = Config()
    config.HTMLExporter.sanitize_html = False
    with pytest.raises(ValueError, match="sanitize_html must be True"):
        _render("feedback", SafeHTMLExporter, config)


# --- slow, in Chromium ------------------------------------------------------------------------------------------

class Probe:
    """A local HTTP server that records every /hit/<name> request."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def hits():
    p = Probe()
    yield p
    p.close()


def traces(page, probe_server: Probe) -> dict:
    """What ran in the page: the global, the title, and the probe's hits (after clicking every click-me link)."""
    for link in page.locator("a", has_text="click-me").all():
        try:
            link.click(timeout=2000, no_wait_after=True)
        except Exception:  # noqa: BLE001 - a link with nothing to click is fine
            pass
    page.wait_for_timeout(1500)
    return {"global": page.evaluate("window.__pwned || []"), "title": page.title(),
            "hits": list(probe_server.hits)}


def open_page(browser, url: str, violations: list | None = None):
    page = browser.new_page()
    if violations is not None:
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(url)
    page.wait_for_load_state("load")
    return page


@pytest.mark.slow
def test_the_probe_sees_the_vectors_run_in_a_stock_page(browser, hits, tmp_path):
    """The control: nbgrader's stock feedback rendering runs the vectors, so the probe can fail."""
    from nbconvert.exporters import HTMLExporter
    from traitlets.config import Config

    nbformat.write(vector_notebook(hits.port), tmp_path / "n.ipynb")
    config = Config()
    config.HTMLExporter.exclude_input = False
    html = _stock_feedback(tmp_path / "n.ipynb", config, HTMLExporter)
    (tmp_path / "stock.html").write_text(html)
    hits.hits.clear()
    page = open_page(browser, (tmp_path / "stock.html").as_uri())
    seen = traces(page, hits)
    page.close()
    # (application/javascript needs the jQuery of the formgrader's page: the feedback has none)
    assert {"md-img-onerror", "md-script", "md-svg-onload", "md-details-ontoggle", "md-html-link",
            "out-html-script", "out-html-img", "out-markdown", "out-result"} <= set(seen["global"]), seen
    assert seen["hits"], seen


def _stock_feedback(path: Path, config, exporter_class) -> str:
    from nbgrader.server_extensions.formgrader import handlers

    config.HTMLExporter.template_name = "feedback"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.HTMLExporter.extra_template_paths = [BOOTSTRAP_CSS]
    exporter = exporter_class(config=config)
    html, _ = exporter.from_filename(
        str(path), resources={"nbgrader": {"notebook": "n", "score": 0, "max_score": 6, "late_penalty": 0}})
    return html


@pytest.mark.slow
def test_the_safe_exporter_runs_none_of_them(browser, hits, tmp_path):
    """A notebook graded before SafeOutputs existed, outputs and all: the exporter alone keeps it inert."""
    from nbgrader_sandbox.render import SafeHTMLExporter

    nbformat.write(vector_notebook(hits.port), tmp_path / "n.ipynb")
    html = _stock_feedback(tmp_path / "n.ipynb", course_config(), SafeHTMLExporter)
    (tmp_path / "safe.html").write_text(html)
    hits.hits.clear()
    violations = []
    page = open_page(browser, (tmp_path / "safe.html").as_uri(), violations)
    seen = traces(page, hits)
    text = page.inner_text("body")
    page.close()
    assert seen == {"global": [], "title": "n", "hits": []}, seen
    assert "<script>" in text  # the instructor sees what the student wrote
    assert 'http-equiv="Content-Security-Policy"' in html


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nbgrader(*args: str, cwd: Path) -> None:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run([str(BIN / "nbgrader"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"


def _submission(release: Path, port: int) -> nbformat.NotebookNode:
    """The release of 06, its written answer holding the markdown vectors, and a cell that displays the others."""
    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "answer_gradient_norms":
            cell.source = markdown_vectors(port)
            cell.attachments = attachments(port)
    displays = "\n".join(f"display({data!r}, metadata={meta!r}, raw=True)"
                         for data, meta in output_vectors(port))
    nb.cells.append(new_code_cell("from IPython.display import display\n" + displays))
    nb.metadata["widgets"] = WIDGET_STATE
    return nb


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory, hits):
    """06-pre-post-ln generated, one submission carrying every vector autograded, its feedback generated."""
    course = tmp_path_factory.mktemp("inert") / "course"
    course.mkdir()
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, course / "solutions" / ASSIGNMENT)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    _nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course)
    submitted = course / "submitted" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    submitted.parent.mkdir(parents=True)
    nbformat.write(_submission(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", hits.port), submitted)
    _nbgrader("autograde", ASSIGNMENT, cwd=course)
    _nbgrader("generate_feedback", ASSIGNMENT, cwd=course)
    return course


@pytest.mark.slow
def test_autograde_keeps_only_inert_outputs(graded_course):
    from nbgrader_sandbox.integrity import METADATA_KEY

    nb = nbformat.read(graded_course / "autograded" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    mimes = {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}
    assert mimes <= {"text/plain", "image/png", "image/jpeg", "image/gif"}, mimes
    assert "widgets" not in nb.metadata
    dropped = {d["kind"] for d in nb.metadata[METADATA_KEY]["unsafe_outputs"]}
    assert {"text/html", "application/javascript", "image/svg+xml", "attachment", "metadata.widgets"} <= dropped
    # and the integrity report tells the instructor, in its own words
    from nbgrader_sandbox.integrity import scan_graded

    content = [f for f in scan_graded(str(graded_course), ASSIGNMENT, STUDENT, [ASSIGNMENT]) if f.kind == "content"]
    assert len(content) == 1 and "text/html" in content[0].detail and "removed" in content[0].detail, content


@pytest.mark.slow
def test_the_feedback_runs_nothing_the_student_wrote(browser, hits, graded_course):
    feedback = graded_course / "feedback" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.html"
    html = feedback.read_text()
    assert 'http-equiv="Content-Security-Policy"' in html
    hits.hits.clear()
    page = open_page(browser, feedback.as_uri())
    seen = traces(page, hits)
    text = page.inner_text("body")
    page.close()
    assert seen == {"global": [], "title": ASSIGNMENT, "hits": []}, seen
    assert "My answer" in text and "<script>" in text


@pytest.fixture(scope="module")
def formgrader(graded_course):
    """The instructor's Jupyter server as the hub starts it: in the folder above the course, with the hub's
    instructor and common configuration folders on JUPYTER_CONFIG_PATH (hub/jupyterhub_config.py)."""
    port = _free_port()
    home = graded_course.parent
    config_dir = home / "jupyter-config"
    config_dir.mkdir()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", JUPYTER_CONFIG_DIR=str(config_dir),
               JUPYTER_CONFIG_PATH=os.pathsep.join([str(ROOT / "hub" / "jupyter" / "instructor"),
                                                    str(ROOT / "hub" / "jupyter" / "common")]),
               LNKIT_COURSE_ROOT=str(graded_course), NBGRADER_EXCHANGE=str(home / "exchange"),
               JUPYTER_PLATFORM_DIRS="1")
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--allow-root",
         "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={home}"],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("the Jupyter server did not start:\n" + (home / "server.log").read_text())
            time.sleep(0.5)
    yield base
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.mark.slow
def test_the_manual_grading_page_runs_nothing_the_student_wrote(browser, hits, graded_course, formgrader):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded_course / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, STUDENT).id
    hits.hits.clear()
    violations = []
    page = open_page(browser, f"{formgrader}/formgrader", violations)
    page.goto(f"{formgrader}/formgrader/submissions/{submission}/")
    page.wait_for_load_state("networkidle")
    assert page.locator("input.score#answer_gradient_norms").count() == 1, page.content()[:2000]
    html = page.content()
    seen = traces(page, hits)
    # the page's own scripts still run under its policy: a score given by hand is saved
    score = page.locator("input.score#answer_gradient_norms")
    score.fill("4")
    score.press("Tab")
    page.wait_for_timeout(1500)
    text = page.inner_text("body")
    page.close()
    assert 'http-equiv="Content-Security-Policy"' in html
    assert seen == {"global": [], "title": ASSIGNMENT, "hits": []}, seen
    assert "My answer" in text and "<script>" in text
    with Gradebook(f"sqlite:///{graded_course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("answer_gradient_norms", ASSIGNMENT, ASSIGNMENT, STUDENT)
        assert grade.manual_score == 4, "the formgrader's own scripts no longer work under the policy"
    assert not violations, violations  # nothing of the page's own is refused by its policy


@pytest.mark.slow
@pytest.mark.parametrize("policy", [True, False])
def test_the_policy_alone_stops_every_vector(browser, hits, tmp_path, monkeypatch, policy):
    """Defence in depth: with the cleaning and SafeOutputs switched off, the page's Content-Security-Policy alone
    still lets no vector run (and without it they do: the policy is what stops them)."""
    from nbgrader_sandbox import preprocessors, render

    monkeypatch.setattr(render, "clean_html", lambda html: str(html))
    monkeypatch.setattr(preprocessors.SafeOutputs, "preprocess", lambda self, nb, resources: (nb, resources))
    nbformat.write(vector_notebook(hits.port), tmp_path / "n.ipynb")
    config = course_config()
    config.SafeHTMLExporter.content_security_policy = policy
    html = _stock_feedback(tmp_path / "n.ipynb", config, render.SafeHTMLExporter)
    (tmp_path / "page.html").write_text(html)
    hits.hits.clear()
    page = open_page(browser, (tmp_path / "page.html").as_uri())
    seen = traces(page, hits)
    page.close()
    if policy:
        assert seen == {"global": [], "title": "n", "hits": []}, seen
    else:
        assert {"md-img-onerror", "md-script", "out-html-script"} <= set(seen["global"]), seen


def test_safe_outputs_cuts_what_is_too_large_to_show():
    """Sizes are the student's too: a 24 MB exception class name, one endless line, a huge image."""
    from nbgrader_sandbox.preprocessors import SafeOutputs

    huge = "A" * 24_000_000
    nb = new_notebook(cells=[new_code_cell("x", outputs=[
        new_output("error", ename=huge, evalue=huge, traceback=[huge] * 1000),
        new_output("stream", name="stdout", text=huge),
        new_output("display_data", data={"text/plain": huge, "image/png": "iVBO" * 3_000_000})])])
    nb, _ = SafeOutputs().preprocess(nb, {})
    assert len(json.dumps(nb)) < 2_000_000
    error, stream, shown = nb.cells[0].outputs
    assert error.ename.endswith("(cut)") and len(error.ename) < 300 and len(error.traceback) == 200
    assert stream.text.endswith("(cut)") and sorted(shown.data) == ["text/plain"]
