"""Answers to exercise 01-layernorm for the similarity tests: honest ones, written independently, and planted copies.

Each answer maps grade_id -> the source of that solution cell, as a student fills in the released template. The
honest answers are correct (tests/system/test_similarity.py runs lnkit's checks on them) and were written to differ as
students' answers do: methods or functions, float32 or float64 work, keepdims or indexing, loops, einsum, a helper.
``grace`` writes what chapter 1 teaches, line for line, as a student who read it would. Each planted copy says what
it was copied from and how it was disguised.
"""

STATS_DOC = '    """Mean and biased variance of every row of x (shape (..., C)); both of shape x.shape[:-1]."""\n'
LN_DOC = '    """LayerNorm over the last axis of x (shape (..., C)), gain gamma and bias beta of shape (C,)."""\n'

HONEST = {
    # methods, np.var, float32 work for float16
    "alice": {
        "layer_norm_stats": "def layer_norm_stats(x):\n" + STATS_DOC + """\
    xf = x.astype(np.float32) if x.dtype == np.float16 else x
    return xf.mean(axis=-1).astype(x.dtype), xf.var(axis=-1).astype(x.dtype)
""",
        "layer_norm": "def layer_norm(x, gamma, beta, eps=1e-5):\n" + LN_DOC + """\
    xf = x.astype(np.float32) if x.dtype == np.float16 else x
    mu = xf.mean(axis=-1, keepdims=True)
    sigma2 = xf.var(axis=-1, keepdims=True)
    normalized = (xf - mu) / np.sqrt(sigma2 + eps)
    return (gamma * normalized + beta).astype(x.dtype)
""",
    },
    # sums divided by n, float64 accumulation, the second function reuses the first
    "bob": {
        "layer_norm_stats": """\
def layer_norm_stats(x):
    n = x.shape[-1]
    total = np.sum(x, axis=-1, dtype=np.float64)
    avg = total / n
    dev = x.astype(np.float64) - avg[..., np.newaxis]
    spread = np.sum(dev * dev, axis=-1) / n
    return avg.astype(x.dtype), spread.astype(x.dtype)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    # statistics again in float64: the float16 ones would lose digits
    avg, spread = layer_norm_stats(x.astype(np.float64))
    scale = 1.0 / np.sqrt(spread + eps)
    y = (x.astype(np.float64) - avg[..., np.newaxis]) * scale[..., np.newaxis]
    y = y * gamma + beta
    return y.astype(x.dtype)
""",
    },
    # a helper with an explicit loop over the rows
    "carol": {
        "layer_norm_stats": """\
def _row_stats(x):
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    means = np.empty(flat.shape[0])
    variances = np.empty(flat.shape[0])
    for i, row in enumerate(flat):
        m = row.sum() / row.size
        means[i] = m
        variances[i] = ((row - m) ** 2).sum() / row.size
    return means.reshape(x.shape[:-1]), variances.reshape(x.shape[:-1])


def layer_norm_stats(x):
    means, variances = _row_stats(x)
    return means.astype(x.dtype), variances.astype(x.dtype)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    means, variances = _row_stats(x)
    result = np.empty(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape[:-1]):
        row = x[index].astype(np.float64)
        result[index] = (row - means[index]) / np.sqrt(variances[index] + eps) * gamma + beta
    return result.astype(x.dtype)
""",
    },
    # matrix products and einsum
    "dave": {
        "layer_norm_stats": "def layer_norm_stats(x):\n" + STATS_DOC + """\
    c = x.shape[-1]
    x64 = np.asarray(x, dtype=np.float64)
    first = x64 @ (np.ones(c) / c)
    centred = x64 - first[..., None]
    second = np.einsum("...i,...i->...", centred, centred) / c
    return first.astype(x.dtype), second.astype(x.dtype)
""",
        "layer_norm": "def layer_norm(x, gamma, beta, eps=1e-5):\n" + LN_DOC + """\
    c = x.shape[-1]
    x64 = np.asarray(x, dtype=np.float64)
    first = (x64 @ np.full(c, 1.0 / c))[..., None]
    centred = x64 - first
    inv = (np.einsum("...i,...i->...", centred, centred)[..., None] / c + eps) ** -0.5
    return (centred * inv * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)).astype(x.dtype)
""",
    },
    # NumPy functions rather than methods: mean, std squared, expand_dims, promote_types
    "erin": {
        "layer_norm_stats": """\
def layer_norm_stats(x):
    work_type = np.promote_types(x.dtype, np.float32)
    data = x.astype(work_type)
    mean = np.mean(data, axis=-1)
    variance = np.square(np.std(data, axis=-1))
    return mean.astype(x.dtype), variance.astype(x.dtype)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    work_type = np.promote_types(x.dtype, np.float32)
    data = x.astype(work_type)
    mean, variance = np.mean(data, axis=-1), np.square(np.std(data, axis=-1))
    standardized = (data - np.expand_dims(mean, -1)) / np.sqrt(np.expand_dims(variance, -1) + eps)
    return np.add(np.multiply(standardized, gamma), beta).astype(x.dtype)
""",
    },
    # the feature axis first, a generator over the features
    "frank": {
        "layer_norm_stats": """\
def layer_norm_stats(x):
    feats = np.moveaxis(x.astype(np.float64), -1, 0)
    m = feats.sum(axis=0) / len(feats)
    v = sum((f - m) ** 2 for f in feats) / len(feats)
    return np.asarray(m).astype(x.dtype), np.asarray(v).astype(x.dtype)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    feats = np.moveaxis(x.astype(np.float64), -1, 0)
    m = feats.sum(axis=0) / len(feats)
    v = sum((f - m) ** 2 for f in feats) / len(feats)
    scaled = [(f - m) / np.sqrt(v + eps) * g + b for f, g, b in zip(feats, gamma, beta)]
    return np.moveaxis(np.stack(scaled), 0, -1).astype(x.dtype)
""",
    },
    # what chapter 1 teaches, as a student who read it writes it
    "grace": {
        "layer_norm_stats": "def layer_norm_stats(x):\n" + STATS_DOC + """\
    dtype = x.dtype
    if dtype == np.float16:
        x = x.astype(np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred**2).mean(axis=-1, keepdims=True)
    return mean[..., 0].astype(dtype), var[..., 0].astype(dtype)
""",
        "layer_norm": "def layer_norm(x, gamma, beta, eps=1e-5):\n" + LN_DOC + """\
    dtype = x.dtype
    if dtype == np.float16:
        x = x.astype(np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred**2).mean(axis=-1, keepdims=True)
    return (centred / np.sqrt(var + eps) * gamma + beta).astype(dtype)
""",
    },
}

