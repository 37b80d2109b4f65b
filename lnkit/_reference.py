"""Reference answers for the exercises that lnkit's public API does not cover (chapters 3, 4, 6 and 8).

Private: :mod:`lnkit.checks` compares students' functions with these. NumPy only.
"""

from __future__ import annotations

import numpy as np


# --- chapter 3: counting ------------------------------------------------------------------------------------------


def ln_applications(n_layer: int) -> int:
    """A pre-LN GPT-2 applies ln_1 and ln_2 in every block, and ln_f once at the end."""
    return 2 * n_layer + 1


def ln_statistics(n_layer: int, batch: int, seq_len: int, n_head: int) -> int:
    """One (mean, variance) pair per token per application. Heads play no part: LN acts on the whole d_model vector."""
    return ln_applications(n_layer) * batch * seq_len


def ln_parameters(n_layer: int, d_model: int) -> int:
    """A gain and a bias of d_model numbers for every LayerNorm module."""
    return ln_applications(n_layer) * 2 * d_model


# --- chapter 4: recovering gain and bias --------------------------------------------------------------------------


def fit_gain_bias(x, y, eps: float = 1e-5):
    """Least-squares line y = gamma * xhat + beta for every feature at once, xhat being x normalized without gain."""
    x = np.asarray(x)
    y = np.asarray(y)
    out = x.dtype
    xw = x.astype(np.float64).reshape(-1, x.shape[-1])
    yw = y.astype(np.float64).reshape(-1, y.shape[-1])
    mean = xw.mean(axis=-1, keepdims=True)
    xhat = (xw - mean) / np.sqrt(((xw - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    mx, my = xhat.mean(axis=0), yw.mean(axis=0)
    cov = ((xhat - mx) * (yw - my)).mean(axis=0)
    var = ((xhat - mx) ** 2).mean(axis=0)
    gamma = cov / var
    beta = my - gamma * mx
    return gamma.astype(out), beta.astype(out)


# --- chapter 6: the two wirings -----------------------------------------------------------------------------------


def pre_ln(x, sublayer, norm):
    return x + sublayer(norm(x))


def post_ln(x, sublayer, norm):
    return norm(x + sublayer(x))


# --- chapter 8: one-pass statistics -------------------------------------------------------------------------------


def running_stats(x):
    """Mean and biased variance over the last axis (computed here in float64, two passes: the accurate answer)."""
    x = np.asarray(x)
    out = x.dtype
    xw = x.astype(np.float64)
    mean = xw.mean(axis=-1)
    var = ((xw - mean[..., None]) ** 2).mean(axis=-1)
    return mean.astype(out), var.astype(out)
