"""LayerNorm, RMSNorm and friends: the reference implementations the book teaches.

Semantics are PyTorch's (``torch.nn.functional.layer_norm`` over the last axis):

* statistics over the last axis, one (mean, variance) pair per row: for a transformer, one per token;
* the *biased* variance (divide by C, not C - 1), and ``eps`` added *inside* the square root;
* ``gamma`` and ``beta`` of shape ``(C,)``, shared by every row;
* float16 input is computed in float32 and returned as float16; integer input is normalized as float64.

The variance is computed in two passes, ``mean((x - mean)**2)``, never as ``E[x^2] - E[x]^2``: in float32 that
formula cancels catastrophically for rows far from zero (chapter 8 shows it going negative at a mean of 1e4).

Each function states its formula in NumPy. A large input goes to :mod:`lnkit.blocked` (chapter 8), which runs the
same operations on one cached block of rows at a time, on several threads: faster, and every row the same to the bit.

A ``torch.Tensor`` input takes the torch path (:mod:`lnkit._torch`) with the same semantics, on its own device and
under autograd. torch is imported only then, so ``import lnkit`` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np

from . import blocked
from ._validate import check_eps, check_features, check_param_shape, check_shape, compute_dtype, normalize_axes

__all__ = [
    "layer_norm",
    "layer_norm_stats",
    "rms_norm",
    "layer_norm_backward",
    "normalize_over",
    "count_statistics",
]


def _mean_of_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``mean(a * b)`` over the last axis, kept as an axis of size 1.

    ``einsum`` multiplies and sums in one pass, without a full-size temporary, as :mod:`lnkit.blocked` does: the
    same operation in both keeps their results identical.
    """
    return np.einsum("...c,...c->...", a, b)[..., None] / a.shape[-1]


def layer_norm_stats(x):
    """The mean and the biased variance of every row: ``x.mean(-1)``, ``x.var(-1)``, shapes ``x.shape[:-1]``.

    These are the statistics a LayerNorm computes: one (mean, variance) pair per row, that is, per token.
    Returned in x's floating dtype (float64 for integer input).
    """
    if _is_tensor(x):
        return _torch_backend().layer_norm_stats(x)
    x, work, out = _as_input(x)
    check_features(x.shape)
    if blocked.handles(x):
        return blocked.layer_norm_stats(x, work, out)
    x = x.astype(work, copy=False)
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = _mean_of_product(xc, xc)
    return mean[..., 0].astype(out, copy=False), var[..., 0].astype(out, copy=False)


