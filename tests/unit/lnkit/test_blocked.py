"""The fast NumPy path, lnkit.blocked: row blocks and threads change the speed, never the result.

tests/unit/lnkit/test_norms.py checks the values against torch; these tests check the machinery that makes them fast:
blocks whose row count does not divide the input, a single row, float16 and integer inputs going through float32/float64
blocks, threads on and off, a process forked after the thread pool started, and the plain formulas of lnkit.norms
giving the same bits as the blocks.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

import lnkit
from lnkit import blocked

RNG = np.random.default_rng(8)


def textbook(x, gamma, beta, eps=1e-5):
    x = x.astype(np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def all_outputs(x, dout, gamma, beta):
    """Every NumPy-path function's output, flattened into one list of arrays."""
    outs = [lnkit.layer_norm(x, gamma, beta), lnkit.layer_norm(x), lnkit.rms_norm(x, gamma), lnkit.rms_norm(x)]
    outs += list(lnkit.layer_norm_stats(x))
    outs += list(lnkit.layer_norm_backward(dout, x, gamma)) + list(lnkit.layer_norm_backward(dout, x))
    return outs


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 3 rows (for C = 16 float32) and threads on, whatever the size of the input."""
    monkeypatch.setattr(blocked, "BLOCK_BYTES", 3 * 16 * 4)
    monkeypatch.setattr(blocked, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(blocked, "PARALLEL_MIN_ELEMENTS", 0)
    previous = blocked.set_num_threads(None)
    yield
    blocked.set_num_threads(previous)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 9, 10])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_row_counts_that_do_not_divide_the_block_size(tiny_blocks, rows, threads):
    assert blocked._block_rows(16, 4) == 3
    blocked.set_num_threads(threads)
    x = (RNG.standard_normal((rows, 16)) * 3 + 2).astype(np.float32)
    dout = RNG.standard_normal((rows, 16)).astype(np.float32)
    gamma, beta = RNG.standard_normal(16).astype(np.float32), RNG.standard_normal(16).astype(np.float32)
    y = lnkit.layer_norm(x, gamma, beta)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, textbook(x, gamma, beta), atol=1e-5)
    mean, var = lnkit.layer_norm_stats(x)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(var, x.astype(np.float64).var(-1), rtol=1e-5)
    # the gradients of gamma and beta sum over rows that were spread across several blocks (and threads)
    x64, d64, g64 = (a.astype(np.float64) for a in (x, dout, gamma))
    for got, want in zip(lnkit.layer_norm_backward(dout, x, gamma), lnkit.layer_norm_backward(d64, x64, g64)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lnkit.layer_norm_backward(dout, x)[2], d64.sum(0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
def test_threads_on_and_off_give_identical_bits(tiny_blocks, dtype):
    shape = (5, 4, 16)  # 20 rows: 7 blocks of 3 rows, the last one short
    x = (RNG.standard_normal(shape) * 4 + 1).astype(dtype) if dtype != np.int64 else RNG.integers(-9, 9, shape)
    dout = RNG.standard_normal(shape).astype(dtype if dtype != np.int64 else np.float64)
    gamma, beta = RNG.standard_normal(16).astype(np.float32), RNG.standard_normal(16).astype(np.float32)
    blocked.set_num_threads(1)
    one = all_outputs(x, dout, gamma, beta)
    for n in (2, 3, 8):
        blocked.set_num_threads(n)
        for a, b in zip(one, all_outputs(x, dout, gamma, beta)):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_block_size_does_not_change_the_forward_values(monkeypatch):
    x = (RNG.standard_normal((37, 64)) * 2 + 5).astype(np.float32)
    gamma, beta = RNG.standard_normal(64).astype(np.float32), RNG.standard_normal(64).astype(np.float32)
    whole = lnkit.layer_norm(x, gamma, beta)
    monkeypatch.setattr(blocked, "MIN_ELEMENTS", 0)
    for rows in (1, 2, 5, 36, 37, 100):
        monkeypatch.setattr(blocked, "BLOCK_BYTES", rows * 64 * 4)
        np.testing.assert_allclose(lnkit.layer_norm(x, gamma, beta), whole, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lnkit.rms_norm(x, gamma), lnkit.rms_norm(x.astype(np.float64), gamma), rtol=1e-5)


def test_float16_and_integers_through_blocks(tiny_blocks):
    blocked.set_num_threads(2)
    x16 = (RNG.standard_normal((11, 16)) * 10 + 300).astype(np.float16)
    y = lnkit.layer_norm(x16)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), textbook(x16, 1.0, 0.0), atol=4e-3)
    dx, dg, db = lnkit.layer_norm_backward(x16, x16)
    assert dx.dtype == dg.dtype == db.dtype == np.float16
    xi = RNG.integers(-100, 100, (10, 16))
    yi = lnkit.layer_norm(xi)
    assert yi.dtype == np.float64
    np.testing.assert_allclose(yi, textbook(xi, 1.0, 0.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lnkit.rms_norm(xi), xi / np.sqrt((xi.astype(float) ** 2).mean(-1, keepdims=True) + 1e-6))


def test_non_contiguous_inputs_are_read_not_written(tiny_blocks):
    blocked.set_num_threads(2)
    base = (RNG.standard_normal((16, 20)) * 2).astype(np.float32)
    x = base.T[:, :16]  # (20, 16), not contiguous
    saved = base.copy()
    np.testing.assert_allclose(lnkit.layer_norm(x), textbook(x, 1.0, 0.0), atol=1e-5)
    lnkit.layer_norm_backward(x, x)
    lnkit.rms_norm(x)
    np.testing.assert_array_equal(base, saved)


def test_a_single_row_and_no_rows(tiny_blocks):
    blocked.set_num_threads(4)
    v = RNG.standard_normal(16).astype(np.float32)
    np.testing.assert_allclose(lnkit.layer_norm(v), textbook(v, 1.0, 0.0), atol=1e-5)
    mean, var = lnkit.layer_norm_stats(v)
    assert mean.shape == var.shape == ()
    empty = np.zeros((0, 3, 16), np.float32)
    dx, dg, db = lnkit.layer_norm_backward(empty, empty)
    assert dx.shape == empty.shape and dg.shape == db.shape == (16,) and not dg.any()


def test_set_num_threads():
    previous = blocked.set_num_threads(3)
    try:
        assert blocked.get_num_threads() == 3
        assert blocked.set_num_threads(None) == 3
        assert blocked.get_num_threads() >= 1
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="positive int"):
                blocked.set_num_threads(bad)
    finally:
        blocked.set_num_threads(previous)


def _child(queue):
    x = np.arange(64 * 16, dtype=np.float32).reshape(64, 16)
    queue.put(float(np.abs(lnkit.layer_norm(x)).sum()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_threads_work_in_a_process_forked_after_they_started(tiny_blocks):
    blocked.set_num_threads(2)
    lnkit.layer_norm(np.ones((64, 16), np.float32))  # starts the pool in this process
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0, "the forked child hung or crashed using the thread pool"
    assert queue.get(timeout=5) > 0


def test_very_long_rows_far_from_zero_keep_an_accurate_mean():
    # a row of a million float32 values near 1e4: a single running sum drifts by whole units, a pairwise sum does not
    x = (1e4 + RNG.standard_normal((2, 1 << 20))).astype(np.float32)
    mean, var = lnkit.layer_norm_stats(x)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(mean, exact.mean(-1), atol=5e-3)
    np.testing.assert_allclose(var, exact.var(-1), rtol=1e-3)
    y = lnkit.layer_norm(x)
    assert np.abs(y.astype(np.float64).mean(-1)).max() < 1e-2


def test_falls_back_to_one_thread_when_no_thread_can_start(tiny_blocks, monkeypatch):
    x = RNG.standard_normal((10, 16)).astype(np.float32)
    blocked.set_num_threads(1)
    expected = lnkit.layer_norm(x)

    def no_threads(threads):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(blocked, "_get_pool", no_threads)
    blocked.set_num_threads(4)
    np.testing.assert_array_equal(lnkit.layer_norm(x), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
@pytest.mark.parametrize("shape", [(16,), (1, 16), (5, 4, 16), (3, 0, 16), (40, 96)])
def test_the_plain_formulas_and_the_blocks_give_the_same_bits(monkeypatch, dtype, shape):
    """lnkit.norms computes small inputs with its plain formulas and hands large ones to lnkit.blocked: a row must
    come out the same either way. With the whole input in one block, so do the sums over rows (dgamma, dbeta)."""
    x = (RNG.standard_normal(shape) * 4 + 3).astype(dtype) if dtype != np.int64 else RNG.integers(-9, 9, shape)
    dout = RNG.standard_normal(shape).astype(dtype if dtype != np.int64 else np.float64)
    gamma, beta = RNG.standard_normal(shape[-1]).astype(np.float32), RNG.standard_normal(shape[-1]).astype(np.float32)
    monkeypatch.setattr(blocked, "MIN_ELEMENTS", 1 << 62)
    plain = all_outputs(x, dout, gamma, beta)
    monkeypatch.setattr(blocked, "MIN_ELEMENTS", 0)
    for float64_rows in (3, 1000):  # blocks of 3 float64 (6 float32) rows, then one block for the whole input
        monkeypatch.setattr(blocked, "BLOCK_BYTES", float64_rows * shape[-1] * 8)
        several_blocks = float64_rows == 3 and np.prod(shape[:-1]) > 3
        for i, (a, b) in enumerate(zip(plain, all_outputs(x, dout, gamma, beta))):
            assert a.dtype == b.dtype and a.shape == b.shape
            if several_blocks and i in (7, 8, 10, 11):  # dgamma and dbeta: sums of per-block sums
                np.testing.assert_allclose(a, b, rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-3)
            else:
                np.testing.assert_array_equal(a, b)


def test_only_small_contiguous_inputs_take_the_plain_formulas():
    small, large = np.ones((4, 16)), np.ones((blocked.MIN_ELEMENTS // 16, 16))
    assert not blocked.handles(small) and blocked.handles(large)
    assert blocked.handles(small.T.copy().T) and blocked.handles(small[:, ::2])  # their sums run in another order
    assert blocked.handles(small, small[:, ::2]) and not blocked.handles(small, small)
