"""Argument checks shared by the NumPy and torch paths.

Every error names the argument, what was expected and what was given, because the people who see these messages are
mostly students in the middle of an exercise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np


def compute_dtype(dtype: np.dtype, name: str = "x") -> tuple[np.dtype, np.dtype]:
    """Return (dtype to compute in, dtype to return) for an input of `dtype`.

    Half precision is computed in float32 and handed back as float16 (as PyTorch does); integers are normalized as
    float64; anything that is not a real number is refused.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        work = np.dtype(np.float32) if dtype.itemsize < 4 else dtype
        return work, dtype
    if dtype.kind in "iu":
        return np.dtype(np.float64), np.dtype(np.float64)
    kind = {"c": "complex", "b": "boolean", "U": "string", "S": "bytes", "O": "object"}.get(dtype.kind, "non-numeric")
    raise TypeError(
        f"{name} must hold real numbers (a floating or integer dtype); got dtype {dtype} ({kind}). "
        f"LayerNorm statistics are defined for real-valued features only."
    )


def check_features(shape: Sequence[int], name: str = "x") -> int:
    """Return C, the size of the last axis, after checking that there is one and that it is not empty."""
    if len(shape) == 0:
        raise ValueError(f"{name} must have at least one axis (the features, C); got a scalar (shape ()).")
    features = int(shape[-1])
    if features == 0:
        raise ValueError(
            f"{name} must have at least one feature on its last axis (C >= 1); got shape {tuple(shape)}. "
            f"The mean and variance of zero numbers are undefined."
        )
    return features


def check_param_shape(param_shape: Sequence[int] | None, features: int, name: str) -> None:
    """gamma and beta hold one number per feature: shape (C,)."""
    if param_shape is None:
        return
    if tuple(param_shape) != (features,):
        raise ValueError(
            f"{name} must have shape (C,) = ({features},), one value per feature on the last axis of x; "
            f"got shape {tuple(param_shape)}."
        )


def check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0 (it is added to the variance); got {eps!r}.")
    return float(eps)


def normalize_axes(axes: int | Sequence[int], ndim: int, name: str = "axes") -> tuple[int, ...]:
    """Turn `axes` (an int or a sequence of ints, negative allowed) into sorted non-negative axis numbers."""
    if isinstance(axes, (numbers.Integral, np.integer)) and not isinstance(axes, bool):
        axes = (int(axes),)
    try:
        items = tuple(axes)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints; got {type(axes).__name__}.") from None
    if not items:
        raise ValueError(f"{name} must name at least one axis to take the statistics over; got {items!r}.")
    out = []
    for a in items:
        if isinstance(a, bool) or not isinstance(a, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must contain ints; got {a!r} of type {type(a).__name__}.")
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{name} contains {a}, which is out of range for an array with {ndim} axes "
                f"(valid: {-ndim} to {ndim - 1})."
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat an axis; got {items!r} (as non-negative axes: {tuple(out)}).")
    return tuple(sorted(out))


def check_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, like (4, 1024, 768); got {shape!r}.") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (numbers.Integral, np.integer)) or d < 0:
            raise ValueError(f"{name} must contain non-negative ints; got {shape!r}.")
    return tuple(int(d) for d in dims)
