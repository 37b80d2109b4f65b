"""Students' answers for the graded exercises: one correct answer per function, and a corpus of wrong ones.

Shared by tests/unit/lnkit/test_checks.py (each check must pass the correct answer and fail every wrong one with its
specific message) and tests/system/test_grading.py (the same answers, put into real notebooks with `write_submission`
and graded with nbgrader).

Each answer is source code, as a student would type it into a notebook's solution cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The start of a script that tries writes (tests of the sandbox's Landlock, run in a kernel or a plain process):
# attempt(name, act) records "done" or the OSError's class name in `seen`; the two writes that need more than a line
# are here too.
WRITE_ATTEMPTS = r'''
import os, subprocess, sys
seen = {}
def attempt(name, act):
    try:
        act()
        seen[name] = "done"
    except OSError as e:
        seen[name] = type(e).__name__
def unlinked_but_open(folder, size):  # host disk no folder's size shows: a file opened, unlinked, written, held
    f = open(os.path.join(folder, "held"), "wb")
    os.unlink(os.path.join(folder, "held"))
    f.write(b"x" * size)
def child_creates(path):  # a process the script starts, making a file
    out = subprocess.run([sys.executable, "-c", f"open({path!r}, 'wb')"], capture_output=True, text=True)
    if out.returncode:
        raise PermissionError() if "PermissionError" in out.stderr else OSError(out.stderr)
'''

# The course module the grader reads for lnkit (nbgrader_config.py: c.GradingSandbox.course), for tests that run the
# checker or a student server directly.
LNKIT_COURSE = "lnkit.checks.course"

def write_submission(release: Path, answers: dict[str, str], to: Path) -> None:
    """Write the release notebook ``release`` to ``to`` with ``answers`` (grade_id -> source) in its cells, as a
    student fills it in. ``to`` may be ``release`` itself (a fetched notebook, filled in place)."""
    import nbformat  # only the grading tests and the autograde benchmark need it

    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    to.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, to)

# The correct answers, one solution cell per function. Each cell is self-contained (its own imports).
CORRECT = {
    "layer_norm_stats": '''
import numpy as np

def layer_norm_stats(x):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    mean = work.mean(axis=-1)
    var = ((work - mean[..., None]) ** 2).mean(axis=-1)
    return mean.astype(x.dtype), var.astype(x.dtype)
''',
    "layer_norm": '''
import numpy as np

def layer_norm(x, gamma, beta, eps=1e-5):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    mean = work.mean(axis=-1, keepdims=True)
    var = ((work - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (work - mean) / np.sqrt(var + eps) * gamma + beta
    return y.astype(x.dtype)
''',
    "normalize_over": '''
import numpy as np

def normalize_over(x, axes, eps=1e-5):
    x = np.asarray(x)
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    mean = work.mean(axis=axes, keepdims=True)
    var = ((work - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((work - mean) / np.sqrt(var + eps)).astype(x.dtype)
''',
    "count_statistics": '''
import math

def count_statistics(shape, axes):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    axes = {a % len(shape) for a in axes}
    return math.prod(d for i, d in enumerate(shape) if i not in axes)
''',
    "ln_applications": '''
def ln_applications(n_layer):
    return 2 * n_layer + 1
''',
    "ln_statistics": '''
def ln_statistics(n_layer, batch, seq_len, n_head):
    return (2 * n_layer + 1) * batch * seq_len
''',
    "ln_parameters": '''
def ln_parameters(n_layer, d_model):
    return (2 * n_layer + 1) * 2 * d_model
''',
    "fit_gain_bias": '''
import numpy as np

def fit_gain_bias(x, y, eps=1e-5):
    x, y = np.asarray(x), np.asarray(y)
    c = x.shape[-1]
    xw = x.astype(np.float32) if x.dtype == np.float16 else x
    yw = y.astype(np.float32) if y.dtype == np.float16 else y
    mean = xw.mean(axis=-1, keepdims=True)
    xhat = (xw - mean) / np.sqrt(((xw - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat, yw = xhat.reshape(-1, c), yw.reshape(-1, c)
    mx, my = xhat.mean(axis=0), yw.mean(axis=0)
    gamma = ((xhat - mx) * (yw - my)).mean(axis=0) / ((xhat - mx) ** 2).mean(axis=0)
    beta = my - gamma * mx
    return gamma.astype(x.dtype), beta.astype(x.dtype)
''',
    "rms_norm": '''
import numpy as np

def rms_norm(x, gamma, eps=1e-6):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    ms = (work * work).mean(axis=-1, keepdims=True)
    return (work / np.sqrt(ms + eps) * gamma).astype(x.dtype)
''',
    "layer_norm_via_rms": '''
import numpy as np

def layer_norm_via_rms(x, gamma, beta, eps=1e-5):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    centred = work - work.mean(axis=-1, keepdims=True)
    return (rms_norm(centred, gamma, eps) + beta).astype(x.dtype)
''',
    "pre_ln": '''
def pre_ln(x, sublayer, norm):
    return x + sublayer(norm(x))
''',
    "post_ln": '''
def post_ln(x, sublayer, norm):
    return norm(x + sublayer(x))
''',
    "layer_norm_backward": '''
import numpy as np

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    x, dout = np.asarray(x), np.asarray(dout)
    xw = x.astype(np.float32) if x.dtype == np.float16 else x
    dy = dout.astype(xw.dtype)
    mean = xw.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((xw - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (xw - mean) * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx.astype(x.dtype), (dy * xhat).sum(axis=lead).astype(gamma.dtype), dy.sum(axis=lead).astype(gamma.dtype)
''',
    "running_stats": '''
import numpy as np

def running_stats(x):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    mean = np.zeros(x.shape[:-1], dtype=work.dtype)
    m2 = np.zeros(x.shape[:-1], dtype=work.dtype)
    for n in range(1, x.shape[-1] + 1):  # Welford: one pass over the features
        value = work[..., n - 1]
        delta = value - mean
        mean = mean + delta / n
        m2 = m2 + delta * (value - mean)
    return mean.astype(x.dtype), (m2 / x.shape[-1]).astype(x.dtype)
''',
}

# Which check grades which function, and the notebook (assignment) it belongs to.
CHECKS = {
    "layer_norm_stats": ("check_layer_norm_stats", "01-layernorm"),
    "layer_norm": ("check_layer_norm", "01-layernorm"),
    "normalize_over": ("check_normalize_over", "02-which-axis"),
    "count_statistics": ("check_count_statistics", "02-which-axis"),
    "ln_applications": ("check_ln_applications", "03-counting"),
    "ln_statistics": ("check_ln_statistics", "03-counting"),
    "ln_parameters": ("check_ln_parameters", "03-counting"),
    "fit_gain_bias": ("check_fit_gain_bias", "04-gain-bias"),
    "rms_norm": ("check_rms_norm", "05-rmsnorm"),
    "layer_norm_via_rms": ("check_layer_norm_via_rms", "05-rmsnorm"),
    "pre_ln": ("check_pre_ln", "06-pre-post-ln"),
    "post_ln": ("check_post_ln", "06-pre-post-ln"),
    "layer_norm_backward": ("check_layer_norm_backward", "07-backward"),
    "running_stats": ("check_running_stats", "08-speed"),
}


@dataclass(frozen=True)
class Wrong:
    id: str  # a short name for the mistake
    function: str  # the function it replaces
    source: str  # the wrong solution cell
    words: tuple[str, ...]  # what the check's message must say (case-insensitive substrings)
    # Calling the reference in an assignment with a single function earns nothing: every graded cell of it fails.
    earns_nothing: bool = False


def _ln(body: str, extra_args: str = "") -> str:
    return f'''
import numpy as np

def layer_norm(x, gamma, beta, eps=1e-5{extra_args}):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
{body}
'''


def _stats(body: str) -> str:
    return f'''
import numpy as np

def layer_norm_stats(x):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
{body}
'''


WRONG = [
    # --- chapter 1: layer_norm_stats
    Wrong("stats-unbiased", "layer_norm_stats", _stats(
        "    return work.mean(-1).astype(x.dtype), work.var(-1, ddof=1).astype(x.dtype)"), ("unbiased", "C - 1")),
    Wrong("stats-axis0", "layer_norm_stats", _stats(
        "    return work.mean(0).astype(x.dtype), work.var(0).astype(x.dtype)"), ("wrong axis", "axis=-1")),
    Wrong("stats-all", "layer_norm_stats", _stats(
        "    return work.mean().astype(x.dtype), work.var().astype(x.dtype)"), ("whole array",)),
    Wrong("stats-std", "layer_norm_stats", _stats(
        "    return work.mean(-1).astype(x.dtype), work.std(-1).astype(x.dtype)"), ("standard deviation",)),
    Wrong("stats-swapped", "layer_norm_stats", _stats(
        "    return work.var(-1).astype(x.dtype), work.mean(-1).astype(x.dtype)"), ("wrong order",)),
    Wrong("stats-keepdims", "layer_norm_stats", _stats(
        "    return (work.mean(-1, keepdims=True).astype(x.dtype),\n"
        "            work.var(-1, keepdims=True).astype(x.dtype))"), ("keepdims", "x.shape[:-1]")),
    Wrong("stats-cancellation", "layer_norm_stats", _stats(
        "    m = work.mean(-1)\n    return m.astype(x.dtype), ((work * work).mean(-1) - m * m).astype(x.dtype)"),
        ("E[x²] − E[x]²", "far from zero")),
    Wrong("stats-float16-overflow", "layer_norm_stats", '''
import numpy as np

def layer_norm_stats(x):
    mean = x.mean(axis=-1)
    return mean, ((x - mean[..., None]) ** 2).mean(axis=-1)
''', ("float16", "65504", "float32")),
    Wrong("stats-dtype-lost", "layer_norm_stats", _stats(
        "    w = work.astype(np.float64)\n    return w.mean(-1), w.var(-1)"), ("dtype", "float32", "astype")),
    Wrong("stats-in-place", "layer_norm_stats", _stats(
        "    mean = work.mean(-1)\n    x -= 0\n    x[...] = 0\n    return mean.astype(x.dtype), "
        "work.var(-1).astype(x.dtype)"), ("in place", "`x`")),
    Wrong("stats-calls-lnkit", "layer_norm_stats", '''
import lnkit

def layer_norm_stats(x):
    return lnkit.layer_norm_stats(x)
''', ("you called lnkit.layer_norm_stats",)),
    # --- chapter 1: layer_norm
    Wrong("ln-unbiased", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True, ddof=1)\n"
        "    return ((work - m) / np.sqrt(v + eps) * gamma + beta).astype(x.dtype)"), ("unbiased", "C - 1")),
    Wrong("ln-eps-outside", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n"
        "    return ((work - m) / (np.sqrt(v) + eps) * gamma + beta).astype(x.dtype)"),
        ("eps is outside the square root", "(tiny variance, 1e-8, smaller than eps)")),
    Wrong("ln-no-eps", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n"
        "    return ((work - m) / np.sqrt(v) * gamma + beta).astype(x.dtype)"),
        ("eps is missing", "constant rows give NaN")),
    Wrong("ln-axis0", "layer_norm", _ln(
        "    m = work.mean(0, keepdims=True)\n    v = work.var(0, keepdims=True)\n"
        "    return ((work - m) / np.sqrt(v + eps) * gamma + beta).astype(x.dtype)"), ("wrong axis", "axis 0")),
    Wrong("ln-all-axes", "layer_norm", _ln(
        "    m = work.mean()\n    v = work.var()\n"
        "    return ((work - m) / np.sqrt(v + eps) * gamma + beta).astype(x.dtype)"), ("whole array",)),
    Wrong("ln-gamma-ignored", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n"
        "    return ((work - m) / np.sqrt(v + eps) + beta).astype(x.dtype)"), ("gamma is ignored",)),
    Wrong("ln-beta-ignored", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n"
        "    return ((work - m) / np.sqrt(v + eps) * gamma).astype(x.dtype)"), ("beta is ignored",)),
    Wrong("ln-gamma-beta-swapped", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n"
        "    return ((work - m) / np.sqrt(v + eps) * beta + gamma).astype(x.dtype)"), ("swapped",)),
    Wrong("ln-eps-hardcoded", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n"
        "    return ((work - m) / np.sqrt(v + 1e-5) * gamma + beta).astype(x.dtype)"), ("eps argument is ignored",)),
    Wrong("ln-cancellation", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = (work * work).mean(-1, keepdims=True) - m * m\n"
        "    return ((work - m) / np.sqrt(v + eps) * gamma + beta).astype(x.dtype)"), ("E[x²] − E[x]²",)),
    Wrong("ln-dtype-lost", "layer_norm", _ln(
        "    w = work.astype(np.float64)\n    m = w.mean(-1, keepdims=True)\n    v = w.var(-1, keepdims=True)\n"
        "    return (w - m) / np.sqrt(v + eps) * gamma + beta"), ("loses the input's dtype",)),
    Wrong("ln-in-place", "layer_norm", _ln(
        "    m = work.mean(-1, keepdims=True)\n    v = work.var(-1, keepdims=True)\n    work -= m\n"
        "    return (work / np.sqrt(v + eps) * gamma + beta).astype(x.dtype)"), ("modified its input `x` in place",)),
    Wrong("ln-calls-lnkit", "layer_norm", '''
from lnkit import layer_norm as reference

def layer_norm(x, gamma, beta, eps=1e-5):
    return reference(x, gamma, beta, eps)
''', ("you called lnkit.layer_norm instead of writing layer_norm",)),
    Wrong("ln-calls-torch", "layer_norm", '''
import numpy as np
import torch

def layer_norm(x, gamma, beta, eps=1e-5):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return torch.nn.functional.layer_norm(t(x), x.shape[-1:], t(gamma), t(beta), eps).numpy()
''', ("you called torch.nn.functional.layer_norm",)),
    # --- chapter 2
    Wrong("normalize-over-last-axis-only", "normalize_over", '''
import numpy as np

def normalize_over(x, axes, eps=1e-5):
    m = x.mean(axis=-1, keepdims=True)
    v = x.var(axis=-1, keepdims=True)
    return ((x - m) / np.sqrt(v + eps)).astype(x.dtype)
''', ("`axes` is ignored",)),
    Wrong("normalize-over-complement", "normalize_over", '''
import numpy as np

def normalize_over(x, axes, eps=1e-5):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    keep = tuple(a for a in range(x.ndim) if a not in {b % x.ndim for b in axes})
    m = x.mean(axis=keep, keepdims=True)
    v = x.var(axis=keep, keepdims=True)
    return ((x - m) / np.sqrt(v + eps)).astype(x.dtype)
''', ("NOT in `axes`",)),
    Wrong("normalize-over-unbiased", "normalize_over", '''
import numpy as np

def normalize_over(x, axes, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    m = w.mean(axis=axes, keepdims=True)
    v = w.var(axis=axes, keepdims=True, ddof=1)
    return ((w - m) / np.sqrt(v + eps)).astype(x.dtype)
''', ("unbiased", "n - 1")),
    Wrong("count-statistics-inverted", "count_statistics", '''
import math

def count_statistics(shape, axes):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return math.prod(shape[a] for a in axes)
''', ("axes normalized over",)),
    Wrong("count-statistics-numpy-int", "count_statistics", '''
import numpy as np

def count_statistics(shape, axes):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    axes = {a % len(shape) for a in axes}
    return np.prod([d for i, d in enumerate(shape) if i not in axes], dtype=np.int64)
''', ("not a plain python int",)),
    Wrong("count-statistics-negative-axes", "count_statistics", '''
import math

def count_statistics(shape, axes):
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return math.prod(d for i, d in enumerate(shape) if i not in axes)
''', ("negative axes",)),
    # --- chapter 3
    Wrong("ln-applications-no-ln-f", "ln_applications", '''
def ln_applications(n_layer):
    return 2 * n_layer
''', ("forgot ln_f",)),
    Wrong("ln-applications-hard-coded", "ln_applications", '''
def ln_applications(n_layer):
    return 25
''', ("whatever its arguments",)),
    Wrong("ln-statistics-times-heads", "ln_statistics", '''
def ln_statistics(n_layer, batch, seq_len, n_head):
    return (2 * n_layer + 1) * batch * seq_len * n_head
''', ("n_head should play no part",)),
    Wrong("ln-statistics-12x1024", "ln_statistics", '''
def ln_statistics(n_layer, batch, seq_len, n_head):
    return n_head * seq_len
''', ("12×1024",)),
    Wrong("ln-statistics-blocks-times-tokens", "ln_statistics", '''
def ln_statistics(n_layer, batch, seq_len, n_head):
    return n_layer * batch * seq_len
''', ("blocks × tokens", "a block is not one layernorm")),
    Wrong("ln-statistics-no-batch", "ln_statistics", '''
def ln_statistics(n_layer, batch, seq_len, n_head):
    return (2 * n_layer + 1) * seq_len
''', ("batch size is missing",)),
    Wrong("ln-parameters-gains-only", "ln_parameters", '''
def ln_parameters(n_layer, d_model):
    return (2 * n_layer + 1) * d_model
''', ("only the gains",)),
    Wrong("ln-parameters-no-ln-f", "ln_parameters", '''
def ln_parameters(n_layer, d_model):
    return 2 * n_layer * 2 * d_model
''', ("forgot ln_f",)),
    # --- chapter 4
    Wrong("fit-on-raw-x", "fit_gain_bias", '''
import numpy as np

def fit_gain_bias(x, y, eps=1e-5):
    c = x.shape[-1]
    u, v = x.reshape(-1, c).astype(np.float64), y.reshape(-1, c).astype(np.float64)
    mu, mv = u.mean(0), v.mean(0)
    gamma = ((u - mu) * (v - mv)).mean(0) / ((u - mu) ** 2).mean(0)
    return gamma.astype(x.dtype), (mv - gamma * mu).astype(x.dtype)
''', ("normalized x",)),
    Wrong("fit-by-std", "fit_gain_bias", '''
import numpy as np

def fit_gain_bias(x, y, eps=1e-5):
    c = x.shape[-1]
    w = x.astype(np.float64)
    m = w.mean(-1, keepdims=True)
    xhat = ((w - m) / np.sqrt(w.var(-1, keepdims=True) + eps)).reshape(-1, c)
    v = y.reshape(-1, c).astype(np.float64)
    gamma = v.std(0) / xhat.std(0)
    return gamma.astype(x.dtype), (v.mean(0) - gamma * xhat.mean(0)).astype(x.dtype)
''', ("loses its sign",)),
    # --- chapter 5
    Wrong("rms-centred", "rms_norm", '''
import numpy as np

def rms_norm(x, gamma, eps=1e-6):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    w = w - w.mean(-1, keepdims=True)
    return (w / np.sqrt((w * w).mean(-1, keepdims=True) + eps) * gamma).astype(x.dtype)
''', ("does not centre",)),
    Wrong("rms-eps-outside", "rms_norm", '''
import numpy as np

def rms_norm(x, gamma, eps=1e-6):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    return (w / (np.sqrt((w * w).mean(-1, keepdims=True)) + eps) * gamma).astype(x.dtype)
''', ("eps is outside the square root",)),
    Wrong("via-rms-not-centred", "layer_norm_via_rms", '''
import numpy as np

def layer_norm_via_rms(x, gamma, beta, eps=1e-5):
    return (rms_norm(x, gamma, eps) + beta).astype(x.dtype)
''', ("not centred",)),
    Wrong("via-rms-without-rms", "layer_norm_via_rms", '''
import numpy as np

def layer_norm_via_rms(x, gamma, beta, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    m = w.mean(-1, keepdims=True)
    return ((w - m) / np.sqrt(((w - m) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta).astype(x.dtype)
''', ("must compute its result by calling your rms_norm",)),
    # calls rms_norm for show and returns a LayerNorm computed directly: the result does not follow the stand-in
    Wrong("via-rms-calls-then-discards", "layer_norm_via_rms", '''
import numpy as np

def layer_norm_via_rms(x, gamma, beta, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    m = w.mean(-1, keepdims=True)
    rms_norm(w - m, gamma, eps)
    return ((w - m) / np.sqrt(((w - m) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta).astype(x.dtype)
''', ("must compute its result by calling your rms_norm",)),
    # --- chapter 6
    Wrong("pre-ln-is-post-ln", "pre_ln", '''
def pre_ln(x, sublayer, norm):
    return norm(x + sublayer(x))
''', ("this is the post-ln wiring",)),
    Wrong("pre-ln-no-residual", "pre_ln", '''
def pre_ln(x, sublayer, norm):
    return sublayer(norm(x))
''', ("residual is missing",)),
    Wrong("post-ln-is-pre-ln", "post_ln", '''
def post_ln(x, sublayer, norm):
    return x + sublayer(norm(x))
''', ("this is the pre-ln wiring",)),
    Wrong("pre-ln-calls-lnkit", "pre_ln", '''
from lnkit.gpt2 import pre_ln as reference

def pre_ln(x, sublayer, norm):
    return reference(x, sublayer, norm)
''', ("you called lnkit.gpt2.pre_ln",)),
    # --- chapter 7
    Wrong("backward-constant-stats", "layer_norm_backward", '''
import numpy as np

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    dy = dout.astype(w.dtype)
    m = w.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(w.var(-1, keepdims=True) + eps)
    xhat = (w - m) * rstd
    lead = tuple(range(x.ndim - 1))
    dx = dy * gamma * rstd
    return dx.astype(x.dtype), (dy * xhat).sum(lead).astype(gamma.dtype), dy.sum(lead).astype(gamma.dtype)
''', ("treats the mean and the variance as constants",)),
    Wrong("backward-sum-axis0", "layer_norm_backward", '''
import numpy as np

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    dy = dout.astype(w.dtype)
    m = w.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((w - m) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (w - m) * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx.astype(x.dtype), (dy * xhat).sum(0).astype(gamma.dtype), dy.sum(0).astype(gamma.dtype)
''', ("summed over axis 0 only",)),
    # computed in float16 throughout: the variance of values in the thousands overflows, rstd is 0 and so is dx
    Wrong("backward-float16", "layer_norm_backward", '''
import numpy as np

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    g = dout * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx, (dout * xhat).sum(axis=lead), dout.sum(axis=lead)
''', ("float16", "65504", "float32")),
    Wrong("backward-eps-outside", "layer_norm_backward", '''
import numpy as np

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    dy = dout.astype(w.dtype)
    m = w.mean(-1, keepdims=True)
    rstd = 1 / (np.sqrt(((w - m) ** 2).mean(-1, keepdims=True)) + eps)
    xhat = (w - m) * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx.astype(x.dtype), (dy * xhat).sum(lead).astype(gamma.dtype), dy.sum(lead).astype(gamma.dtype)
''', ("eps is outside the square root", "(tiny variance, 1e-8, smaller than eps)")),
    Wrong("backward-no-mean-term", "layer_norm_backward", '''
import numpy as np

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    dy = dout.astype(w.dtype)
    m = w.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((w - m) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (w - m) * rstd
    g = dy * gamma
    dx = rstd * (g - xhat * (g * xhat).mean(-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    return dx.astype(x.dtype), (dy * xhat).sum(lead).astype(gamma.dtype), dy.sum(lead).astype(gamma.dtype)
''', ("missing the term that comes through the mean", "deriving the gradients")),
    Wrong("backward-calls-lnkit", "layer_norm_backward", '''
import lnkit

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    return lnkit.layer_norm_backward(dout, x, gamma, eps)
''', ("you called lnkit.layer_norm_backward",), earns_nothing=True),
    # torch's autograd: noticed by the profiler in the student's kernel; when grading, torch is not granted to 07, so
    # its first call is refused in the sandbox (no profiler there)
    Wrong("backward-calls-torch-autograd", "layer_norm_backward", '''
import numpy as np
import torch

def layer_norm_backward(dout, x, gamma, eps=1e-5):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
    bt = torch.zeros_like(gt, requires_grad=True)
    mean = xt.mean(-1, keepdim=True)
    y = (xt - mean) / torch.sqrt(((xt - mean) ** 2).mean(-1, keepdim=True) + eps) * gt + bt
    y.backward(torch.tensor(dout, dtype=torch.float64))
    return (xt.grad.numpy().astype(x.dtype), gt.grad.numpy().astype(gamma.dtype),
            bt.grad.numpy().astype(gamma.dtype))
''', ("you called torch",), earns_nothing=True),
    # --- chapter 8
    Wrong("running-naive-one-pass", "running_stats", '''
import numpy as np

def running_stats(x):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    s = (w).sum(-1)
    s2 = (w * w).sum(-1)
    n = x.shape[-1]
    return (s / n).astype(x.dtype), (s2 / n - (s / n) ** 2).astype(x.dtype)
''', ("welford",)),
    # np.var is accepted (only values are graded, see ALSO_RIGHT), but squaring float16 values in float16 overflows
    Wrong("running-np-var-in-float16", "running_stats", '''
import numpy as np

def running_stats(x):
    return x.mean(-1), x.var(-1)
''', ("float16 input overflows",)),
]


@dataclass(frozen=True)
class Right:
    id: str
    function: str
    source: str  # another answer that must pass every check of its function, visible and hidden, every part


# Answers other than CORRECT's that must score full marks: what is graded is the values, never how they were computed.
ALSO_RIGHT = [
    # chapter 8's model answer is Welford's one pass; np.var's two passes are as accurate, and score
    Right("running-np-var", "running_stats", '''
import numpy as np

def running_stats(x):
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    return w.mean(-1).astype(x.dtype), np.var(w, axis=-1).astype(x.dtype)
'''),
    # switching the profiler off changes nothing: no verdict depends on one (grading runs none)
    Right("running-np-var-profiler-off", "running_stats", '''
import sys
import numpy as np

def running_stats(x):
    sys.setprofile(None)
    w = x.astype(np.float32) if x.dtype == np.float16 else x
    return w.mean(-1).astype(x.dtype), w.var(-1).astype(x.dtype)
'''),
]


def plain(text: str) -> str:
    """Text with the spellings of one formula made alike: no spaces, ASCII operators, lower case."""
    for a, b in (("·", "*"), ("×", "*"), ("−", "-"), ("²", "**2"), ("`", ""), ("np.", "")):
        text = text.replace(a, b)
    return "".join(text.split()).lower()


# What a message must never contain, by function (compared after `plain`): the answer itself, in the spellings a
# message would use. A message names the mistake and points to the chapter; for the cells whose point is deriving
# a formula or a counting rule (07's dx, 03's counts, 06's wirings, 04's fit, 02's count), writing the answer out
# would hand over the points.
SOLUTION_EXPRESSIONS = {
    "layer_norm_stats": ("((x-mean)**2).mean(axis=-1)", "var(x,axis=-1)"),
    "layer_norm": ("(x-mean)/sqrt(var+eps)*gamma+beta",),
    "normalize_over": ("x.mean(axis=axes,keepdims=true)", "x.mean(axis=tuple(axes)"),
    "count_statistics": ("productofthesizesoftheaxesthatarekept", "axesnotinaxes",
                         "prod(dfori,dinenumerate(shape)ifinotinaxes)"),
    "ln_applications": ("2*n_layer+1", "2perblock+1", "2perblock+ln_f", "everyblockhas2", "ablockhastwo",
                        "ablockhas2", "2*12+1"),
    "ln_statistics": ("2*n_layer+1", "2perblock+ln_f", "ablockhastwo", "25*1024", "onepairpertokenperlayernorm"),
    "ln_parameters": ("2*n_layer+1", "2perblock+ln_f", "ablockhastwo", "d_modelnumberseach", "2*d_model"),
    "fit_gain_bias": ("cov(xhat,y)/var(xhat)", "mean(y)-gamma*mean(xhat)"),
    "rms_norm": ("x/sqrt(mean(x**2)+eps)*gamma",),
    "layer_norm_via_rms": ("rms_norm(x-mean(x),gamma,eps)+beta",),
    "pre_ln": ("x+sublayer(norm(x))",),
    "post_ln": ("norm(x+sublayer(x))",),
    "layer_norm_backward": ("g-mean(g)", "xhat*mean(g*xhat)", "mean(g*xhat)", "rstd*(g", "dout*xhat",
                            "multiplybythenormalizedxhat", "g=dout*gamma"),
    "running_stats": ("delta/n", "m2+delta*", "mean+delta"),
}


# --- chapter 10, "LayerNorm in the wild": fold_into_linear and add_layer_norm_traffic ------------------------------

CORRECT["fold_into_linear"] = '''
import numpy as np

def fold_into_linear(gamma, beta, W, b):
    W2 = gamma[:, None] * W  # row i of W takes feature i, which the LayerNorm multiplied by gamma[i]
    b2 = beta @ W + b  # beta is added after the gain: it reaches the outputs through W
    return W2.astype(W.dtype), b2.astype(W.dtype)
'''
CORRECT["add_layer_norm_traffic"] = '''
def add_layer_norm_traffic(rows, features, itemsize, fused, write_allocate):
    n = rows * features  # one full-size array: x, r, h or y
    reads = 2 * n + 2 * features  # x and r; gamma and beta, once, in the pass that normalizes
    writes = 2 * n  # h (the stream goes on) and y
    if not fused:
        reads += n  # the LayerNorm pass reads h back from memory
    if write_allocate:
        reads += writes  # each array written is first read in
    return (reads + writes) * itemsize
'''
CHECKS["fold_into_linear"] = ("check_fold_into_linear", "10-in-the-wild")
CHECKS["add_layer_norm_traffic"] = ("check_add_layer_norm_traffic", "10-in-the-wild")


def _fold(body: str) -> str:
    return f'''
import numpy as np

def fold_into_linear(gamma, beta, W, b):
{body}
'''


def _traffic(reread_unfused="n", reread_fused="0", writes="2 * n", params="2 * features", allocate="writes",
             unit="itemsize") -> str:
    """An add_layer_norm_traffic with one rule changed from the correct one."""
    return f'''
def add_layer_norm_traffic(rows, features, itemsize, fused, write_allocate):
    n = rows * features
    reads = 2 * n + {params}
    writes = {writes}
    reads += {reread_fused} if fused else {reread_unfused}
    if write_allocate:
        reads += {allocate}
    return (reads + writes) * {unit}
'''


WRONG += [
    Wrong("fold-gamma-on-columns", "fold_into_linear", _fold(
        "    return W * gamma, beta @ W + b"), ("W's columns", "row i of W")),
    Wrong("fold-beta-through-folded-w", "fold_into_linear", _fold(
        "    W2 = gamma[:, None] * W\n    return W2, beta @ W2 + b"), ("multiplied by gamma too",)),
    Wrong("fold-beta-added-to-b", "fold_into_linear", _fold(
        "    return gamma[:, None] * W, b + beta"), ("pass through the linear layer",)),
    Wrong("fold-loses-b", "fold_into_linear", _fold(
        "    return gamma[:, None] * W, beta @ W"), ("own bias b is lost",)),
    Wrong("fold-no-beta", "fold_into_linear", _fold(
        "    return gamma[:, None] * W, b.copy()"), ("beta is left out",)),
    Wrong("fold-w-in-place", "fold_into_linear", _fold(
        "    b2 = beta @ W + b\n    W *= gamma[:, None]\n    return W, b2"), ("modified its input `W` in place",)),
    Wrong("traffic-fused-skips-h", "add_layer_norm_traffic", _traffic(writes="2 * n if not fused else n"),
          ("does not write h", "residual stream")),
    Wrong("traffic-fused-rereads-h", "add_layer_norm_traffic", _traffic(reread_fused="n"),
          ("still reads h back",)),
    Wrong("traffic-unfused-no-reread", "add_layer_norm_traffic", _traffic(reread_unfused="0"),
          ("does not read h back",)),
    Wrong("traffic-no-write-allocate", "add_layer_norm_traffic", _traffic(allocate="0"), ("leaves that out",)),
    Wrong("traffic-write-allocate-on-reads", "add_layer_norm_traffic", _traffic(allocate="reads"),
          ("not for each array read",)),
    Wrong("traffic-no-gamma-beta", "add_layer_norm_traffic", _traffic(params="0"), ("gamma and beta are left out",)),
    Wrong("traffic-gamma-beta-per-row", "add_layer_norm_traffic", _traffic(params="2 * n"),
          ("one value per feature",)),
    Wrong("traffic-write-allocate-always", "add_layer_norm_traffic",
          _traffic(allocate="writes").replace("    if write_allocate:\n", "    if True:\n"),
          ("even when write_allocate is False",)),
    Wrong("traffic-gamma-beta-in-both-passes", "add_layer_norm_traffic",
          _traffic(params="2 * features * (1 if fused else 2)"), ("in both passes",)),
    Wrong("traffic-values-not-bytes", "add_layer_norm_traffic", _traffic(unit="1"), ("multiply by itemsize",)),
    Wrong("traffic-float", "add_layer_norm_traffic", _traffic(unit="float(itemsize)"), ("not an int",)),
]

SOLUTION_EXPRESSIONS["fold_into_linear"] = ("gamma[:,None]*W", "W*gamma[:,None]", "beta@W+b", "b+beta@W",
                                            "diag(gamma)@W")
SOLUTION_EXPRESSIONS["add_layer_norm_traffic"] = ("6*n", "7*n", "6*rows*features", "7*rows*features",
                                                  "2*n+2*features", "+2*features")



# --- chapter 11, "Do we need it at all?": dyt and fit_dyt_alpha -----------------------------------------------------

CORRECT["dyt"] = '''
import numpy as np

def dyt(x, alpha, gamma, beta):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    return (gamma * np.tanh(alpha * work) + beta).astype(x.dtype)
'''
CORRECT["fit_dyt_alpha"] = '''
import numpy as np

def fit_dyt_alpha(x, eps=1e-5):
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    target = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)

    def error(log_alpha):
        return np.mean((np.tanh(np.exp(log_alpha) * x) - target) ** 2)

    # a coarse scan over log(alpha), then ternary search around the best point of the scan
    grid = np.linspace(-10, 10, 401) - np.log(np.abs(x).max())
    i = int(np.argmin([error(a) for a in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(100):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if error(a) < error(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))
'''
CHECKS["dyt"] = ("check_dyt", "11-dyt")
CHECKS["fit_dyt_alpha"] = ("check_fit_dyt_alpha", "11-dyt")


def _dyt(expression: str) -> str:
    return f'''
import numpy as np

def dyt(x, alpha, gamma, beta):
    x = np.asarray(x)
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    return ({expression}).astype(x.dtype)
'''


def _fit_alpha(target: str, inputs: str = "x") -> str:
    """A fit_dyt_alpha that searches well but fits the wrong thing."""
    return CORRECT["fit_dyt_alpha"].replace(
        "    target = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)\n",
        f"    target = {target}\n    inputs = {inputs}\n",
    ).replace("np.exp(log_alpha) * x)", "np.exp(log_alpha) * inputs)")


WRONG += [
    Wrong("dyt-no-alpha", "dyt", _dyt("gamma * np.tanh(work) + beta"), ("alpha is ignored",)),
    Wrong("dyt-alpha-outside", "dyt", _dyt("gamma * alpha * np.tanh(work) + beta"), ("instead of its input",)),
    Wrong("dyt-no-gamma", "dyt", _dyt("np.tanh(alpha * work) + beta"), ("gamma is ignored",)),
    Wrong("dyt-beta-inside", "dyt", _dyt("gamma * np.tanh(alpha * work + beta)"), ("inside the tanh",)),
    Wrong("fit-inverse-std", "fit_dyt_alpha", '''
import numpy as np

def fit_dyt_alpha(x, eps=1e-5):
    return float(1 / np.std(x))
''', ("1 / std(x)", "mean squared error")),
    Wrong("fit-to-x", "fit_dyt_alpha", _fit_alpha("x"), ("fits tanh(alpha * x) to x itself",)),
    Wrong("fit-normalized-input", "fit_dyt_alpha", _fit_alpha(
        "(x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)",
        inputs="(x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)"), ("raw x",)),
    Wrong("fit-whole-array-stats", "fit_dyt_alpha", _fit_alpha("(x - x.mean()) / np.sqrt(x.var() + eps)"),
          ("over all of x",)),
    Wrong("fit-no-eps", "fit_dyt_alpha", _fit_alpha(
        "(x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True))"), ("eps argument is missing",)),
    Wrong("fit-coarse-grid", "fit_dyt_alpha", '''
import numpy as np

def fit_dyt_alpha(x, eps=1e-5):
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    target = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    grid = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
    return min(grid, key=lambda a: np.mean((np.tanh(a * x) - target) ** 2))
''', ("returns wrong values",)),
]

SOLUTION_EXPRESSIONS["dyt"] = ("gamma*np.tanh(alpha*", "tanh(alpha*x)*gamma")
SOLUTION_EXPRESSIONS["fit_dyt_alpha"] = ("np.mean((np.tanh(", "argmin", "ternary")

def student(function: str, source: str | None = None):
    """A student's function as their notebook defines it: the correct answers first (layer_norm_via_rms calls the
    student's rms_norm), then ``source`` (the correct answer when None)."""
    namespace: dict = {}
    for correct in CORRECT.values():
        exec(correct, namespace)  # noqa: S102 - the corpus is ours
    exec(source or CORRECT[function], namespace)  # noqa: S102
    return namespace[function]