# copies: (the copy, where it came from, how it was disguised)
PLANTED = {
    # bob's, every name changed, comments and blank lines added, spacing changed
    "mallory": ({
        "layer_norm_stats": """\
def layer_norm_stats(x):
    # number of features
    count = x.shape[-1]

    s = np.sum(x, axis = -1, dtype = np.float64)
    mu = s / count
    d = x.astype(np.float64) - mu[..., np.newaxis]   # centre every row
    var_ = np.sum(d * d, axis = -1) / count
    return mu.astype(x.dtype), var_.astype(x.dtype)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    mu, var_ = layer_norm_stats(x.astype(np.float64))
    factor = 1.0 / np.sqrt(var_ + eps)

    out = (x.astype(np.float64) - mu[..., np.newaxis]) * factor[..., np.newaxis]
    out = out * gamma + beta   # gain and bias
    return out.astype(x.dtype)
""",
    }, "bob", "every name renamed, comments added"),
    # carol's, names changed and the functions in the other order: layer_norm_stats's cell defines the helper after
    # the function that calls it, and the loop's two updates are swapped
    "nina": ({
        "layer_norm_stats": """\
def layer_norm_stats(x):
    averages, spreads = _stats_per_row(x)
    return averages.astype(x.dtype), spreads.astype(x.dtype)


def _stats_per_row(x):
    rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
    averages = np.empty(rows.shape[0])
    spreads = np.empty(rows.shape[0])
    for k, r in enumerate(rows):
        a = r.sum() / r.size
        spreads[k] = ((r - a) ** 2).sum() / r.size
        averages[k] = a
    return averages.reshape(x.shape[:-1]), spreads.reshape(x.shape[:-1])
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    averages, spreads = _stats_per_row(x)
    y = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape[:-1]):
        r = x[idx].astype(np.float64)
        y[idx] = (r - averages[idx]) / np.sqrt(spreads[idx] + eps) * gamma + beta
    return y.astype(x.dtype)
""",
    }, "carol", "names renamed, functions reordered, two statements swapped"),
    # dave's, every name changed and the docstrings deleted
    "oscar": ({
        "layer_norm_stats": """\
def layer_norm_stats(x):
    width = x.shape[-1]
    xd = np.asarray(x, dtype=np.float64)
    m1 = xd @ (np.ones(width) / width)
    xc = xd - m1[..., None]
    m2 = np.einsum("...i,...i->...", xc, xc) / width
    return m1.astype(x.dtype), m2.astype(x.dtype)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    width = x.shape[-1]
    xd = np.asarray(x, dtype=np.float64)
    m1 = (xd @ np.full(width, 1.0 / width))[..., None]
    xc = xd - m1
    r = (np.einsum("...i,...i->...", xc, xc)[..., None] / width + eps) ** -0.5
    return (xc * r * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)).astype(x.dtype)
""",
    }, "dave", "every name renamed, docstrings deleted"),
    # lnkit's own code (the row-block engine, lnkit/blocked.py: _rows_view, _in_work, _centre_block, and
    # layer_norm_stats's and layer_norm's bodies less the torch path and the argument checks, one block instead of
    # many), pasted: names renamed, functions reordered
    "quinn": ({
        "layer_norm_stats": """\
def layer_norm_stats(x):
    work = np.dtype(np.float32) if x.dtype == np.float16 else x.dtype
    feats = x.shape[-1]
    rows = _rows(x, feats)
    m, v = np.empty(len(rows), work), np.empty(len(rows), work)

    def kern(a, b):
        blk = _work(rows[a:b], work)
        m[a:b], v[a:b] = _centre(blk, np.empty_like(blk))

    kern(0, len(rows))
    shp = x.shape[:-1]
    return m.reshape(shp).astype(x.dtype, copy=False), v.reshape(shp).astype(x.dtype, copy=False)


def _centre(blk, into):
    feats = blk.shape[-1]
    m = np.add.reduce(blk, axis=-1)
    m /= feats
    np.subtract(blk, m[:, None], out=into)
    v = np.einsum("ij,ij->i", into, into)
    v /= feats
    return m, v


def _rows(x, feats):
    return x.reshape(-1, feats)


def _work(blk, work):
    return blk if blk.dtype == work else blk.astype(work)
""",
        "layer_norm": """\
def layer_norm(x, gamma, beta, eps=1e-5):
    work = np.dtype(np.float32) if x.dtype == np.float16 else x.dtype
    out = x.dtype
    feats = x.shape[-1]
    rows = _rows(x, feats)
    res = np.empty(rows.shape, out)

    def kern(a, b):
        blk = _work(rows[a:b], work)
        yb = res[a:b] if out == work else np.empty_like(blk)
        _, v = _centre(blk, yb)
        v += eps
        rstd = np.reciprocal(np.sqrt(v, out=v), out=v)
        yb *= rstd[:, None]
        if gamma is not None:
            yb *= gamma
        if beta is not None:
            yb += beta
        if out != work:
            res[a:b] = yb

    kern(0, len(rows))
    return res.reshape(x.shape)
""",
    }, "lnkit/blocked.py", "lnkit's code pasted: names renamed, functions reordered"),
}
