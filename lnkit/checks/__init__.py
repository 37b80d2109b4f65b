"""The checks the graded exercises call: ``from lnkit.checks import check_layer_norm``, then
``check_layer_norm(layer_norm)``.

Each check runs the student's function on many inputs (shapes ``(C,)``, ``(T, C)``, ``(B, T, C)``, zero rows;
float16, float32, float64; constant rows; rows far from zero; tiny variances), compares every answer with a reference
computed here, and on the first problem raises ``AssertionError`` with a message that names the mistake (found by
comparing the student's answer with the answers of known wrong implementations) and the smallest input that shows it.
On success it prints one line, such as ``check_layer_norm: 15 cases passed``.

``hidden=True`` runs other, randomized cases (another seed, other shapes and eps) so that answers hard-coded for the
visible cases fail. A failing hidden case is named by its kind (dtype, number of axes, what is special about it), the
mistake and the chapter's section, never by its values, the right answer or the function's result: graded, the hidden
cases are drawn afresh for each student and each submission.

The checks never write to stderr (nbgrader scores any stderr output as a failure): warnings are silenced while they
run. While the student's function runs, a profiler watches for calls into lnkit's reference implementations and
torch's normalization functions, and a call fails the check ("you called lnkit.layer_norm instead of writing it").

The reference answers are computed here, in float64, for every function (lnkit's public API covers chapters 1, 2,
5 and 7 only, and a check should not trust the code it is part of). This module imports NumPy only.
"""

from __future__ import annotations

from ._engine import HIDDEN_SEED, VISIBLE_SEED, CheckFailed, set_hidden_secret  # noqa: F401 - public, not checks
from .ch01_layernorm import check_layer_norm, check_layer_norm_stats
from .ch02_which_axis import check_count_statistics, check_normalize_over
from .ch03_counting import check_ln_applications, check_ln_parameters, check_ln_statistics
from .ch04_gain_bias import check_fit_gain_bias
from .ch05_rmsnorm import check_layer_norm_via_rms, check_rms_norm
from .ch06_pre_post_ln import check_post_ln, check_pre_ln
from .ch07_backward import check_layer_norm_backward
from .ch08_speed import check_running_stats
from .ch10_in_the_wild import check_add_layer_norm_traffic, check_fold_into_linear
from .ch11_dyt import check_dyt, check_fit_dyt_alpha

__all__ = [
    "check_layer_norm_stats",
    "check_layer_norm",
    "check_normalize_over",
    "check_count_statistics",
    "check_ln_applications",
    "check_ln_statistics",
    "check_ln_parameters",
    "check_fit_gain_bias",
    "check_rms_norm",
    "check_layer_norm_via_rms",
    "check_pre_ln",
    "check_post_ln",
    "check_layer_norm_backward",
    "check_running_stats",
    "check_fold_into_linear",
    "check_add_layer_norm_traffic",
    "check_dyt",
    "check_fit_dyt_alpha",
]
