"""A readable NumPy GPT-2 whose forward pass can record every LayerNorm call.

This is how the book *measures* how many statistics GPT-2 computes instead of asserting it. The model follows
Hugging Face ``transformers``' ``GPT2Model`` exactly (parameter names included, so its ``state_dict`` loads one to
one) and the tests check its hidden states against that model with the same random weights.

GPT-2 is pre-LN: every block normalizes the input of each sublayer and adds the sublayer's output back to an
un-normalized residual stream, and the model ends with a final LayerNorm ``ln_f``::

    x = x + attn(ln_1(x))
    x = x + mlp(ln_2(x))        # ... for each of the n_layer blocks, then ln_f(x)

``GPT2Config(norm_first=False)`` gives the post-LN wiring of the original Transformer, ``x = ln(x + sublayer(x))``,
with no final LayerNorm (the last block's output is already normalized; ``ln_f`` is ignored).

Shapes: ``B`` sequences of ``T`` tokens with ``C = n_embd`` features; ``H`` heads of ``C // H`` features each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .norms import layer_norm, layer_norm_stats

__all__ = [
    "GPT2Config",
    "GPT2",
    "LayerNormCall",
    "gelu",
    "self_attention",
    "mlp",
    "pre_ln",
    "post_ln",
]


@dataclass(frozen=True)
class GPT2Config:
    """GPT-2 small by default: 12 layers, 12 heads, 768 features, a 1024-token context, LayerNorm eps 1e-5."""

    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_positions: int = 1024
    vocab_size: int = 50257
    eps: float = 1e-5
    norm_first: bool = True  # pre-LN (GPT-2). False: post-LN, as in the original Transformer.

    def __post_init__(self):
        for field in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPT2Config.{field} must be a positive int; got {value!r}.")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPT2Config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"each head takes an equal slice of the features."
            )


@dataclass(frozen=True)
class LayerNormCall:
    """One LayerNorm application during a forward pass: where it ran and the statistics it computed."""

    name: str  # the module's name in transformers' GPT2Model, e.g. "h.3.ln_1" or "ln_f"
    mean: np.ndarray  # shape (B, T): one mean per token
    var: np.ndarray  # shape (B, T): one (biased) variance per token

    @property
    def n_statistics(self) -> int:
        """How many (mean, variance) pairs this call computed: one per token of every sequence."""
        return self.mean.size


# --- the pieces of a block ---------------------------------------------------------------------------------------


def gelu(x: np.ndarray) -> np.ndarray:
    """GPT-2's GELU, the tanh approximation (transformers' ``gelu_new``)."""
    # Python floats, not NumPy float64 scalars: under NumPy 2 those would promote a float32 model to float64.
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def self_attention(x, w_qkv, b_qkv, w_proj, b_proj, n_head: int, causal: bool = True) -> np.ndarray:
    """Multi-head self-attention on x of shape (B, T, C); weights in ``x @ w`` orientation (as GPT-2's Conv1D).

    The heads split the C features only *after* the projections: whatever normalized x did so on all C at once.
    """
    B, T, C = x.shape
    q, k, v = np.split(x @ w_qkv + b_qkv, 3, axis=-1)  # each (B, T, C)
    # (B, T, C) -> (B, H, T, C/H): one slice of the features per head
    q, k, v = (a.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3) for a in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(C // n_head)  # (B, H, T, T); a Python float keeps float32
    if causal:  # token t may look at tokens 0..t only
        scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    out = _softmax(scores) @ v  # (B, H, T, C/H)
    return out.transpose(0, 2, 1, 3).reshape(B, T, C) @ w_proj + b_proj


def mlp(x, w_fc, b_fc, w_proj, b_proj, activation: Callable = gelu) -> np.ndarray:
    """The position-wise feed-forward network: C -> 4C -> C."""
    return activation(x @ w_fc + b_fc) @ w_proj + b_proj


def pre_ln(x, sublayer: Callable, norm: Callable):
    """Pre-LN wiring (GPT-2): normalize the sublayer's input; the residual stream itself is never normalized."""
    return x + sublayer(norm(x))


def post_ln(x, sublayer: Callable, norm: Callable):
    """Post-LN wiring (the original Transformer): normalize after adding the sublayer's output to the stream."""
    return norm(x + sublayer(x))


# --- the model ----------------------------------------------------------------------------------------------------


def _expected_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
    C = cfg.n_embd
    shapes = {"wte.weight": (cfg.vocab_size, C), "wpe.weight": (cfg.n_positions, C)}
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes.update(
            {
                p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
                p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,),
            }
        )  # fmt: skip
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,)})
    return shapes


