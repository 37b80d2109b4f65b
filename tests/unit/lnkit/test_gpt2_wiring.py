"""lnkit.gpt2's block pieces against torch.nn.TransformerEncoderLayer and nn.MultiheadAttention, code we did not write.

pre_ln / post_ln + self_attention + mlp + lnkit.layer_norm, with the weights copied out of a torch encoder layer,
must reproduce that layer in both of its wirings (norm_first=True is pre-LN, False is post-LN).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lnkit import layer_norm  # noqa: E402
from lnkit.gpt2 import mlp, post_ln, pre_ln, self_attention  # noqa: E402

D_MODEL, N_HEAD, D_FF = 32, 4, 48


def relu(x):
    return np.maximum(x, 0.0)


def _encoder_layer(norm_first: bool, seed: int = 0):
    """A float64 torch encoder layer in eval mode with every norm parameter and bias randomized (torch starts the
    norms at 1 and 0 and the attention biases at 0, which would hide a dropped gain or bias)."""
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(
        D_MODEL, N_HEAD, D_FF, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    )
    with torch.no_grad():
        for norm in (layer.norm1, layer.norm2):
            norm.weight.normal_(1.0, 0.1)
            norm.bias.normal_(0.0, 0.1)
        layer.self_attn.in_proj_bias.normal_(0.0, 0.1)
        layer.self_attn.out_proj.bias.normal_(0.0, 0.1)
    return layer.double().eval()


def _numpy_pieces(layer, causal: bool = False):
    """lnkit's (attention, feed-forward, norm1, norm2) with the torch layer's weights. torch's Linear computes
    x @ W.T + b, so every weight is transposed into lnkit's x @ w orientation; in_proj_weight packs q, k, v
    as (3C, C)."""
    w = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    eps = layer.norm1.eps

    def attn(x):
        return self_attention(
            x, w["self_attn.in_proj_weight"].T, w["self_attn.in_proj_bias"],
            w["self_attn.out_proj.weight"].T, w["self_attn.out_proj.bias"], N_HEAD, causal=causal,
        )  # fmt: skip

    def ffn(x):
        return mlp(x, w["linear1.weight"].T, w["linear1.bias"], w["linear2.weight"].T, w["linear2.bias"], relu)

    def norm1(x):
        return layer_norm(x, w["norm1.weight"], w["norm1.bias"], eps)

    def norm2(x):
        return layer_norm(x, w["norm2.weight"], w["norm2.bias"], eps)

    return attn, ffn, norm1, norm2


def _block(layer, x, wire):
    attn, ffn, norm1, norm2 = _numpy_pieces(layer)
    return wire(wire(x, attn, norm1), ffn, norm2)


def _torch_out(layer, x):
    with torch.no_grad():
        return layer(torch.from_numpy(x)).numpy()


def _x(shape=(3, 10, D_MODEL), seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, size=shape)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_block_matches_torch_encoder_layer(norm_first):
    """pre_ln (norm_first=True) or post_ln (norm_first=False) composed from lnkit's pieces is torch's encoder layer
    to ~1e-10 in float64."""
    layer = _encoder_layer(norm_first)
    x = _x()
    ours = _block(layer, x, pre_ln if norm_first else post_ln)
    theirs = _torch_out(layer, x)
    err = float(np.abs(ours - theirs).max())
    assert err < 1e-10, f"norm_first={norm_first}: max abs error vs torch.nn.TransformerEncoderLayer {err:.3e}"


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_the_other_wiring_does_not_match(norm_first):
    """The two wirings give clearly different outputs for the same weights, so the test above would catch
    pre_ln and post_ln being swapped."""
    layer = _encoder_layer(norm_first)
    x = _x()
    wrong = _block(layer, x, post_ln if norm_first else pre_ln)
    diff = float(np.abs(wrong - _torch_out(layer, x)).max())
    assert diff > 1e-2, f"norm_first={norm_first}: the swapped wiring matches torch too (max diff {diff:.3e})"


def test_wirings_by_definition():
    """pre_ln(x) = x + f(norm(x)) and post_ln(x) = norm(x + f(x)), checked with two distinguishable functions."""
    x = np.arange(6.0)
    f, norm = (lambda z: 10 * z), (lambda z: z + 1)
    np.testing.assert_array_equal(pre_ln(x, f, norm), x + 10 * (x + 1))
    np.testing.assert_array_equal(post_ln(x, f, norm), (x + 10 * x) + 1)


def test_causal_attention_matches_torch_multihead_attention():
    """self_attention(causal=True) is nn.MultiheadAttention with a causal mask (same packed q, k, v weights)."""
    layer = _encoder_layer(norm_first=True, seed=1)
    mha = layer.self_attn
    x = _x(seed=1)
    T = x.shape[1]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = may not attend (a later token)
    with torch.no_grad():
        t = torch.from_numpy(x)
        theirs = mha(t, t, t, attn_mask=mask, need_weights=False)[0].numpy()
    attn, *_ = _numpy_pieces(layer, causal=True)
    err = float(np.abs(attn(x) - theirs).max())
    assert err < 1e-10, f"max abs error vs causal nn.MultiheadAttention: {err:.3e}"


def test_causal_attention_ignores_later_tokens():
    """With causal=True, changing token t's input leaves the outputs of tokens 0..t-1 exactly as they were, and
    changes the outputs from t on; with causal=False the earlier outputs change too."""
    rng = np.random.default_rng(2)
    B, T, C, H = 2, 12, 16, 4
    weights = (rng.normal(0, 0.3, (C, 3 * C)), rng.normal(0, 0.1, 3 * C),
               rng.normal(0, 0.3, (C, C)), rng.normal(0, 0.1, C))
    x = rng.normal(size=(B, T, C))
    for t in (0, 5, T - 1):
        changed = x.copy()
        changed[:, t] += rng.normal(size=(B, C))
        for causal in (True, False):
            before = self_attention(x, *weights, H, causal=causal)
            after = self_attention(changed, *weights, H, causal=causal)
            seen = np.abs(after[:, t:] - before[:, t:]).max(axis=-1)  # (B, T - t): per later token
            assert seen.min() > 1e-6, "every token from t on attends to token t, so all of them must change"
            earlier = float(np.abs(after[:, :t] - before[:, :t]).max()) if t else 0.0
            if causal:
                assert earlier == 0.0, f"changing token {t} moved an earlier output by {earlier:.3e}"
            elif t:
                assert earlier > 1e-3, "without the mask, earlier tokens should see the change"
