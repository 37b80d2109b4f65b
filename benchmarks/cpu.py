"""CPU benchmark: lnkit's NumPy norms against the textbook NumPy formula and against torch, at GPT-2 shapes.

For every shape and thread count, one interleaved run times:

* ``copy``: ``np.copyto`` of x into a preallocated array of its size, split over the same number of threads. It
  reads x once and writes once, exactly the traffic a perfect LayerNorm forward must do, so its time *is* the
  physical floor here, and 2 * x.nbytes / time is the copy bandwidth. ``fresh_copy`` copies into a newly allocated
  array instead, as every contender must (its output is new): beyond 32 MB, glibc takes fresh pages from the OS
  each time and the page faults show;
* ``textbook``: the formula as written on the page, one NumPy expression;
* ``lnkit``: lnkit's NumPy path;
* ``torch``: ``torch.nn.functional.layer_norm`` (``F.rms_norm``; autograd for the backward) on the CPU, with
  ``torch.set_num_threads`` equal to lnkit's thread count.

The backward pass must read x and dout and write dx: 1.5 copies, so its floor is 1.5 x the copy time.
Accuracy: the largest absolute difference from the same formula evaluated in float64.
"""

from __future__ import annotations

import numpy as np

from .common import interleaved, median, ratio, ratio_spread

SHAPES = [(8, 1024, 768), (4096, 4096)]
EPS_LN, EPS_RMS = 1e-5, 1e-6


# --- the textbook versions: the formulas exactly as a reader would first write them -------------------------------


def textbook_layer_norm(x, gamma, beta, eps=EPS_LN):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def textbook_rms_norm(x, gamma, eps=EPS_RMS):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * gamma


def textbook_layer_norm_backward(dout, x, gamma, eps=EPS_LN):
    rows = tuple(range(x.ndim - 1))
    rstd = 1.0 / np.sqrt(x.var(-1, keepdims=True) + eps)
    xhat = (x - x.mean(-1, keepdims=True)) * rstd
    g = dout * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (dout * xhat).sum(rows), dout.sum(rows)


def _max_err(got, want) -> float:
    if isinstance(got, tuple):
        # dgamma and dbeta are sums over all rows: compare them relative to their size
        dx = float(np.max(np.abs(got[0] - want[0])))
        rel = max(float(np.max(np.abs(g - w)) / np.max(np.abs(w))) for g, w in zip(got[1:], want[1:]))
        return max(dx, rel)
    return float(np.max(np.abs(got - want)))


def run(reps: int = 15, threads: list[int] | None = None, shapes=SHAPES, ops=("layer_norm", "rms_norm", "backward"),
        log=print) -> list[dict]:
    import torch
    import torch.nn.functional as F

    import lnkit
    import lnkit.blocked

    threads = threads or sorted({1, torch.get_num_threads()})
    rng = np.random.default_rng(0)
    rows = []
    for shape in shapes:
        C = shape[-1]
        # activations of a trained model sit off zero with a spread of a few units; the test data does too
        x = (rng.standard_normal(shape, dtype=np.float32) * 2.0 + 0.5).astype(np.float32)
        dout = rng.standard_normal(shape, dtype=np.float32)
        gamma = (1.0 + 0.1 * rng.standard_normal(C)).astype(np.float32)
        beta = (0.1 * rng.standard_normal(C)).astype(np.float32)
        x64, d64, g64, b64 = (a.astype(np.float64) for a in (x, dout, gamma, beta))
        tx, tg, tb, td = (torch.from_numpy(a) for a in (x, gamma, beta, dout))
        sink = np.empty_like(x)

        for n in threads:
            torch.set_num_threads(n)
            previous = lnkit.blocked.set_num_threads(n)
            copy = _parallel_copy(x, sink, n)
            try:
                for op in ops:
                    if op == "layer_norm":
                        fns = {
                            "copy": copy,
                            "textbook": lambda: textbook_layer_norm(x, gamma, beta),
                            "lnkit": lambda: lnkit.layer_norm(x, gamma, beta),
                            "torch": lambda: F.layer_norm(tx, (C,), tg, tb, EPS_LN),
                        }
                        ref = textbook_layer_norm(x64, g64, b64)
                        floor_copies = 1.0
                    elif op == "rms_norm":
                        fns = {
                            "copy": copy,
                            "textbook": lambda: textbook_rms_norm(x, gamma),
                            "lnkit": lambda: lnkit.rms_norm(x, gamma),
                            "torch": lambda: F.rms_norm(tx, (C,), tg, EPS_RMS),
                        }
                        ref = textbook_rms_norm(x64, g64)
                        floor_copies = 1.0
                    else:
                        txg = tx.clone().requires_grad_(True)
                        tgg, tbg = tg.clone().requires_grad_(True), tb.clone().requires_grad_(True)
                        ty = F.layer_norm(txg, (C,), tgg, tbg, EPS_LN)
                        fns = {
                            "copy": copy,
                            "textbook": lambda: textbook_layer_norm_backward(dout, x, gamma),
                            "lnkit": lambda: lnkit.layer_norm_backward(dout, x, gamma),
                            # backward only: the graph (with torch's saved mean and rstd) is built once, outside
                            "torch": lambda: torch.autograd.grad(ty, (txg, tgg, tbg), td, retain_graph=True),
                        }
                        ref = textbook_layer_norm_backward(d64, x64, g64)
                        floor_copies = 1.5
                    # a fresh output each call, as every contender allocates one: for 64 MB arrays the OS must
                    # hand over (and zero) new pages every time, which the preallocated copy does not pay
                    fns["fresh_copy"] = lambda: _parallel_copy(x, np.empty_like(x), n)()
                    times = interleaved(fns, reps)
                    errs = {
                        "textbook": _max_err(fns["textbook"](), ref),
                        "lnkit": _max_err(fns["lnkit"](), ref),
                        "torch": _max_err(_numpy(fns["torch"]()), ref),
                    }
                    copy_s = median(times["copy"])
                    floor_s = floor_copies * copy_s
                    row = {
                        "op": op,
                        "shape": list(shape),
                        "dtype": "float32",
                        "threads": n,
                        "reps": reps,
                        "copy_GBps": 2 * x.nbytes / copy_s / 1e9,
                        "floor_ms": floor_s * 1e3,
                        "fresh_copy_ms": median(times["fresh_copy"]) * 1e3,
                        "ms": {k: median(v) * 1e3 for k, v in times.items() if k not in ("copy", "fresh_copy")},
                        "max_abs_err_vs_float64": errs,
                        # ratios are medians of per-repetition ratios: both sides timed moments apart
                        "textbook_over_lnkit": ratio(times, "textbook", "lnkit"),
                        "lnkit_over_torch": ratio(times, "lnkit", "torch"),
                        "textbook_over_torch": ratio(times, "textbook", "torch"),
                        "lnkit_over_torch_quartiles": ratio_spread(times, "lnkit", "torch"),
                        "textbook_over_lnkit_quartiles": ratio_spread(times, "textbook", "lnkit"),
                        "over_floor": {k: ratio(times, k, "copy") / floor_copies
                                       for k in ("textbook", "lnkit", "torch")},
                    }
                    rows.append(row)
                    log(format_row(row))
            finally:
                lnkit.blocked.set_num_threads(previous)
    return rows


