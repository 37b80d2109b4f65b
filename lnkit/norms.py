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

Speed (chapter 8). LayerNorm does a handful of flops per number it reads, so its time is set by how often it walks
through main memory, not by arithmetic. The textbook expression reads the whole tensor nine times and writes a
full-size temporary six times (mean; var's mean, centre, square and sum; centre, divide, gain, bias). Here the rows
are cut into blocks of about 1 MB, small enough to stay in cache: each block is read from memory once, all the
steps run on the cached block, and the result is written straight into the output array. Large inputs spread the
blocks over threads (NumPy releases the GIL inside its loops). The arithmetic done on each row, and so every bit of
the result, is the same whatever the block size or the number of threads.
"""

from __future__ import annotations

import os
import sys
import threading
from math import prod
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ._validate import check_eps, check_features, check_param_shape, check_shape, compute_dtype, normalize_axes

if TYPE_CHECKING:  # concurrent.futures costs ~14 ms to import (it pulls in logging): only when threads are needed
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "layer_norm",
    "layer_norm_stats",
    "rms_norm",
    "layer_norm_backward",
    "normalize_over",
    "count_statistics",
]

# --- row blocks and threads ---------------------------------------------------------------------------------------

#: Target size of one block of rows, in bytes of the compute dtype: about 340 GPT-2 rows. A block and its output
#: stay in cache (L2 or the much larger L3) while the five or six NumPy calls run over them. Measured with
#: ``python -m benchmarks`` on the course machine, 1-2 MB blocks beat 256 KB ones: with smaller blocks Python's
#: per-call overhead and the threads' hand-offs of the GIL between NumPy calls start to dominate.
BLOCK_BYTES = 1024 * 1024
#: Below this many elements (4 MB of float32) one thread is faster: starting work on another costs ~50 microseconds.
PARALLEL_MIN_ELEMENTS = 1 << 20

_num_threads: int | None = None  # None: as many as the CPUs this process may run on
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """How many threads lnkit's NumPy norms use on large inputs (default: the CPUs this process may run on)."""
    return _num_threads if _num_threads is not None else _available_cpus()


def set_num_threads(n: int | None) -> int:
    """Use ``n`` threads for large inputs (``None``: back to the default). Returns the previous setting.

    Results do not depend on it: only which thread handles which block of rows changes.
    """
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None; got {n!r}.")
    previous = get_num_threads()
    _num_threads = n
    return previous


def _reset_pool_after_fork() -> None:
    # A forked child inherits the pool object but not its threads: it must build its own.
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _get_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool is None or _pool_size < threads:
            # a bigger pool replaces the old one; the old one's idle threads exit once nothing refers to it
            _pool, _pool_size = ThreadPoolExecutor(threads, thread_name_prefix="lnkit"), threads
        return _pool


def _block_rows(features: int, itemsize: int) -> int:
    return max(1, BLOCK_BYTES // (features * itemsize))


def _for_each_block(rows: int, features: int, work: np.dtype, kernel) -> int:
    """Call ``kernel(lo, hi)`` on consecutive blocks of rows covering ``range(rows)``; return the number of blocks.

    Block k always covers rows ``[k * b, (k + 1) * b)`` whatever the thread count, so a kernel that keeps per-block
    partial sums (the backward pass's gradients of gamma and beta) adds them up in the same order every time.
    """
    per_block = _block_rows(features, work.itemsize)
    n_blocks = -(-rows // per_block)
    threads = min(get_num_threads(), n_blocks) if rows * features >= PARALLEL_MIN_ELEMENTS else 1

    def run(first: int, last: int) -> None:  # blocks first..last-1, one after the other
        for k in range(first, last):
            kernel(k * per_block, min((k + 1) * per_block, rows))

    if threads <= 1:
        run(0, n_blocks)
        return n_blocks
    # each thread takes one contiguous run of blocks: one task per thread, not one per block
    edges = [n_blocks * t // threads for t in range(threads + 1)]
    try:
        futures = [_get_pool(threads).submit(run, a, b) for a, b in zip(edges[:-1], edges[1:])]
    except RuntimeError:  # no thread could be started (a sandbox's limits, interpreter shutdown): do it here
        run(0, n_blocks)
        return n_blocks
    for future in futures:
        future.result()
    return n_blocks


def _rows_view(x: np.ndarray, features: int) -> np.ndarray:
    """x as (rows, C): a view when x is contiguous, a copy otherwise (never written to either way)."""
    return x.reshape(-1, features)


def _in_work(block: np.ndarray, work: np.dtype) -> np.ndarray:
    """The block in the compute dtype: itself, or a small cached copy for float16 and integer inputs."""
    return block if block.dtype == work else block.astype(work)


def _centre_block(xb: np.ndarray, into: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write ``xb - mean`` into ``into``; return (mean, biased variance) of each row. Two passes, both in cache."""
    features = xb.shape[-1]
    # np.add.reduce is what x.mean(-1) uses: pairwise summation, so even a row of a million values far from zero
    # gets an accurate mean. (einsum("ij->i") is 2x faster here but sums in one long run, and is off by whole
    # units for such rows.)
    mean = np.add.reduce(xb, axis=-1)
    mean /= features
    np.subtract(xb, mean[:, None], out=into)
    var = np.einsum("ij,ij->i", into, into)
    var /= features
    return mean, var


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


def layer_norm_stats(x):
    """The mean and the biased variance of every row: ``x.mean(-1)``, ``x.var(-1)``, shapes ``x.shape[:-1]``.

    These are the statistics a LayerNorm computes: one (mean, variance) pair per row, that is, per token.
    Returned in x's floating dtype (float64 for integer input).
    """
    if _is_tensor(x):
        return _torch_backend().layer_norm_stats(x)
    x, work, out = _as_input(x)
    features = check_features(x.shape)
    x2 = _rows_view(x, features)
    mean, var = np.empty(len(x2), work), np.empty(len(x2), work)

    def kernel(lo, hi):
        xb = _in_work(x2[lo:hi], work)
        mean[lo:hi], var[lo:hi] = _centre_block(xb, np.empty_like(xb))

    _for_each_block(len(x2), features, work, kernel)
    shape = x.shape[:-1]
    return mean.reshape(shape).astype(out, copy=False), var.reshape(shape).astype(out, copy=False)


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
    x2 = _rows_view(x, features)
    y2 = np.empty(x2.shape, out)

    def kernel(lo, hi):
        xb = _in_work(x2[lo:hi], work)
        # Write into the output itself when it has the compute dtype; float16 output goes through a float32 block.
        yb = y2[lo:hi] if out == work else np.empty_like(xb)
        _, var = _centre_block(xb, yb)
        var += eps
        rstd = np.reciprocal(np.sqrt(var, out=var), out=var)
        yb *= rstd[:, None]  # every step from here on works in place on the cached block
        if gamma is not None:
            yb *= gamma
        if beta is not None:
            yb += beta
        if out != work:
            y2[lo:hi] = yb

    _for_each_block(len(x2), features, work, kernel)
    return y2.reshape(x.shape)


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
    x2 = _rows_view(x, features)
    y2 = np.empty(x2.shape, out)

    def kernel(lo, hi):
        xb = _in_work(x2[lo:hi], work)
        mean_square = np.einsum("ij,ij->i", xb, xb)
        mean_square /= features
        mean_square += eps
        rstd = np.reciprocal(np.sqrt(mean_square, out=mean_square), out=mean_square)
        if out == work:
            yb = np.multiply(xb, rstd[:, None], out=y2[lo:hi])
        else:
            yb = xb * rstd[:, None]
        if gamma is not None:
            yb *= gamma
        if out != work:
            y2[lo:hi] = yb

    _for_each_block(len(x2), features, work, kernel)
    return y2.reshape(x.shape)


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
    x2, dy2 = _rows_view(x, features), _rows_view(dout, features)
    dx2 = np.empty(x2.shape, out)
    per_block = _block_rows(features, work.itemsize)
    n_blocks = -(-len(x2) // per_block)
    # dgamma and dbeta sum over every row: each block writes its own partial sums, added up in block order at the
    # end, so the result does not depend on which thread ran which block.
    dgamma_parts = np.zeros((n_blocks, features), work)
    dbeta_parts = np.zeros((n_blocks, features), work)

    def kernel(lo, hi):
        k = lo // per_block
        xb, dyb = _in_work(x2[lo:hi], work), _in_work(dy2[lo:hi], work)
        xhat = np.empty_like(xb)
        _, var = _centre_block(xb, xhat)
        var += eps
        rstd = np.reciprocal(np.sqrt(var, out=var), out=var)
        xhat *= rstd[:, None]
        np.add.reduce(dyb, axis=0, out=dbeta_parts[k])
        np.einsum("ij,ij->j", dyb, xhat, out=dgamma_parts[k])
        dxb = dx2[lo:hi] if out == work else np.empty_like(xb)
        # g = dout * gamma lives in dx's block and is turned into dx in place; without gamma, g is dout (only read)
        g = np.multiply(dyb, gamma, out=dxb) if gamma is not None else dyb
        mean_g = np.add.reduce(g, axis=-1)
        mean_g /= features
        mean_gx = np.einsum("ij,ij->i", g, xhat)
        mean_gx /= features
        np.subtract(g, mean_g[:, None], out=dxb)
        xhat *= mean_gx[:, None]  # xhat is not needed any more: reuse it for xhat * mean(g * xhat)
        dxb -= xhat
        dxb *= rstd[:, None]
        if out != work:
            dx2[lo:hi] = dxb

    _for_each_block(len(x2), features, work, kernel)
    dgamma, dbeta = np.add.reduce(dgamma_parts, axis=0), np.add.reduce(dbeta_parts, axis=0)
    return dx2.reshape(x.shape), dgamma.astype(param_dtype, copy=False), dbeta.astype(param_dtype, copy=False)


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