class GPT2:
    """GPT-2 in NumPy. ``params`` maps transformers' ``GPT2Model`` parameter names to arrays.

    >>> model = GPT2.init_random(GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=100))
    >>> calls = []
    >>> hidden = model(np.array([[1, 2, 3]]), on_layer_norm=calls.append)
    >>> [c.name for c in calls], hidden.shape
    (['h.0.ln_1', 'h.0.ln_2', 'h.1.ln_1', 'h.1.ln_2', 'ln_f'], (1, 3, 64))
    """

    def __init__(self, config: GPT2Config, params: Mapping[str, np.ndarray]):
        expected = _expected_shapes(config)
        missing = sorted(set(expected) - set(params))
        if missing:
            raise ValueError(f"params is missing {len(missing)} GPT-2 parameters, e.g. {missing[:3]}.")
        for name, shape in expected.items():
            if tuple(np.shape(params[name])) != shape:
                raise ValueError(f"params[{name!r}] must have shape {shape}; got {tuple(np.shape(params[name]))}.")
        self.config = config
        self.params = {name: np.asarray(params[name]) for name in expected}

    @classmethod
    def init_random(cls, config: GPT2Config = GPT2Config(), seed: int = 0, dtype=np.float32) -> GPT2:
        """GPT-2's initialization: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2 n_layer)),
        biases 0, LayerNorm gains 1 and biases 0."""
        rng = np.random.default_rng(seed)
        params = {}
        for name, shape in _expected_shapes(config).items():
            if ".ln_" in name or name.startswith("ln_"):
                params[name] = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
            elif name.endswith("bias"):
                params[name] = np.zeros(shape)
            else:
                std = 0.02 / np.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 0.02
                params[name] = rng.normal(0.0, std, size=shape)
        return cls(config, {k: v.astype(dtype) for k, v in params.items()})

    @classmethod
    def from_transformers(cls, model, norm_first: bool = True) -> GPT2:
        """Load the weights of a transformers ``GPT2Model`` (or ``GPT2LMHeadModel``), keeping their dtype."""
        hf = model.config
        config = GPT2Config(
            n_layer=hf.n_layer, n_head=hf.n_head, n_embd=hf.n_embd, n_positions=hf.n_positions,
            vocab_size=hf.vocab_size, eps=hf.layer_norm_epsilon, norm_first=norm_first,
        )  # fmt: skip
        if getattr(hf, "activation_function", "gelu_new") != "gelu_new":
            raise ValueError(f"only GPT-2's gelu_new activation is supported; got {hf.activation_function!r}.")
        # Attention variants GPT-2 itself does not use; refusing them beats silently computing something else.
        if not getattr(hf, "scale_attn_weights", True) or getattr(hf, "scale_attn_by_inverse_layer_idx", False):
            raise ValueError(
                "only GPT-2's attention scaling (scores / sqrt(head size)) is supported; got "
                f"scale_attn_weights={hf.scale_attn_weights}, "
                f"scale_attn_by_inverse_layer_idx={hf.scale_attn_by_inverse_layer_idx}."
            )
        params = {}
        for name, tensor in model.state_dict().items():
            name = name.removeprefix("transformer.")
            params[name] = tensor.detach().cpu().numpy()
        return cls(config, params)

    def num_parameters(self, layer_norm_only: bool = False) -> int:
        """All parameters, or only the LayerNorm gains and biases (ln_f counted in pre-LN only, where it is used)."""
        names = [n for n in self.params if self.config.norm_first or not n.startswith("ln_f.")]
        if layer_norm_only:
            names = [n for n in names if n.startswith("ln_") or ".ln_" in n]
        return sum(self.params[n].size for n in names)

    def _norm(self, name: str, on_layer_norm: Callable | None) -> Callable[[np.ndarray], np.ndarray]:
        gamma, beta = self.params[name + ".weight"], self.params[name + ".bias"]

        def norm(x: np.ndarray) -> np.ndarray:
            if on_layer_norm is not None:
                on_layer_norm(LayerNormCall(name, *layer_norm_stats(x)))
            return layer_norm(x, gamma, beta, self.config.eps)

        return norm

    def __call__(self, input_ids, on_layer_norm: Callable[[LayerNormCall], object] | None = None) -> np.ndarray:
        """Hidden states (B, T, C) after the last block (and ln_f, in pre-LN) for token ids of shape (B, T).

        ``on_layer_norm``, if given, is called with a :class:`LayerNormCall` at every LayerNorm application.
        """
        cfg, p = self.config, self.params
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids must be an int array of shape (B, T); got {ids.dtype} of shape {ids.shape}.")
        B, T = ids.shape
        if not 1 <= T <= cfg.n_positions:
            raise ValueError(f"input_ids must hold 1 to n_positions={cfg.n_positions} tokens per row; got T={T}.")
        if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
            raise ValueError(f"input_ids must lie in [0, vocab_size={cfg.vocab_size}); got {ids.min()}..{ids.max()}.")
        wire = pre_ln if cfg.norm_first else post_ln

        x = p["wte.weight"][ids] + p["wpe.weight"][:T]
        for i in range(cfg.n_layer):
            h = f"h.{i}."

            def attn(z, h=h):
                return self_attention(
                    z, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"],
                    p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"], cfg.n_head,
                )  # fmt: skip

            def ffn(z, h=h):
                return mlp(z, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"],
                           p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])  # fmt: skip

            x = wire(x, attn, self._norm(h + "ln_1", on_layer_norm))
            x = wire(x, ffn, self._norm(h + "ln_2", on_layer_norm))
        if cfg.norm_first:
            x = self._norm("ln_f", on_layer_norm)(x)
        return x