def _parallel_copy(src, dst, threads: int):
    """``np.copyto(dst, src)`` split over ``threads`` threads: the copy bandwidth with the same thread count."""
    if threads == 1:
        return lambda: np.copyto(dst, src)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads)
    s2, d2 = src.reshape(-1, src.shape[-1]), dst.reshape(-1, dst.shape[-1])
    edges = [len(s2) * t // threads for t in range(threads + 1)]
    parts = [(d2[a:b], s2[a:b]) for a, b in zip(edges[:-1], edges[1:])]

    def copy():
        for f in [pool.submit(np.copyto, d, s_) for d, s_ in parts]:
            f.result()

    return copy


def _numpy(out):
    if isinstance(out, tuple):
        return tuple(t.detach().numpy() for t in out)
    return out.numpy()


HEADER = (
    f"{'op':<11} {'shape':<15} {'thr':>3} {'floor ms':>8} {'textbook':>9} {'lnkit':>7} {'torch':>7} "
    f"{'tb/lnkit':>8} {'lnkit/torch':>11} {'lnkit/floor':>11} {'torch/floor':>11} {'lnkit err':>9}"
)


def format_row(r: dict) -> str:
    shape = "x".join(map(str, r["shape"]))
    ms = r["ms"]
    return (
        f"{r['op']:<11} {shape:<15} {r['threads']:>3} {r['floor_ms']:>8.2f} {ms['textbook']:>9.2f} "
        f"{ms['lnkit']:>7.2f} {ms['torch']:>7.2f} {r['textbook_over_lnkit']:>7.2f}x {r['lnkit_over_torch']:>10.2f}x "
        f"{r['over_floor']['lnkit']:>10.2f}x {r['over_floor']['torch']:>10.2f}x "
        f"{r['max_abs_err_vs_float64']['lnkit']:>9.1e}"
    )


def import_times(reps: int = 15) -> dict:
    """What ``import lnkit`` costs on top of ``import numpy``, measured in fresh interpreters.

    Each fresh interpreter times ``import numpy`` and then ``import lnkit`` (which finds NumPy already loaded), so
    lnkit's own cost is measured inside one process rather than as a difference of two noisy process start-ups.
    The whole start-up (``python -c 'import lnkit'`` against ``python -c 'import numpy'``) is recorded too.
    """
    import json as _json
    import subprocess
    import sys

    from .common import ROOT

    probe = (
        "import json, sys, time; t0 = time.perf_counter(); import numpy; t1 = time.perf_counter(); import lnkit; "
        "t2 = time.perf_counter(); assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules; "
        "print(json.dumps([t1 - t0, t2 - t1]))"
    )
    inside = []

    def run_probe():
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
        inside.append(_json.loads(out.stdout))

    def start(code):
        return lambda: subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

    fns = {"python": start("pass"), "numpy": start("import numpy"), "lnkit": start("import lnkit"), "probe": run_probe}
    times = interleaved(fns, reps)
    inside = inside[-reps:]  # the warm-up run is not counted
    return {
        "reps": reps,
        "python_ms": median(times["python"]) * 1e3,
        "numpy_ms": median(times["numpy"]) * 1e3,
        "lnkit_ms": median(times["lnkit"]) * 1e3,
        "numpy_import_ms": median([a for a, _ in inside]) * 1e3,
        # the figure the target is about: what `import lnkit` adds once NumPy is imported
        "lnkit_extra_ms": median([b for _, b in inside]) * 1e3,
        "imports_torch": False,  # the probe asserts it
    }
