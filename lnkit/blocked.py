"""LayerNorm at speed (chapter 8): the formulas of :mod:`lnkit.norms`, run a cached block of rows at a time.

LayerNorm does a handful of flops per number it reads, so its time is set by how often it walks through main
memory, not by arithmetic. The textbook expression reads the whole tensor nine times and writes a full-size
temporary six times. Here the rows are cut into blocks of about 1 MB, small enough to stay in cache: each block is
read from memory once, every step runs on the cached block, in place, and the result is written straight into the
output array. Large inputs spread the blocks over threads (NumPy releases the GIL inside its loops).

Each row goes through the same NumPy operations as in :mod:`lnkit.norms`, in the same order, so its result does not
depend on the block size, on the number of threads, or on which of the two modules computed it: not by one bit.
(The backward pass's ``dgamma`` and ``dbeta`` sum over rows: one partial sum per block, added in block order.)

The functions here take inputs :mod:`lnkit.norms` has already checked: ``work`` is the dtype to compute in,
``out`` the dtype to return (:func:`lnkit._validate.compute_dtype`), ``gamma`` and ``beta`` are ``None`` or of
shape ``(C,)`` in ``work``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # concurrent.futures costs ~14 ms to import (it pulls in logging): only when threads are needed
    from concurrent.futures import ThreadPoolExecutor

#: Target size of one block of rows, in bytes of the compute dtype: about 340 GPT-2 rows. A block and its output
#: stay in cache (L2 or the much larger L3) while the five or six NumPy calls run over them. Measured with
#: ``python -m benchmarks`` on the course machine, 1-2 MB blocks beat 256 KB ones: with smaller blocks Python's
#: per-call overhead and the threads' hand-offs of the GIL between NumPy calls start to dominate.
BLOCK_BYTES = 1024 * 1024
#: Below this many elements (4 MB of float32) one thread is faster: starting work on another costs ~50 microseconds.
PARALLEL_MIN_ELEMENTS = 1 << 20
#: Below this many elements (8 KB of float32) the plain formulas of lnkit.norms are as fast or a few microseconds
#: faster: their full-size temporaries are small, and this module's bookkeeping costs more than it saves.
MIN_ELEMENTS = 1 << 11


def handles(*arrays: np.ndarray) -> bool:
    """Whether lnkit.norms hands these inputs (x first) to this module: when x is large enough for blocks to be
    faster, and when an input is not C-contiguous (NumPy then sums a row in another order; this module has always
    read such inputs, so their results stay as they were)."""
    return arrays[0].size >= MIN_ELEMENTS or not all(a.flags.c_contiguous for a in arrays)


# --- threads ------------------------------------------------------------------------------------------------------

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


# --- blocks of rows -----------------------------------------------------------------------------------------------


def _block_rows(features: int, itemsize: int) -> int:
    return max(1, BLOCK_BYTES // (features * itemsize))


def for_each_block(rows: int, features: int, work: np.dtype, kernel: Callable[[int, int], None]) -> int:
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


def _rstd(var: np.ndarray, eps: float) -> np.ndarray:
    """``1 / sqrt(var + eps)``, in place in ``var``."""
    var += eps
    return np.reciprocal(np.sqrt(var, out=var), out=var)


# --- the norms, block by block ------------------------------------------------------------------------------------


def layer_norm_stats(x: np.ndarray, work: np.dtype, out: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lnkit.norms.layer_norm_stats` a block at a time."""
    features = x.shape[-1]
    x2 = _rows_view(x, features)
    mean, var = np.empty(len(x2), work), np.empty(len(x2), work)

    def kernel(lo, hi):
        xb = _in_work(x2[lo:hi], work)
        mean[lo:hi], var[lo:hi] = _centre_block(xb, np.empty_like(xb))

    for_each_block(len(x2), features, work, kernel)
    shape = x.shape[:-1]
    return mean.reshape(shape).astype(out, copy=False), var.reshape(shape).astype(out, copy=False)


def layer_norm(x: np.ndarray, gamma, beta, eps: float, work: np.dtype, out: np.dtype) -> np.ndarray:
    """:func:`lnkit.norms.layer_norm` a block at a time."""
    features = x.shape[-1]
    x2 = _rows_view(x, features)
    y2 = np.empty(x2.shape, out)

    def kernel(lo, hi):
        xb = _in_work(x2[lo:hi], work)
        # Write into the output itself when it has the compute dtype; float16 output goes through a float32 block.
        yb = y2[lo:hi] if out == work else np.empty_like(xb)
        _, var = _centre_block(xb, yb)
        yb *= _rstd(var, eps)[:, None]  # every step from here on works in place on the cached block
        if gamma is not None:
            yb *= gamma
        if beta is not None:
            yb += beta
        if out != work:
            y2[lo:hi] = yb

    for_each_block(len(x2), features, work, kernel)
    return y2.reshape(x.shape)


def rms_norm(x: np.ndarray, gamma, eps: float, work: np.dtype, out: np.dtype) -> np.ndarray:
    """:func:`lnkit.norms.rms_norm` a block at a time."""
    features = x.shape[-1]
    x2 = _rows_view(x, features)
    y2 = np.empty(x2.shape, out)

    def kernel(lo, hi):
        xb = _in_work(x2[lo:hi], work)
        mean_square = np.einsum("ij,ij->i", xb, xb)
        mean_square /= features
        rstd = _rstd(mean_square, eps)
        if out == work:
            yb = np.multiply(xb, rstd[:, None], out=y2[lo:hi])
        else:
            yb = xb * rstd[:, None]
        if gamma is not None:
            yb *= gamma
        if out != work:
            y2[lo:hi] = yb

    for_each_block(len(x2), features, work, kernel)
    return y2.reshape(x.shape)


def layer_norm_backward(dout: np.ndarray, x: np.ndarray, gamma, eps: float, work: np.dtype, out: np.dtype,
                        param_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`lnkit.norms.layer_norm_backward` a block at a time; ``dgamma`` and ``dbeta`` in ``param_dtype``."""
    features = x.shape[-1]
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
        rstd = _rstd(var, eps)
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

    for_each_block(len(x2), features, work, kernel)
    dgamma, dbeta = np.add.reduce(dgamma_parts, axis=0), np.add.reduce(dbeta_parts, axis=0)
    return dx2.reshape(x.shape), dgamma.astype(param_dtype, copy=False), dbeta.astype(param_dtype, copy=False)
