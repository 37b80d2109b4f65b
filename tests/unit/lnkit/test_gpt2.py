"""lnkit.gpt2 against Hugging Face transformers' GPT2Model, code we did not write.

Every model here has random weights (nothing is downloaded). transformers initializes the LayerNorm gains to 1 and
every bias to 0, which would let a dropped gamma or beta go unnoticed, so all of those are randomized too.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lnkit.gpt2 import GPT2, GPT2Config  # noqa: E402

SMALL = dict(n_layer=3, n_embd=64, n_head=4, n_positions=64, vocab_size=500, bos_token_id=0, eos_token_id=0)


def _is_ln_param(name: str) -> bool:
    return name.startswith("ln_") or ".ln_" in name


def _randomize_(model, seed: int = 1):
    """Gains ~ N(1, 0.1), LayerNorm biases ~ N(0, 0.1), every other bias ~ N(0, 0.02) (all start at 1 or 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if _is_ln_param(name):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1, generator=gen)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02, generator=gen)
    return model


def _hf_model(cls=None, seed: int = 0, **config):
    torch.manual_seed(seed)
    cls = cls or transformers.GPT2Model
    return _randomize_(cls(transformers.GPT2Config(**config)), seed + 1).eval()


def _hf_hidden(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(ids)).last_hidden_state.numpy()


def _hooked(model, ids):
    """Run the transformers model with a forward hook on every nn.LayerNorm: [(module name, its input)] in call
    order."""
    seen, handles = [], []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            handles.append(module.register_forward_hook(lambda m, inp, out, name=name: seen.append((name, inp[0]))))
    try:
        hidden = _hf_hidden(model, ids)
    finally:
        for h in handles:
            h.remove()
    return hidden, seen


def _ids(shape, vocab_size, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, size=shape)


def _max_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# --- fixtures: each expensive model is built once per module ----------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_small_hf():
    """GPT-2 small (12 layers, 768 features, 12 heads), float32, random weights."""
    return _hf_model()


@pytest.fixture(scope="module")
def gpt2_small(gpt2_small_hf):
    return GPT2.from_transformers(gpt2_small_hf)


@pytest.fixture(scope="module")
def small_hf():
    """A 3-layer, 64-feature GPT-2, float32."""
    return _hf_model(**SMALL)


@pytest.fixture(scope="module")
def small_hf64(small_hf):
    return copy.deepcopy(small_hf).double()


# --- hidden states ------------------------------------------------------------------------------------------------


def test_matches_transformers_float64_gpt2_small(gpt2_small_hf):
    """Full GPT-2 small in float64: the NumPy forward pass is transformers' to ~1e-9 (a wiring, gamma, beta, eps,
    GELU or attention mistake shows up many orders of magnitude above that)."""
    hf = copy.deepcopy(gpt2_small_hf).double()
    model = GPT2.from_transformers(hf)
    assert model.params["h.0.ln_1.weight"].dtype == np.float64  # from_transformers keeps the dtype
    ids = _ids((2, 16), 50257)
    ours, theirs = model(ids), _hf_hidden(hf, ids)
    assert ours.shape == theirs.shape == (2, 16, 768)
    err = _max_err(ours, theirs)
    assert err < 1e-9, f"max abs error vs transformers (float64, GPT-2 small): {err:.3e}"


def test_matches_transformers_float32_small_config(small_hf):
    """A small config in float32 agrees with transformers to ~1e-4."""
    model = GPT2.from_transformers(small_hf)
    ids = _ids((3, 40), SMALL["vocab_size"], seed=1)
    ours, theirs = model(ids), _hf_hidden(small_hf, ids)
    assert ours.shape == theirs.shape == (3, 40, 64)
    err = _max_err(ours, theirs)
    assert err < 1e-4, f"max abs error vs transformers (float32, small config): {err:.3e}"


def test_loads_gpt2_lm_head_model_too():
    """from_transformers also accepts a GPT2LMHeadModel (its weights live under 'transformer.')."""
    lm = _hf_model(transformers.GPT2LMHeadModel, seed=3, **SMALL).double()
    ids = _ids((2, 12), SMALL["vocab_size"], seed=2)
    err = _max_err(GPT2.from_transformers(lm)(ids), _hf_hidden(lm.transformer, ids))
    assert err < 1e-10, f"max abs error vs GPT2LMHeadModel.transformer: {err:.3e}"


def test_batch_independence(small_hf64):
    """LayerNorm statistics are per token: sequence 0 gives the same hidden states alone or batched with others."""
    model = GPT2.from_transformers(small_hf64)
    ids = _ids((4, 20), SMALL["vocab_size"], seed=4)
    alone, batched = model(ids[:1]), model(ids)
    err = _max_err(alone[0], batched[0])
    assert err < 1e-12, f"sequence 0 changes when batched with others: max abs difference {err:.3e}"
    # ... and the batch really holds different sequences (the comparison is not trivially true)
    assert _max_err(batched[0], batched[1]) > 1e-3


