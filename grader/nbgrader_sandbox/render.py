"""Student content rendered inert: the HTML of the formgrader's Manual Grading page and of the generated feedback.

nbgrader renders a notebook with nbconvert's ``HTMLExporter`` in two places: the formgrader's submission page (in the
instructor's Jupyter origin, where any script could call the server's API: terminals, kernels, files) and
``generate_feedback``. Stock, both pass a student's markdown and outputs through verbatim. nbconvert's own
``sanitize_html`` is not enough: nbgrader's ``formgrade`` and ``feedback`` templates override the markdown cell block
without its ``clean_html``, and that filter's allow-list escapes ``<p>`` and headings. So:

- :func:`markdown2html` and :func:`clean_html` replace nbconvert's filters of those names: markdown is rendered, then
  cleaned with bleach against an allow-list (text, lists, tables, code, links to http/https/mailto/#, images only as
  PNG/JPEG/GIF data); anything else is shown as escaped text, so the instructor sees what the student wrote.
- :class:`SafeHTMLExporter` is ``HTMLExporter`` with those filters, ``sanitize_html`` on (no ``application/javascript``
  or widget output is emitted; ``text/html`` outputs are cleaned), the outputs reduced to safe types as autograde keeps
  them (:class:`.preprocessors.SafeOutputs`, for notebooks graded before it existed), and a Content-Security-Policy in
  the page: no inline script or handler other than the template's own (hashes taken from the same template rendered
  without cells), scripts only from the page's origin and MathJax, no plugin, frame or form.
- Loaded as a Jupyter server extension (``nbgrader_sandbox.render``), it makes the formgrader build that exporter.

``nbgrader_config.py`` sets the filters and ``sanitize_html`` for every ``HTMLExporter`` nbgrader builds (so the
formgrader is sanitized even without the extension) and ``c.GenerateFeedback.exporter_class`` to SafeHTMLExporter.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re

import bleach
from bleach.css_sanitizer import CSSSanitizer
from bs4 import BeautifulSoup
from jinja2 import pass_context
from nbconvert.exporters import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbformat.notebooknode import NotebookNode
from traitlets import Bool

TAGS = ["a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4",
        "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table",
        "tbody", "td", "th", "thead", "tr", "ul"]
SAFE_IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*\Z")
SAFE_LINK = re.compile(r"(https?:|mailto:|#)", re.IGNORECASE)
# where the templates' MathJax comes from (nbconvert's default mathjax_url); the Safe extension it loads already
# refuses javascript: links and the like inside TeX
MATHJAX_SOURCE = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"


def _attribute_allowed(tag: str, name: str, value: str) -> bool:
    # no id, class or style anywhere (no clobbering of the page's own elements, no restyling of its buttons), no
    # event handler, no link or image that leaves the page or reaches the instructor's server
    if tag == "a":
        return name == "title" or (name == "href" and bool(SAFE_LINK.match(value.strip())))
    if tag == "img":
        return name in ("alt", "title", "width", "height") or (name == "src" and bool(SAFE_IMAGE_DATA.match(value)))
    if tag in ("td", "th"):
        return name in ("align", "colspan", "rowspan", "style")  # style: text-align only (markdown tables)
    if tag == "ol":
        return name == "start"
    return tag == "abbr" and name == "title"


_CSS = CSSSanitizer(allowed_css_properties=["text-align"])


def clean_html(html) -> str:
    """HTML reduced to the allow-list above; every other tag is escaped (shown as text), comments are dropped."""
    html = html.decode() if isinstance(html, bytes) else str(html)
    return bleach.clean(html, tags=TAGS, attributes=_attribute_allowed, protocols=["http", "https", "mailto", "data"],
                        strip=False, strip_comments=True, css_sanitizer=_CSS)


class _Renderer(IPythonRenderer):
    """nbconvert's renderer, which never reads a file and never fails on a missing attachment (nbconvert's raises:
    one reference to a missing attachment would fail the student's feedback and Manual Grading page)."""

    def _embed_image_or_attachment(self, src: str) -> str:
        if not src.startswith("attachment:"):
            return src  # left to clean_html, which keeps only images given as data
        bundle = self.attachments.get(src[len("attachment:"):])
        return super()._embed_image_or_attachment(src) if isinstance(bundle, dict) and bundle else ""


