"""lnkit: the helper package of the course "LayerNorm, from the inside".

The book teaches; lnkit serves. It holds the reference implementations the chapters build up to and the graded
exercises are checked against, and a small NumPy GPT-2 whose forward pass records every LayerNorm call.

``import lnkit`` imports NumPy only. torch is imported the first time a ``torch.Tensor`` is passed in, and
:mod:`lnkit.gpt2` is a submodule you import yourself.
"""

from .norms import (  # noqa: F401 - the public names, the same list as lnkit.norms's
    __all__,
    count_statistics,
    layer_norm,
    layer_norm_backward,
    layer_norm_stats,
    normalize_over,
    rms_norm,
)

__version__ = "0.1.0"
