"""``python -m benchmarks [--only cpu|import|cuda ...] [--quick] [--device cpu|cuda] [--threads 1,2]``.

Prints a table and writes the results, with the machine's description, to benchmarks/results/cpu.json (CPU and
import time) and benchmarks/results/cuda.json (``--device cuda``, only when a GPU is present).

Autograding is timed on its own: ``python -m benchmarks.autograde`` (sequential ``nbgrader autograde`` against
``python -m nbgrader_sandbox autograde``; writes benchmarks/results/autograde.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import common


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path.relative_to(common.ROOT) if path.is_relative_to(common.ROOT) else path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu: NumPy/torch CPU benchmarks and import time (default); cuda: the GPU benchmark")
    p.add_argument("--only", nargs="+", choices=["layer_norm", "rms_norm", "backward", "import"],
                   help="run only these CPU benchmarks (default: all)")
    p.add_argument("--quick", action="store_true", help="few repetitions, first shape only; results not written")
    p.add_argument("--reps", type=int, help="repetitions per contender (default 15, quick 5)")
    p.add_argument("--threads", help="comma-separated thread counts (default: 1 and torch.get_num_threads())")
    p.add_argument("--out", type=Path, help="where to write the JSON (default benchmarks/results/<device>.json)")
    args = p.parse_args(argv)
    reps = args.reps or (5 if args.quick else 15)
    t0 = time.perf_counter()

    if args.device == "cuda":
        from . import cuda

        if not cuda.available():
            print("CUDA benchmark skipped: no CUDA device is available here (torch.cuda.is_available() is False). "
                  "Nothing was measured and benchmarks/results/cuda.json was left as it is. "
                  "Run `python -m benchmarks --device cuda` on a machine with a GPU and a CUDA build of torch.")
            return 0
        shapes = cuda.SHAPES[:1] if args.quick else cuda.SHAPES
        print(cuda.HEADER)
        rows = cuda.run(device="cuda", reps=reps, inner=20, shapes=shapes)
        if not args.quick:
            _write(args.out or common.RESULTS / "cuda.json",
                   {"machine": {**common.machine_info(), **cuda.device_info("cuda")}, "results": rows})
        print(f"({time.perf_counter() - t0:.0f} s)")
        return 0

    import torch  # noqa: F401  (so machine_info records its version)

    from . import cpu

    only = set(args.only or ["layer_norm", "rms_norm", "backward", "import"])
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    payload: dict = {"machine": {**common.machine_info(), "torch_default_threads": torch.get_num_threads()}}
    ops = [op for op in ("layer_norm", "rms_norm", "backward") if op in only]
    if ops:
        print(f"torch.get_num_threads() = {torch.get_num_threads()}; lnkit and torch get the same count per row. "
              f"Times are medians of {reps} interleaved repetitions; ratios are medians of per-repetition ratios.")
        print(cpu.HEADER)
        payload["settings"] = {"reps": reps, "threads": threads or sorted({1, torch.get_num_threads()})}
        payload["results"] = cpu.run(reps=reps, threads=threads, shapes=cpu.SHAPES[:1] if args.quick else cpu.SHAPES,
                                     ops=ops)
    if "import" in only:
        imp = cpu.import_times(reps=max(reps, 5))
        payload["import"] = imp
        print(f"import time (fresh interpreters, medians of {imp['reps']}): "
              f"import numpy {imp['numpy_import_ms']:.0f} ms, "
              f"then import lnkit {imp['lnkit_extra_ms']:.1f} ms more (torch never imported). Whole start-up: "
              f"python {imp['python_ms']:.0f} ms, python -c 'import numpy' {imp['numpy_ms']:.0f} ms, "
              f"python -c 'import lnkit' {imp['lnkit_ms']:.0f} ms")
    if hasattr(os, "getloadavg"):
        payload["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    if not args.quick and not args.only:
        _write(args.out or common.RESULTS / "cpu.json", payload)
    elif args.out:
        _write(args.out, payload)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
