"""LayerNorm, RMSNorm and friends: the reference implementations the book teaches.

Semantics are PyTorch's (``torch.nn.functional.layer_norm`` over the last axis):

* statistics over the last axis, one (mean, variance) pair per row: for a transformer, one per token;
* the *biased* variance (divide by C, not C - 1), and ``eps`` added *inside* the square root;
* ``gamma`` and ``beta`` of shape ``(C,)``, shared by every row;
* float16 input is computed in float32 and returned as float16; integer input is normalized as float64.

The variance is computed in two passes, ``mean((x - mean)**2)``, never as ``E[x^2] - E[x]^2``: in float32 that
formula cancels catastrophically for rows far from zero (chapter 8 shows it going negative at a mean of 1e4).

A ``torch.Tensor`` input takes the torch path (:mod:`lnkit._torch`) with the same semantics, on its own device and
under autograd. torch is imported only then, so ``import lnkit`` stays light.
"""

from __future__ import annotations

import sys
from math import prod
from typing import Any, Sequence

import numpy as np

from ._validate import check_eps, check_features, check_param_shape, check_shape, compute_dtype, normalize_axes

__all__ = [
    "layer_norm",
    "layer_norm_stats",
    "rms_norm",
    "layer_norm_backward",
    "normalize_over",
    "count_statistics",
]


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


def _centred_and_var(x: np.ndarray, work: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean, mean, biased variance) over the last axis, in `work` precision. x itself is left untouched."""
    xw = x.astype(work, copy=False)
    mean = xw.mean(axis=-1, keepdims=True)
    centred = xw - mean  # a new array: the caller may scale it in place
    var = np.einsum("...i,...i->...", centred, centred)[..., None] / centred.shape[-1]
    return centred, mean, var


def layer_norm_stats(x):
    """The mean and the biased variance of every row: ``x.mean(-1)``, ``x.var(-1)``, shapes ``x.shape[:-1]``.

    These are the statistics a LayerNorm computes: one (mean, variance) pair per row, that is, per token.
    Returned in x's floating dtype (float64 for integer input).
    """
    if _is_tensor(x):
        return _torch_backend().layer_norm_stats(x)
    x, work, out = _as_input(x)
    check_features(x.shape)
    _, mean, var = _centred_and_var(x, work)
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
    y, _, var = _centred_and_var(x, work)
    y *= 1.0 / np.sqrt(var + eps)  # in place on our own buffer: one fewer pass over memory
    if gamma is not None:
        y *= gamma
    if beta is not None:
        y += beta
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
    y = x.astype(work, copy=True)
    mean_square = np.einsum("...i,...i->...", y, y)[..., None] / features
    y *= 1.0 / np.sqrt(mean_square + eps)
    if gamma is not None:
        y *= gamma
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
    xhat, _, var = _centred_and_var(x, work)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat *= rstd
    dy = dout.astype(work, copy=False)
    leading = tuple(range(x.ndim - 1))
    dbeta = dy.sum(axis=leading)
    dgamma = (dy * xhat).sum(axis=leading)
    g = dy * gamma if gamma is not None else dy.copy()
    dx = g - g.mean(axis=-1, keepdims=True)
    dx -= xhat * (np.einsum("...i,...i->...", g, xhat)[..., None] / features)
    dx *= rstd
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
    xw = x.astype(work, copy=False)
    mean = xw.mean(axis=axes, keepdims=True)
    y = xw - mean
    var = np.square(y).mean(axis=axes, keepdims=True)
    y *= 1.0 / np.sqrt(var + eps)
    return y.astype(out, copy=False)


def count_statistics(shape: Sequence[int], axes: int | Sequence[int]) -> int:
    """How many (mean, variance) pairs ``normalize_over`` computes for a tensor of ``shape`` and these ``axes``.

    One pair per position along the axes that are *not* normalized over: the product of their sizes.
    ``count_statistics((1, 1024, 768), -1)`` is 1024, one per token.
    """
    dims = check_shape(shape)
    axes = normalize_axes(axes, len(dims))
    return prod(d for i, d in enumerate(dims) if i not in axes)
