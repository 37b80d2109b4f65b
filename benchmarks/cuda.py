"""CUDA benchmark: lnkit's torch path on a GPU against torch's native LayerNorm kernel, as achieved bandwidth.

LayerNorm is memory-bound on a GPU even more than on a CPU, so each time is turned into bytes moved per second
(forward: read x, write y; backward: read x and dout, write dx; gamma and beta are negligible) and set beside the
device-to-device copy bandwidth measured in the same run (``dst.copy_(src)``: read once, write once).

Every contender is timed with CUDA events around ``inner`` back-to-back calls, interleaved, medians taken.
``run(device="cpu")`` runs the same code on CPU tensors with a wall-clock timer: a smoke test of the harness for
machines without a GPU (its numbers are not written to ``cuda.json``).
"""

from __future__ import annotations

import time

from .common import interleaved, median, ratio

SHAPES = [(8192, 768), (4096, 4096)]
DTYPES = ["float32", "bfloat16"]


def available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _timer(torch, device: str, inner: int):
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timer(fn):
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / inner

    else:

        def timer(fn):
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            return (time.perf_counter() - t) / inner

    return timer


def run(device: str = "cuda", reps: int = 15, inner: int = 20, shapes=SHAPES, dtypes=DTYPES, log=print) -> list[dict]:
    import torch
    import torch.nn.functional as F

    import lnkit

    timer = _timer(torch, device, inner)
    gen = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    for shape in shapes:
        C = shape[-1]
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            make = lambda *s: (torch.randn(*s, generator=gen) * 2 + 0.5).to(device=device, dtype=dtype)  # noqa: E731
            x, dy = make(*shape), make(*shape)
            gamma, beta = make(C), make(C)
            sink = torch.empty_like(x)
            nbytes = x.numel() * x.element_size()

            # forward
            fwd = {
                "copy": lambda: sink.copy_(x),
                "torch": lambda: F.layer_norm(x, (C,), gamma, beta, 1e-5),
                "lnkit": lambda: lnkit.layer_norm(x, gamma, beta),
            }
            # backward: the graphs are built once; each call runs only the backward pass
            graphs = {}
            for name, f in (("torch", lambda a, g, b: F.layer_norm(a, (C,), g, b, 1e-5)),
                            ("lnkit", lambda a, g, b: lnkit.layer_norm(a, g, b))):
                leaves = [t.clone().requires_grad_(True) for t in (x, gamma, beta)]
                graphs[name] = (f(*leaves), leaves)
            bwd = {
                "copy": lambda: sink.copy_(x),
                "torch": lambda: torch.autograd.grad(graphs["torch"][0], graphs["torch"][1], dy, retain_graph=True),
                "lnkit": lambda: torch.autograd.grad(graphs["lnkit"][0], graphs["lnkit"][1], dy, retain_graph=True),
                "lnkit_explicit": lambda: lnkit.layer_norm_backward(dy, x, gamma),
            }
            for direction, fns, moved in (("forward", fwd, 2 * nbytes), ("backward", bwd, 3 * nbytes)):
                times = interleaved(fns, reps, warmup=3, timer=timer)
                copy_bw = 2 * nbytes / median(times["copy"])
                row = {
                    "direction": direction,
                    "shape": list(shape),
                    "dtype": dtype_name,
                    "reps": reps,
                    "inner": inner,
                    "bytes_moved": moved,
                    "copy_GBps": copy_bw / 1e9,
                    "us": {k: median(v) * 1e6 for k, v in times.items() if k != "copy"},
                    "GBps": {k: moved / median(v) / 1e9 for k, v in times.items() if k != "copy"},
                    "fraction_of_copy": {k: moved / median(v) / copy_bw for k, v in times.items() if k != "copy"},
                    "lnkit_over_torch": ratio(times, "lnkit", "torch"),
                }
                rows.append(row)
                log(format_row(row))
    return rows


HEADER = (
    f"{'pass':<9} {'shape':<10} {'dtype':<9} {'copy GB/s':>9} {'torch GB/s':>10} {'lnkit GB/s':>10} "
    f"{'torch/copy':>10} {'lnkit/copy':>10} {'lnkit/torch time':>16}"
)


def format_row(r: dict) -> str:
    shape = "x".join(map(str, r["shape"]))
    return (
        f"{r['direction']:<9} {shape:<10} {r['dtype']:<9} {r['copy_GBps']:>9.0f} {r['GBps']['torch']:>10.0f} "
        f"{r['GBps']['lnkit']:>10.0f} {r['fraction_of_copy']['torch']:>9.0%} {r['fraction_of_copy']['lnkit']:>9.0%} "
        f"{r['lnkit_over_torch']:>15.2f}x"
    )


def device_info(device: str = "cuda") -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_GiB=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)
    return info
