"""HTML details of the course's book that Jupyter Book 1.x does not handle by itself.

1. MathJax is served from the built book, not from a CDN, so math is typeset when the book is opened from disk,
   behind a firewall, or in the offline browser tests. MathJax 3 comes from PyPI: the `django-static-mathjax` wheel
   is plain MathJax 3.2.2 static files with no dependencies. Its browser bundle (`es5/`) is copied into
   `_static/mathjax/` and Sphinx's `mathjax_path` points there.
2. Every script is included once per page. sphinx-thebe 0.3 adds its configuration script each time Sphinx reads
   the sources, and a page that declares `const THEBE_JS_URL` twice stops with a JavaScript error.
3. A page that reads data files is read again when they change: chapter 8 shows benchmarks/results/*.json, which
   Sphinx cannot know about by itself (its front matter also turns the execution cache off for it).
4. No Colab button on MyST Markdown pages (the chapters): Colab opens .ipynb files only, so the button would lead
   to an error. The exercises are .ipynb files and keep it.
5. No library progress bars on the pages. The chapters' kernels inherit this process's environment, and
   HF_HUB_DISABLE_PROGRESS_BARS turns off the bars of huggingface_hub and transformers (weights loading, downloads):
   in a page they would be a widget that cannot render or a stderr stream of carriage returns. A chapter's own tqdm
   bar (chapter 6) is not theirs and stays. The warning tqdm.auto gives at import in a kernel without ipywidgets
   ("IProgress not found") is not a bar: the `book` extra installs ipywidgets for it (pyproject.toml).
"""

import os
import shutil
from pathlib import Path


def _mathjax_es5() -> Path:
    import mathjax  # installed by the django-static-mathjax distribution

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _use_local_mathjax(app, config):
    config.mathjax_path = "mathjax/tex-chtml.js"  # relative to _static


def _copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        shutil.copytree(_mathjax_es5(), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def _each_script_once(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the same file or inline body, whatever its priority; an inline script's filename is None or ""
        key = (getattr(script, "filename", None) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


# docname -> data files (glob patterns, relative to the repository root) that its code cells read
DATA_DEPENDENCIES = {"book/ch08_speed": ["benchmarks/results/*.json"]}


def _note_data_dependencies(app, docname, source):
    for pattern in DATA_DEPENDENCIES.get(docname, []):
        for path in sorted(Path(app.srcdir).glob(pattern)):
            app.env.note_dependency(str(path))


def _colab_for_ipynb_only(app, pagename, templatename, context, doctree):
    if pagename not in app.env.all_docs or Path(app.env.doc2path(pagename)).suffix == ".ipynb":
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group["buttons"] if b.get("text") != "Colab"]


def setup(app):
    # set before any chapter's kernel starts; a value the builder's environment gives is kept
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    app.connect("source-read", _note_data_dependencies)
    app.connect("html-page-context", _each_script_once, priority=900)  # after every extension has added its own
    app.connect("html-page-context", _colab_for_ipynb_only, priority=900)  # after sphinx-book-theme's launch buttons
    return {"parallel_read_safe": True, "parallel_write_safe": True}