def layer_norm(x, gamma=None, beta=None, eps: float = 1e-5):
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis of ``x`` (shape ``(..., C)``).

    ``gamma`` and ``beta`` have shape ``(C,)``; ``None`` means no gain (1) or no bias (0).
    """
    if _is_tensor(x):
        return _torch_backend().layer_norm(x, gamma, beta, eps)
    x, work, out = _as_input(x)
    features = check_features(x.shape)
    eps = check_eps(eps)
    gamma = _as_param(gamma, features, work, "gamma")
    beta = _as_param(beta, features, work, "beta")
    if blocked.handles(x):
        return blocked.layer_norm(x, gamma, beta, eps, work, out)
    x = x.astype(work, copy=False)
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = _mean_of_product(xc, xc)
    rstd = 1 / np.sqrt(var + eps)
    y = xc * rstd
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(out, copy=False)


def rms_norm(x, gamma=None, eps: float = 1e-6):
    """``x / sqrt(mean(x**2) + eps) * gamma`` over the last axis: LayerNorm without centring and without bias.

    The default ``eps`` is LLaMA's 1e-6. Note that ``torch.nn.RMSNorm`` defaults to ``eps=None`` (the dtype's
    machine epsilon), so pass ``eps`` explicitly when comparing with it.
    """
    if _is_tensor(x):
        return _torch_backend().rms_norm(x, gamma, eps)
    x, work, out = _as_input(x)
    features = check_features(x.shape)
    eps = check_eps(eps)
    gamma = _as_param(gamma, features, work, "gamma")
    if blocked.handles(x):
        return blocked.rms_norm(x, gamma, eps, work, out)
    x = x.astype(work, copy=False)
    rstd = 1 / np.sqrt(_mean_of_product(x, x) + eps)
    y = x * rstd
    if gamma is not None:
        y = y * gamma
    return y.astype(out, copy=False)


def layer_norm_backward(dout, x, gamma=None, eps: float = 1e-5):
    """Gradients of ``layer_norm(x, gamma, beta, eps)`` given ``dout``, the gradient of the loss w.r.t. its output.

    Returns ``(dx, dgamma, dbeta)``: ``dx`` has x's shape and dtype; ``dgamma`` and ``dbeta`` have shape ``(C,)``,
    summed over every row. With ``gamma=None`` the gain is 1, and ``dgamma``/``dbeta`` are the gradients a gain and
    a bias would receive there.

    With ``xhat = (x - mean) * rstd`` and ``g = dout * gamma``::

        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))      # means over the last axis

    (chapter 7 derives it).
    """
    if _is_tensor(x) or _is_tensor(dout):
        return _torch_backend().layer_norm_backward(dout, x, gamma, eps)
    x, work, out = _as_input(x)
    features = check_features(x.shape)
    eps = check_eps(eps)
    dout = np.asarray(dout)
    compute_dtype(dout.dtype, "dout")
    if dout.shape != x.shape:
        raise ValueError(f"dout must have the shape of x, {x.shape}; got {dout.shape}.")
    param_dtype = out if gamma is None else compute_dtype(np.asarray(gamma).dtype, "gamma")[1]
    gamma = _as_param(gamma, features, work, "gamma")
    if blocked.handles(x, dout):
        return blocked.layer_norm_backward(dout, x, gamma, eps, work, out, param_dtype)
    x, dout = x.astype(work, copy=False), dout.astype(work, copy=False)
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    rstd = 1 / np.sqrt(_mean_of_product(xc, xc) + eps)
    xhat = xc * rstd
    g = dout * gamma if gamma is not None else dout
    dx = (g - g.mean(-1, keepdims=True) - xhat * _mean_of_product(g, xhat)) * rstd
    dgamma = (dout * xhat).reshape(-1, features).sum(0)  # summed over every row, that is over every token
    dbeta = dout.reshape(-1, features).sum(0)
    return dx.astype(out, copy=False), dgamma.astype(param_dtype, copy=False), dbeta.astype(param_dtype, copy=False)


def normalize_over(x, axes: int | Sequence[int], eps: float = 1e-5):
    """Normalize ``x`` to mean 0 and variance 1 with statistics taken over ``axes`` (no gain, no bias).

    This is the one tool for comparing normalization schemes on a ``(batch, tokens, features)`` tensor:

    * ``axes=-1``: LayerNorm, one statistic per token;
    * ``axes=(0, 1)``: BatchNorm-style, one statistic per feature, across the batch and the tokens;
    * ``axes=1``: per feature across the tokens of one sequence (this one lets later tokens leak into earlier ones);
    * ``axes=(0, 1, 2)``: one statistic for the whole tensor.
    """
    if _is_tensor(x):
        return _torch_backend().normalize_over(x, axes, eps)
    x, work, out = _as_input(x)
    if x.ndim == 0:
        check_features(x.shape)
    axes = normalize_axes(axes, x.ndim)
    eps = check_eps(eps)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(
            f"every axis in axes must have at least one element; x has shape {x.shape} and axes={axes}. "
            f"The mean and variance of zero numbers are undefined."
        )
    x = x.astype(work, copy=False)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = np.square(xc).mean(axis=axes, keepdims=True)
    xc *= 1 / np.sqrt(var + eps)  # in place: xc is ours, and x may be large
    return xc.astype(out, copy=False)


def count_statistics(shape: Sequence[int], axes: int | Sequence[int]) -> int:
    """How many (mean, variance) pairs ``normalize_over`` computes for a tensor of ``shape`` and these ``axes``.

    One pair per position along the axes that are *not* normalized over: the product of their sizes.
    ``count_statistics((1, 1024, 768), -1)`` is 1024, one per token.
    """
    dims = check_shape(shape)
    axes = normalize_axes(axes, len(dims))
    return prod(d for i, d in enumerate(dims) if i not in axes)


# --- input handling -----------------------------------------------------------------------------------------------


def _is_tensor(x: Any) -> bool:
    # If torch was never imported, nobody can have made a tensor: no need to import it to find out.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _torch_backend():
    from . import _torch

    return _torch


def _as_input(x: Any, name: str = "x") -> tuple[np.ndarray, np.dtype, np.dtype]:
    """x as an ndarray (never copied here, never written to), its compute dtype and its output dtype."""
    x = np.asarray(x)
    work, out = compute_dtype(x.dtype, name)
    return x, work, out


def _as_param(p: Any, features: int, work: np.dtype, name: str) -> np.ndarray | None:
    if p is None:
        return None
    p = np.asarray(p)
    compute_dtype(p.dtype, name)  # refuses complex, bool, strings
    check_param_shape(p.shape, features, name)
    return p.astype(work, copy=False)