# --- counting the statistics --------------------------------------------------------------------------------------


def _check_calls_against_hooks(calls, seen, rows: int):
    """The NumPy model's LayerNorm calls are the transformers model's, one for one: same names, same order, the same
    number of (mean, variance) pairs, and the same values as torch.var_mean of the hooked inputs."""
    assert [c.name for c in calls] == [name for name, _ in seen]
    for call, (name, inp) in zip(calls, seen):
        assert call.n_statistics == rows, f"{name}: {call.n_statistics} statistics, expected {rows}"
        var, mean = torch.var_mean(inp.double(), dim=-1, correction=0)
        assert call.mean.shape == tuple(mean.shape) and call.var.shape == tuple(var.shape), name
        np.testing.assert_allclose(call.mean, mean.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"mean at {name}")
        np.testing.assert_allclose(call.var, var.numpy(), rtol=1e-4, atol=1e-7, err_msg=f"variance at {name}")


@pytest.mark.slow
def test_gpt2_small_computes_25600_statistics_for_1024_tokens(gpt2_small_hf, gpt2_small):
    """One 1024-token sequence through GPT-2 small: transformers applies LayerNorm 25 times (ln_1 and ln_2 in each of
    the 12 blocks, then ln_f), each on 1024 rows of 768 features, so 25 * 1024 = 25,600 (mean, variance) pairs; the
    NumPy model records exactly these calls with exactly these statistics."""
    ids = _ids((1, 1024), 50257, seed=5)
    theirs, seen = _hooked(gpt2_small_hf, ids)
    expected_names = [f"h.{i}.ln_{j}" for i in range(12) for j in (1, 2)] + ["ln_f"]
    assert [name for name, _ in seen] == expected_names
    assert all(tuple(inp.shape) == (1, 1024, 768) for _, inp in seen)
    assert sum(inp[..., 0].numel() for _, inp in seen) == 25 * 1024 == 25_600

    calls = []
    ours = gpt2_small(ids, on_layer_norm=calls.append)
    _check_calls_against_hooks(calls, seen, rows=1024)
    assert sum(c.n_statistics for c in calls) == 25_600
    err = _max_err(ours, theirs)
    assert err < 1e-4, f"max abs error vs transformers at T=1024 (float32): {err:.3e}"


def test_batch_of_three_gives_three_times_the_statistics(gpt2_small_hf, gpt2_small):
    """Three sequences give three times the (mean, variance) pairs of one: one pair per token of every sequence."""
    totals = {}
    for batch in (1, 3):
        ids = _ids((batch, 32), 50257, seed=6)
        _, seen = _hooked(gpt2_small_hf, ids)
        assert len(seen) == 25 and all(tuple(inp.shape) == (batch, 32, 768) for _, inp in seen)
        calls = []
        gpt2_small(ids, on_layer_norm=calls.append)
        _check_calls_against_hooks(calls, seen, rows=batch * 32)
        totals[batch] = sum(c.n_statistics for c in calls)
    assert totals == {1: 25 * 32, 3: 3 * 25 * 32}


# --- post-LN --------------------------------------------------------------------------------------------------------


def test_post_ln_records_24_calls_without_ln_f(gpt2_small_hf):
    """Post-LN GPT-2 small normalizes after each of the 24 sublayers and has no final LayerNorm."""
    model = GPT2.from_transformers(gpt2_small_hf, norm_first=False)
    assert model.config.norm_first is False
    calls = []
    model(_ids((2, 8), 50257, seed=7), on_layer_norm=calls.append)
    assert [c.name for c in calls] == [f"h.{i}.ln_{j}" for i in range(12) for j in (1, 2)]
    assert all(c.n_statistics == 2 * 8 for c in calls)


def test_post_ln_matches_transformers_blocks_rewired(small_hf64):
    """Post-LN hidden states equal transformers' own block pieces (attn, mlp, ln_1, ln_2) wired as
    x = ln(x + sublayer(x)), with no ln_f. The same pieces wired pre-LN reproduce GPT2Model first, which shows the
    pieces are called correctly (causal attention included)."""
    hf = small_hf64
    ids = _ids((2, 24), SMALL["vocab_size"], seed=8)
    t = torch.tensor(ids)

    def rewired(norm_first: bool) -> np.ndarray:
        with torch.no_grad():
            x = hf.wte(t) + hf.wpe(torch.arange(t.shape[1]))[None]
            for block in hf.h:
                attn = lambda z, b=block: b.attn(z)[0]  # noqa: E731
                for sublayer, ln in ((attn, block.ln_1), (block.mlp, block.ln_2)):
                    x = x + sublayer(ln(x)) if norm_first else ln(x + sublayer(x))
            return (hf.ln_f(x) if norm_first else x).numpy()

    harness_err = _max_err(rewired(True), _hf_hidden(hf, ids))
    assert harness_err < 1e-12, f"the rewired reference does not reproduce GPT2Model: {harness_err:.3e}"

    post = GPT2.from_transformers(hf, norm_first=False)
    err = _max_err(post(ids), rewired(False))
    assert err < 1e-10, f"max abs error vs transformers blocks wired post-LN (float64): {err:.3e}"
    assert _max_err(post(ids), _hf_hidden(hf, ids)) > 1e-2  # post-LN really is a different model


