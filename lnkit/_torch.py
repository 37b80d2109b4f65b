"""The torch path of lnkit's norms: same semantics as the NumPy path, on the tensor's own device, under autograd.

Imported only when a ``torch.Tensor`` reaches :mod:`lnkit.norms`. Written with plain differentiable torch ops (not
``torch.nn.functional.layer_norm``) so that the tests comparing the two compare two different implementations.
Half-precision inputs (float16, bfloat16) accumulate in float32 and come back in their own dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._validate import check_eps, check_features, check_param_shape, normalize_axes

_REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _dtypes(x: torch.Tensor, name: str = "x") -> tuple[torch.dtype, torch.dtype]:
    """(compute dtype, output dtype), mirroring :func:`lnkit._validate.compute_dtype`."""
    if x.dtype in _REAL_FLOATS:
        return (torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype), x.dtype
    if x.dtype.is_complex or x.dtype == torch.bool or x.dtype.is_floating_point:
        raise TypeError(f"{name} must hold real numbers (a floating or integer dtype); got dtype {x.dtype}.")
    return torch.float64, torch.float64  # integers


def _param(p, like: torch.Tensor, features: int, work: torch.dtype, name: str):
    if p is None:
        return None
    p = torch.as_tensor(p, device=like.device)
    _dtypes(p, name)
    check_param_shape(tuple(p.shape), features, name)
    return p.to(work)


def _prepare(x: torch.Tensor, eps: float):
    work, out = _dtypes(x)
    features = check_features(tuple(x.shape))
    return x.to(work), work, out, features, check_eps(eps)


def layer_norm_stats(x: torch.Tensor):
    work, out = _dtypes(x)
    check_features(tuple(x.shape))
    var, mean = torch.var_mean(x.to(work), dim=-1, correction=0)
    return mean.to(out), var.to(out)


def layer_norm(x: torch.Tensor, gamma=None, beta=None, eps: float = 1e-5):
    xw, work, out, features, eps = _prepare(x, eps)
    gamma = _param(gamma, x, features, work, "gamma")
    beta = _param(beta, x, features, work, "beta")
    var, mean = torch.var_mean(xw, dim=-1, correction=0, keepdim=True)
    y = (xw - mean) * torch.rsqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.to(out)


def rms_norm(x: torch.Tensor, gamma=None, eps: float = 1e-6):
    xw, work, out, features, eps = _prepare(x, eps)
    gamma = _param(gamma, x, features, work, "gamma")
    y = xw * torch.rsqrt(xw.square().mean(dim=-1, keepdim=True) + eps)
    if gamma is not None:
        y = y * gamma
    return y.to(out)


def layer_norm_backward(dout, x, gamma=None, eps: float = 1e-5):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor when dout is one; got {type(x).__name__}.")
    dout = torch.as_tensor(dout, device=x.device)
    _dtypes(dout, "dout")
    if dout.shape != x.shape:
        raise ValueError(f"dout must have the shape of x, {tuple(x.shape)}; got {tuple(dout.shape)}.")
    xw, work, out, features, eps = _prepare(x, eps)
    param_dtype = out if gamma is None else _dtypes(torch.as_tensor(gamma), "gamma")[1]
    gamma = _param(gamma, x, features, work, "gamma")
    var, mean = torch.var_mean(xw, dim=-1, correction=0, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    xhat = (xw - mean) * rstd
    dy = dout.to(work)
    leading = tuple(range(x.ndim - 1))
    dbeta = dy.sum(dim=leading) if leading else dy
    dgamma = (dy * xhat).sum(dim=leading) if leading else dy * xhat
    g = dy * gamma if gamma is not None else dy
    dx = rstd * (g - g.mean(dim=-1, keepdim=True) - xhat * (g * xhat).mean(dim=-1, keepdim=True))
    return dx.to(out), dgamma.to(param_dtype), dbeta.to(param_dtype)


def normalize_over(x: torch.Tensor, axes: int | Sequence[int], eps: float = 1e-5):
    work, out = _dtypes(x)
    if x.ndim == 0:
        check_features(())
    axes = normalize_axes(axes, x.ndim)
    eps = check_eps(eps)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"every axis in axes must have at least one element; x has shape {tuple(x.shape)}.")
    var, mean = torch.var_mean(x.to(work), dim=axes, correction=0, keepdim=True)
    return ((x.to(work) - mean) * torch.rsqrt(var + eps)).to(out)
