"""lnkit's norms, checked against torch (code we did not write), on every path: NumPy, torch CPU, autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lnkit

RNG = np.random.default_rng(20161)  # Ba et al., 2016


def rand(*shape, dtype=np.float32, offset=0.0, scale=1.0):
    return (RNG.standard_normal(shape) * scale + offset).astype(dtype)


def torch_ln(x, gamma=None, beta=None, eps=1e-5):
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return F.layer_norm(t(x), (x.shape[-1],), t(gamma), t(beta), eps).numpy()


# --- forward values against torch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(768,), (3, 768), (2, 5, 768), (2, 3, 4, 17), (1, 1)])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_layer_norm_matches_torch(shape, dtype, tol):
    x = rand(*shape, dtype=dtype, scale=3.0, offset=0.5)
    gamma, beta = rand(shape[-1], dtype=dtype), rand(shape[-1], dtype=dtype)
    y = lnkit.layer_norm(x, gamma, beta)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, torch_ln(x, gamma, beta), atol=tol * 10, rtol=tol)
    np.testing.assert_allclose(lnkit.layer_norm(x), torch_ln(x), atol=tol * 10, rtol=tol)


def test_layer_norm_stats_match_torch_var_mean():
    x = rand(4, 9, 768, dtype=np.float64, offset=2.0, scale=5.0)
    mean, var = lnkit.layer_norm_stats(x)
    tvar, tmean = torch.var_mean(torch.from_numpy(x), dim=-1, correction=0)
    assert mean.shape == var.shape == (4, 9)
    np.testing.assert_allclose(mean, tmean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(var, tvar.numpy(), rtol=1e-12)
    # the biased variance: dividing by C - 1 would be off by a factor 768/767, far above this tolerance
    assert not np.allclose(var, torch.var(torch.from_numpy(x), dim=-1, correction=1).numpy(), rtol=1e-5)


def test_eps_sits_inside_the_square_root():
    # a row with tiny variance makes eps matter: 1/sqrt(var + eps) and 1/(sqrt(var) + eps) differ by orders
    x = np.array([[0.0, 1e-3, -1e-3, 2e-3]])
    expected = torch_ln(x, eps=1e-5)
    np.testing.assert_allclose(lnkit.layer_norm(x, eps=1e-5), expected, rtol=1e-12)
    np.testing.assert_allclose(lnkit.layer_norm(x, eps=0.1), torch_ln(x, eps=0.1), rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 768), (2, 3, 64)])
def test_rms_norm_matches_torch_rmsnorm(shape):
    x = rand(*shape, dtype=np.float64, offset=0.3)
    gamma = rand(shape[-1], dtype=np.float64)
    module = torch.nn.RMSNorm(shape[-1], eps=1e-6, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(gamma))
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(lnkit.rms_norm(x, gamma), expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lnkit.rms_norm(x, eps=1e-2), F.rms_norm(torch.from_numpy(x), (shape[-1],), eps=1e-2))


def test_layer_norm_is_rms_norm_of_the_centred_input():
    x = rand(6, 32, dtype=np.float64, offset=4.0)
    centred = x - x.mean(-1, keepdims=True)
    np.testing.assert_allclose(lnkit.layer_norm(x, eps=1e-5), lnkit.rms_norm(centred, eps=1e-5), rtol=1e-12)


# --- backward against autograd ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 768), (2, 3, 16), (16,)])
def test_layer_norm_backward_matches_autograd(shape):
    x, dout = rand(*shape, dtype=np.float64, offset=1.0, scale=2.0), rand(*shape, dtype=np.float64)
    gamma, beta = rand(shape[-1], dtype=np.float64), rand(shape[-1], dtype=np.float64)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    F.layer_norm(tx, (shape[-1],), tg, tb, 1e-5).backward(torch.from_numpy(dout))
    dx, dgamma, dbeta = lnkit.layer_norm_backward(dout, x, gamma)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dgamma, tg.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dbeta, tb.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_layer_norm_backward_without_gamma_is_the_gradient_at_gain_one():
    x, dout = rand(4, 12, dtype=np.float64), rand(4, 12, dtype=np.float64)
    ones = np.ones(12)
    for got, want in zip(lnkit.layer_norm_backward(dout, x), lnkit.layer_norm_backward(dout, x, ones)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_layer_norm_backward_float32_close_to_float64():
    x, dout, gamma = rand(64, 768, offset=3.0), rand(64, 768), rand(768)
    got = lnkit.layer_norm_backward(dout, x, gamma)
    want = lnkit.layer_norm_backward(*(a.astype(np.float64) for a in (dout, x, gamma)))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


# --- the torch path -----------------------------------------------------------------------------------------------


def test_torch_path_returns_tensors_and_matches_functional():
    x = torch.randn(3, 5, 64, dtype=torch.float64) * 2 + 1
    gamma, beta = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
    y = lnkit.layer_norm(x, gamma, beta)
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.dtype == x.dtype
    torch.testing.assert_close(y, F.layer_norm(x, (64,), gamma, beta), rtol=1e-12, atol=1e-12)
    mean, var = lnkit.layer_norm_stats(x)
    torch.testing.assert_close(var, x.var(-1, correction=0))
    torch.testing.assert_close(mean, x.mean(-1))
    torch.testing.assert_close(lnkit.rms_norm(x, gamma, eps=1e-6), F.rms_norm(x, (64,), gamma, eps=1e-6))
    np.testing.assert_allclose(lnkit.normalize_over(x, (0, 1)).numpy(), lnkit.normalize_over(x.numpy(), (0, 1)))


def test_torch_path_is_differentiable_and_passes_gradcheck():
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(6, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, g, b: lnkit.layer_norm(a, g, b), (x, gamma, beta))
    assert torch.autograd.gradcheck(lambda a, g: lnkit.rms_norm(a, g), (x, gamma))


def test_torch_backward_matches_autograd_of_functional():
    x = torch.randn(4, 7, 32, dtype=torch.float64, requires_grad=True)
    gamma = torch.randn(32, dtype=torch.float64, requires_grad=True)
    dout = torch.randn(4, 7, 32, dtype=torch.float64)
    F.layer_norm(x, (32,), gamma, None).backward(dout)
    dx, dgamma, dbeta = lnkit.layer_norm_backward(dout, x.detach(), gamma.detach())
    torch.testing.assert_close(dx, x.grad)
    torch.testing.assert_close(dgamma, gamma.grad)
    torch.testing.assert_close(dbeta, dout.sum((0, 1)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_half_precision_accumulates_in_float32(dtype):
    x = (torch.randn(8, 768) * 3 + 100).to(dtype)
    y = lnkit.layer_norm(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, F.layer_norm(x.float(), (768,)).to(dtype))


def test_gamma_may_be_numpy_for_a_tensor_input():
    x = torch.randn(2, 8, dtype=torch.float64)
    g = np.linspace(0.5, 2.0, 8)
    torch.testing.assert_close(lnkit.layer_norm(x, g), F.layer_norm(x, (8,), torch.from_numpy(g)))


# --- numerics and edge cases --------------------------------------------------------------------------------------


def test_rows_far_from_zero_stay_accurate_in_float32():
    x = rand(16, 768, offset=1e4, scale=1.0)
    mean, var = lnkit.layer_norm_stats(x)
    exact_var = x.astype(np.float64).var(-1)
    np.testing.assert_allclose(var, exact_var, rtol=1e-3)
    # the one-pass formula, computed in float32, is nowhere near: this is what lnkit must not do
    naive = (x * x).mean(-1) - x.mean(-1) ** 2
    assert np.abs(naive - exact_var).max() > 10 * np.abs(var - exact_var).max()
    y, ref = lnkit.layer_norm(x), lnkit.layer_norm(x.astype(np.float64))
    assert np.abs(y - ref).max() < 5e-3  # float32 cannot represent 1e4 + x to better than ~1e-3


def test_constant_rows_give_beta_not_nan():
    beta = np.arange(5, dtype=np.float32)
    for value in (0.0, 1.0, 0.1, -3e4):
        x = np.full((3, 5), value, dtype=np.float32)
        y = lnkit.layer_norm(x, np.full(5, 2.0, np.float32), beta)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, np.broadcast_to(beta, (3, 5)), atol=1e-3)
    assert np.isfinite(lnkit.rms_norm(np.zeros((2, 4)))).all()


def test_float16_is_computed_in_float32_and_returned_as_float16():
    x = rand(4, 768, offset=200.0, scale=10.0).astype(np.float16)
    y = lnkit.layer_norm(x)
    assert y.dtype == np.float16
    mean, var = lnkit.layer_norm_stats(x)
    assert mean.dtype == var.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), torch_ln(x.astype(np.float32)), atol=4e-3)
    # a float16 sum of 768 values near 200 overflows past 65504; lnkit's must not
    assert np.isfinite(mean).all() and np.abs(mean.astype(np.float64) - x.astype(np.float64).mean(-1)).max() < 0.2


def test_integer_input_is_normalized_as_float64():
    y = lnkit.layer_norm(np.array([[1, 2, 3, 4]]))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, torch_ln(np.array([[1.0, 2.0, 3.0, 4.0]])), rtol=1e-12)


@pytest.mark.parametrize("fn", [lnkit.layer_norm, lnkit.rms_norm, lnkit.layer_norm_stats])
def test_zero_rows_give_empty_results(fn):
    out = fn(np.zeros((0, 768), dtype=np.float32))
    for a in out if isinstance(out, tuple) else (out,):
        assert a.shape[0] == 0 and a.dtype == np.float32


def test_inputs_are_never_modified():
    x, g, b, dout = rand(3, 8), rand(8), rand(8), rand(3, 8)
    copies = [a.copy() for a in (x, g, b, dout)]
    lnkit.layer_norm(x, g, b)
    lnkit.layer_norm_stats(x)
    lnkit.rms_norm(x, g)
    lnkit.layer_norm_backward(dout, x, g)
    lnkit.normalize_over(x, 0)
    for a, c in zip((x, g, b, dout), copies):
        np.testing.assert_array_equal(a, c)
    t = torch.from_numpy(x.copy())
    lnkit.layer_norm(t)
    np.testing.assert_array_equal(t.numpy(), x)


# --- normalize_over and count_statistics -----------------------------------------------------------------------


def test_normalize_over_last_axis_is_layer_norm():
    x = rand(2, 5, 16, dtype=np.float64)
    np.testing.assert_allclose(lnkit.normalize_over(x, -1), lnkit.layer_norm(x), rtol=1e-13)
    np.testing.assert_allclose(lnkit.normalize_over(x, (2,)), lnkit.layer_norm(x), rtol=1e-13)


def test_normalize_over_batch_and_tokens_is_batch_norm():
    x = rand(4, 6, 8, dtype=np.float64, offset=1.0)
    bn = torch.nn.BatchNorm1d(8, eps=1e-5, affine=False, dtype=torch.float64).train()
    expected = bn(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).detach().numpy()  # BN wants (N, C, L)
    np.testing.assert_allclose(lnkit.normalize_over(x, (0, 1)), expected, rtol=1e-10, atol=1e-12)


def test_normalize_over_whole_tensor_and_per_feature():
    x = rand(3, 4, 5, dtype=np.float64)
    whole = lnkit.normalize_over(x, (0, 1, 2))
    np.testing.assert_allclose(whole, (x - x.mean()) / np.sqrt(x.var() + 1e-5), rtol=1e-12)
    per_feature = lnkit.normalize_over(x, 1, eps=0.0)
    np.testing.assert_allclose(per_feature.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(per_feature.var(1), 1, rtol=1e-12)


@pytest.mark.parametrize(
    "shape,axes,expected",
    [
        ((8, 1024, 768), -1, 8 * 1024),  # LayerNorm: one per token
        ((8, 1024, 768), (0, 1), 768),  # BatchNorm-style: one per feature
        ((8, 1024, 768), 1, 8 * 768),  # per feature, across the tokens of one sequence
        ((8, 1024, 768), (0, 1, 2), 1),  # the whole tensor
        ((1, 1024, 768), (-1,), 1024),
    ],
)
def test_count_statistics(shape, axes, expected):
    assert lnkit.count_statistics(shape, axes) == expected
    x = np.zeros([min(d, 3) for d in shape])
    # the count agrees with the number of distinct statistics normalize_over actually uses
    axes_t = (axes,) if isinstance(axes, int) else axes
    assert lnkit.count_statistics(x.shape, axes) == x.mean(axis=axes_t).size


# --- property-based -----------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    lead=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    features=st.integers(1, 40),
    offset=st.sampled_from([0.0, 1.0, -50.0, 1e3]),
    scale=st.sampled_from([1e-2, 1.0, 1e2]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_norm_property_matches_torch(lead, features, offset, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (*lead, features)
    x = (rng.standard_normal(shape) * scale + offset).astype(dtype)
    gamma, beta = rng.standard_normal(features).astype(dtype), rng.standard_normal(features).astype(dtype)
    y = lnkit.layer_norm(x, gamma, beta)
    assert y.shape == shape and y.dtype == dtype
    # float32 error grows with offset/scale: the representable resolution of the input itself
    tol = 1e-10 if dtype == np.float64 else 2e-5 * (1 + abs(offset) / scale)
    np.testing.assert_allclose(y, torch_ln(x, gamma, beta), atol=tol * (1 + np.abs(gamma).max()), rtol=0)
    if features > 1 and x.size:
        xhat = lnkit.layer_norm(x.astype(np.float64), eps=0.0)
        nonconstant = x.astype(np.float64).std(-1) > 0
        np.testing.assert_allclose(xhat.mean(-1)[nonconstant], 0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    data=st.data(),
)
def test_normalize_over_property(shape, data):
    ndim = len(shape)
    axes = data.draw(st.sets(st.integers(0, ndim - 1), min_size=1).map(sorted))
    x = np.random.default_rng(0).standard_normal(shape)
    y = lnkit.normalize_over(x, tuple(axes))
    assert y.shape == x.shape
    np.testing.assert_allclose(y.mean(axis=tuple(axes)), 0, atol=1e-12)
    assert lnkit.count_statistics(shape, axes) == x.mean(axis=tuple(axes)).size


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_backward_property_matches_autograd(shape, seed):
    rng = np.random.default_rng(seed)
    x, dout = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    gamma = rng.standard_normal(shape[-1])
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(gamma, requires_grad=True)
    F.layer_norm(tx, (shape[-1],), tg, None).backward(torch.from_numpy(dout))
    dx, dgamma, _ = lnkit.layer_norm_backward(dout, x, gamma)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-9)
    np.testing.assert_allclose(dgamma, tg.grad.numpy(), atol=1e-9)


# --- errors name the argument and what was expected ---------------------------------------------------------------


@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda: lnkit.layer_norm(np.ones((2, 8)), np.ones(7)), ValueError, ["gamma", "(8,)", "(7,)"]),
        (lambda: lnkit.layer_norm(np.ones((2, 8)), None, np.ones((2, 8))), ValueError, ["beta", "(8,)", "(2, 8)"]),
        (lambda: lnkit.rms_norm(np.ones((2, 8)), np.ones(3)), ValueError, ["gamma", "(8,)"]),
        (lambda: lnkit.layer_norm(np.ones((4, 0))), ValueError, ["x", "C >= 1", "(4, 0)"]),
        (lambda: lnkit.layer_norm(np.float32(3.0)), ValueError, ["x", "at least one axis"]),
        (lambda: lnkit.layer_norm(np.ones(4, dtype=complex)), TypeError, ["x", "complex"]),
        (lambda: lnkit.layer_norm(np.array(["a", "b"])), TypeError, ["x", "string"]),
        (lambda: lnkit.layer_norm(np.ones(4, dtype=bool)), TypeError, ["x", "bool"]),
        (lambda: lnkit.layer_norm(np.ones(4), np.ones(4, dtype=complex)), TypeError, ["gamma", "complex"]),
        (lambda: lnkit.layer_norm(np.ones(4), eps=-1.0), ValueError, ["eps", ">= 0"]),
        (lambda: lnkit.layer_norm(np.ones(4), eps=float("nan")), ValueError, ["eps"]),
        (lambda: lnkit.normalize_over(np.ones((2, 3)), 2), ValueError, ["axes", "out of range", "2 axes"]),
        (lambda: lnkit.normalize_over(np.ones((2, 3)), (1, -1)), ValueError, ["axes", "repeat"]),
        (lambda: lnkit.normalize_over(np.ones((2, 3)), ()), ValueError, ["axes", "at least one"]),
        (lambda: lnkit.normalize_over(np.ones((2, 3)), 1.5), TypeError, ["axes"]),
        (lambda: lnkit.normalize_over(np.ones((2, 0)), 1), ValueError, ["at least one element"]),
        (lambda: lnkit.count_statistics((2, 3), 5), ValueError, ["axes", "out of range"]),
        (lambda: lnkit.count_statistics((2, -3), 0), ValueError, ["shape", "non-negative"]),
        (lambda: lnkit.count_statistics(7, 0), TypeError, ["shape"]),
        (lambda: lnkit.layer_norm_backward(np.ones((2, 4)), np.ones((2, 5))), ValueError, ["dout", "(2, 5)"]),
        (lambda: lnkit.layer_norm(torch.ones(2, 8), torch.ones(7)), ValueError, ["gamma", "(8,)", "(7,)"]),
        (lambda: lnkit.layer_norm(torch.ones(2, 4, dtype=torch.complex64)), TypeError, ["x", "complex"]),
        (lambda: lnkit.normalize_over(torch.ones(2, 3), (0, 0)), ValueError, ["axes", "repeat"]),
    ],
)
def test_errors_name_the_argument_and_what_was_expected(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"