# --- parameter counts -----------------------------------------------------------------------------------------------


def test_num_parameters_match_transformers(gpt2_small_hf, gpt2_small):
    """GPT-2 small has 38,400 LayerNorm parameters (25 LayerNorms x (768 gains + 768 biases)), the same count as
    transformers' nn.LayerNorm modules, and num_parameters() is transformers' total."""
    hf_ln = sum(p.numel() for m in gpt2_small_hf.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters())
    hf_total = sum(p.numel() for p in gpt2_small_hf.parameters())
    assert gpt2_small.num_parameters(layer_norm_only=True) == hf_ln == 25 * 2 * 768 == 38_400
    assert gpt2_small.num_parameters() == hf_total == 124_439_808


def test_num_parameters_post_ln_leaves_out_ln_f(gpt2_small_hf):
    """In post-LN, ln_f is never applied, so its 1,536 parameters are not counted."""
    post = GPT2.from_transformers(gpt2_small_hf, norm_first=False)
    assert post.num_parameters(layer_norm_only=True) == 24 * 2 * 768 == 36_864
    assert post.num_parameters() == sum(p.numel() for p in gpt2_small_hf.parameters()) - 2 * 768


# --- error messages -------------------------------------------------------------------------------------------------

TINY = GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=16, vocab_size=50)


@pytest.fixture(scope="module")
def tiny():
    return GPT2.init_random(TINY)


def test_config_rejects_n_embd_not_divisible_by_n_head():
    """n_embd must split evenly across the heads; the message names n_embd."""
    with pytest.raises(ValueError, match="n_embd"):
        GPT2Config(n_embd=10, n_head=3)


@pytest.mark.parametrize("field", ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"])
def test_config_rejects_non_positive_sizes(field):
    """Every size must be a positive int; the message names the field."""
    with pytest.raises(ValueError, match=field):
        GPT2Config(**{field: 0})


def test_missing_parameter_is_named(tiny):
    """A params dict without one of GPT-2's parameters is refused, naming it."""
    params = dict(tiny.params)
    del params["h.0.ln_1.weight"]
    with pytest.raises(ValueError, match=r"h\.0\.ln_1\.weight"):
        GPT2(TINY, params)


@pytest.mark.parametrize("name", ["ln_f.bias", "h.0.attn.c_attn.weight", "wpe.weight"])
def test_wrong_shaped_parameter_is_named(tiny, name):
    """A parameter of the wrong shape is refused, naming it."""
    params = dict(tiny.params)
    params[name] = np.zeros(params[name].shape[::-1] if params[name].ndim == 2 else (3,))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        GPT2(TINY, params)


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(np.array([[1, 2, TINY.vocab_size]]), id="out-of-vocab"),
        pytest.param(np.array([[1, -1, 2]]), id="negative"),
        pytest.param(np.zeros((1, TINY.n_positions + 1), dtype=np.int64), id="too-long"),
        pytest.param(np.zeros((1, 0), dtype=np.int64), id="empty"),
        pytest.param(np.array([1, 2, 3]), id="1-d"),
        pytest.param(np.zeros((1, 2, 3), dtype=np.int64), id="3-d"),
        pytest.param(np.array([[1.0, 2.0]]), id="float"),
    ],
)
def test_bad_input_ids_raise_value_error_naming_input_ids(tiny, ids):
    """Bad token ids are refused with a ValueError that names input_ids (not an IndexError from deep inside)."""
    with pytest.raises(ValueError, match="input_ids"):
        tiny(ids)


# --- dtype and unsupported configurations ---------------------------------------------------------------------------


def test_float32_model_stays_float32(small_hf):
    """from_transformers keeps the dtype of the weights, so a float32 model should compute and return float32."""
    out = GPT2.from_transformers(small_hf)(_ids((1, 5), SMALL["vocab_size"]))
    assert out.dtype == np.float32


@pytest.mark.parametrize("option", [dict(scale_attn_by_inverse_layer_idx=True), dict(scale_attn_weights=False)])
def test_unsupported_attention_scaling_is_refused_or_matched(option):
    """A transformers config lnkit does not implement must be refused (as a non-GELU activation is), never silently
    give different hidden states."""
    hf = _hf_model(seed=9, **SMALL, **option).double()
    try:
        model = GPT2.from_transformers(hf)
    except ValueError:
        return
    ids = _ids((1, 10), SMALL["vocab_size"])
    err = _max_err(model(ids), _hf_hidden(hf, ids))
    assert err < 1e-10, f"{option} silently gives different hidden states: max abs error {err:.3e}"
