"""Chapter 9 outside the book build: it never downloads, and it finds GPT-2 in a local Hugging Face cache.

The book is built on machines whose cache may or may not hold GPT-2's weights, so a build on one machine only ever
runs one branch of the chapter's `cached_gpt2()`. These tests run both, each in a fresh interpreter with its own
HF_HOME: an empty cache, and a cache holding a stand-in "gpt2" (random weights of a tiny GPT-2 and a byte-level BPE
trained here). Nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = ROOT / "book" / "ch09_trained_model.md"


def code_cells(path: Path = CHAPTER) -> list[str]:
    """The chapter's code cells, in order, without their option lines (`:tags: ...`)."""
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", path.read_text(), flags=re.M | re.S)
    return ["\n".join(line for line in cell.splitlines() if not line.startswith(":")) for cell in cells]


def cell_defining(name: str) -> str:
    matches = [cell for cell in code_cells() if f"def {name}(" in cell]
    assert len(matches) == 1, f"expected one code cell defining {name} in {CHAPTER.name}, found {len(matches)}"
    return matches[0]


def test_the_chapter_goes_offline_before_importing_hugging_face():
    """HF_HUB_OFFLINE is read when huggingface_hub is imported: set later, it would not stop a download."""
    source = "\n".join(code_cells())
    offline = source.find('os.environ["HF_HUB_OFFLINE"] = "1"')
    assert offline >= 0, "the chapter must set HF_HUB_OFFLINE=1"
    imports = [m.start() for m in re.finditer(r"^\s*(from|import)\s+(transformers|huggingface_hub)\b", source, re.M)]
    assert imports, "expected the chapter to import transformers"
    assert offline < min(imports), "HF_HUB_OFFLINE must be set before transformers or huggingface_hub is imported"


RUN_CELL = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from IPython.display import Markdown
from transformers import GPT2LMHeadModel
glue = lambda *args, **kwargs: None
exec(compile(sys.stdin.read(), "ch09 cached_gpt2 cell", "exec"))
if real:
    gpt2, tokenizer = real
    ids = tokenizer("def f(x):\\n    return x", return_tensors="pt").input_ids
    print("layers", gpt2.config.n_layer, "tokens", ids.shape[1], "logits", tuple(gpt2(ids).logits.shape))
"""


def run_cached_gpt2_cell(hf_home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env["HF_HOME"] = str(hf_home)
    result = subprocess.run(
        [sys.executable, "-c", RUN_CELL], input=cell_defining("cached_gpt2"), env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_no_gpt2_in_an_empty_cache(tmp_path):
    out = run_cached_gpt2_cell(tmp_path)
    assert "GPT-2 small in the local cache: no" in out, out


def make_stand_in_gpt2(hf_home: Path) -> None:
    """A Hugging Face cache entry named gpt2, laid out as a download would leave it, with tiny random weights."""
    tokenizers = pytest.importorskip("tokenizers")
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    revision = "0" * 40
    repo = hf_home / "hub" / "models--gpt2"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)

    text = Path(textwrap.__file__).read_text()
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=400, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(hf_home))
    tokenizer = GPT2TokenizerFast(vocab=str(hf_home / "vocab.json"), merges=str(hf_home / "merges.txt"))
    tokenizer.save_pretrained(snapshot)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(snapshot)


def test_gpt2_found_in_a_local_cache(tmp_path):
    make_stand_in_gpt2(tmp_path)
    out = run_cached_gpt2_cell(tmp_path)
    assert "GPT-2 small in the local cache: yes" in out, out
    match = re.search(r"layers (\d+) tokens (\d+) logits \((\d+), (\d+), (\d+)\)", out)
    assert match, out
    layers, tokens, batch, positions, vocab = map(int, match.groups())
    assert (layers, batch, positions) == (2, 1, tokens) and tokens > 0 and vocab > 256


def test_a_cache_without_the_weights_is_no_gpt2(tmp_path):
    """A cache holding gpt2's config but not its weights (an interrupted download) is treated as no GPT-2."""
    make_stand_in_gpt2(tmp_path)
    next((tmp_path / "hub" / "models--gpt2" / "snapshots").glob("*/model.safetensors")).unlink()
    out = run_cached_gpt2_cell(tmp_path)
    assert "GPT-2 small in the local cache: no" in out, out


@pytest.mark.slow
def test_the_whole_chapter_runs_its_gpt2_branch_on_a_cached_stand_in(tmp_path):
    """A build on a machine without GPT-2's weights (this one, and CI) runs only the small-model branch of every
    comparison; the published book runs the other. Here the whole chapter runs as the book's build runs it, with a
    stand-in GPT-2 in the cache, so a broken GPT-2 branch fails here and not in the published build."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    make_stand_in_gpt2(tmp_path)
    notebook = jupytext.read(CHAPTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env["HF_HOME"] = str(tmp_path)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(CHAPTER.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    glued = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:  # myst-nb's glue keeps the value under "application/papermill.record/<mime type>"
                data = {k.rsplit("/", 2)[-2] + "/" + k.rsplit("/", 1)[-1]: v for k, v in output.get("data", {}).items()}
                glued[name] = data.get("text/markdown", data.get("text/plain", ""))
    assert "were found in this machine's Hugging Face cache" in glued["ch9_gpt2_status"]
    assert glued["ch9_real_gains"].startswith("In GPT-2 small the gains range from")
    assert "In GPT-2 small, on" in glued["ch9_real_growth"]
    outliers = glued["ch9_real_outliers"]
    assert outliers.startswith("The same measurement on GPT-2 small") and "Sun et al.'s criterion" in outliers