@pass_context
def markdown2html(context, source: str) -> str:
    """nbconvert's markdown rendering (attachments as data, math left to MathJax), then :func:`clean_html`."""
    cell = context.get("cell", {}) or {}
    renderer = _Renderer(escape=False, allow_harmful_protocols=False, exclude_anchor_links=True,
                               attachments=cell.get("attachments", {}))
    return clean_html(MarkdownWithMath(renderer=renderer).render(source))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _page_scripts(html: str) -> tuple[list[str], list[str]]:
    """(inline scripts, inline event handlers) of a rendered page."""
    soup = BeautifulSoup(html, features="html.parser")
    scripts = [s.string or "" for s in soup.find_all("script") if not s.get("src")]
    handlers = [value for element in soup.find_all(True) for name, value in element.attrs.items()
                if name.lower().startswith("on") and isinstance(value, str)]
    return scripts, handlers


class SafeHTMLExporter(HTMLExporter):
    """nbconvert's HTMLExporter for pages that show student content: sanitized, safe outputs only, and a CSP."""

    sanitize_html = Bool(True, help="Always on here: a False would emit the student's scripts.").tag(config=True)
    content_security_policy = Bool(
        True, help="Put a Content-Security-Policy <meta> in the page (only the template's own scripts run)."
    ).tag(config=True)

    def default_filters(self):
        yield from super().default_filters()
        yield ("markdown2html", markdown2html)
        yield ("clean_html", clean_html)

    def from_notebook_node(self, nb, resources=None, **kw):
        if not self.sanitize_html:
            raise ValueError("SafeHTMLExporter.sanitize_html must be True (it renders student content); "
                             "use nbconvert's HTMLExporter for trusted notebooks")
        from .preprocessors import SafeOutputs  # nbgrader's preprocessors; imported only when a page is rendered

        nb = copy.deepcopy(nb)
        nb, _ = SafeOutputs(parent=self).preprocess(nb, {})
        html, resources = super().from_notebook_node(nb, copy.copy(resources), **kw)
        if not self.content_security_policy:
            return html, resources
        # the template's own inline scripts and handlers: those of the same page rendered without any cell
        skeleton = NotebookNode(nbformat=nb.nbformat, nbformat_minor=nb.nbformat_minor, metadata=nb.metadata,
                                cells=[])
        template_html, _ = super().from_notebook_node(skeleton, copy.copy(resources), **kw)
        return self._with_policy(html, *_page_scripts(template_html)), resources

    @staticmethod
    def policy(scripts: list[str], handlers: list[str]) -> str:
        hashes = sorted({_sha256(s) for s in scripts} | {_sha256(h) for h in handlers})
        unsafe_hashes = ["'unsafe-hashes'"] if handlers else []
        # 'unsafe-eval': MathJax 2 runs its configuration block with it; it lets no new script in
        return "; ".join([
            "default-src 'self'",
            " ".join(["script-src 'self'", MATHJAX_SOURCE, "'unsafe-eval'", *unsafe_hashes, *hashes]),
            f"style-src 'self' 'unsafe-inline' {MATHJAX_SOURCE}",
            f"font-src 'self' data: {MATHJAX_SOURCE}",
            "img-src 'self' data:",
            "object-src 'none'", "frame-src 'none'", "worker-src 'none'", "base-uri 'none'", "form-action 'none'",
        ])

    def _with_policy(self, html: str, scripts: list[str], handlers: list[str]) -> str:
        soup = BeautifulSoup(html, features="html.parser")
        meta = soup.new_tag("meta", attrs={"http-equiv": "Content-Security-Policy",
                                           "content": self.policy(scripts, handlers)})
        head = soup.head
        if head is None:  # a template without <head>: the policy must still come before any content
            head = soup.new_tag("head")
            (soup.html or soup).insert(0, head)
        head.insert(0, meta)  # first: a <meta> policy governs only what follows it
        return str(soup)


def _jupyter_server_extension_points():
    return [{"module": "nbgrader_sandbox.render"}]


def _load_jupyter_server_extension(serverapp):
    """Make the formgrader render submissions with SafeHTMLExporter, whichever extension loads first."""
    from nbgrader.server_extensions.formgrader import formgrader

    formgrader.HTMLExporter = SafeHTMLExporter  # the name init_tornado_settings builds the exporter from
    settings = serverapp.web_app.settings
    exporter = settings.get("nbgrader_exporter")
    if exporter is not None and not isinstance(exporter, SafeHTMLExporter):  # the formgrader loaded before us
        settings["nbgrader_exporter"] = SafeHTMLExporter(config=exporter.config)
    serverapp.log.info("nbgrader_sandbox.render: the formgrader renders submissions sanitized, with a CSP")
