"""``python -m benchmarks.sandbox [--repeats 20]``: what a bubblewrap sandbox adds to starting student code.

Autograding one notebook starts two or three sandboxed processes (the kernel, the student server, and for 05 a second
server for the stand-in). Each start is timed here side by side with the same process started without a sandbox,
alternating the two so that the machine's load falls on both alike: the student server's interpreter with NumPy, and
the kernel's packages (ipykernel, lnkit, NumPy) imported. The plain start is the one nbgrader makes (the environment's
interpreter, which reads every .pth file of its site-packages); the sandboxed one runs with -S and sees only the
granted packages. Prints the medians, their difference (the sandbox's cost per start, negative when it saves time)
and their ratio; writes benchmarks/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from nbgrader_sandbox import sandbox

from . import common

WORKLOADS = {
    "student server (numpy)": (("numpy",), "import numpy"),
    "kernel (ipykernel, lnkit, numpy)": (("ipykernel", "lnkit", "numpy"), "import numpy, ipykernel.kernelapp, lnkit"),
}


def _time(argv: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def measure(repeats: int) -> dict:
    reason = sandbox.unavailable()
    if reason:
        raise SystemExit(f"benchmarks.sandbox: {reason}")
    out = {}
    for name, (packages, code) in WORKLOADS.items():
        box = sandbox.Sandbox(key="benchmark/sandbox", packages=packages)
        boxed = box.python_argv(code)
        plain = [sys.executable, "-I", "-c", code]  # the same interpreter and packages, as nbgrader starts them
        _time(boxed), _time(plain)  # warm the page cache for both
        b, p = [], []
        for _ in range(repeats):
            b.append(_time(boxed))
            p.append(_time(plain))
        out[name] = {"sandboxed_s": statistics.median(b), "plain_s": statistics.median(p),
                     "added_s": statistics.median(b) - statistics.median(p),
                     "ratio": statistics.median(x / y for x, y in zip(b, p)), "repeats": repeats,
                     "as_root": os.geteuid() == 0}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sandbox", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default=str(common.RESULTS / "sandbox.json"))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1; got {args.repeats}")
    results = {"machine": common.machine_info(), "workloads": measure(args.repeats)}
    for name, r in results["workloads"].items():
        print(f"{name:34s} plain {r['plain_s'] * 1000:6.0f} ms   sandboxed {r['sandboxed_s'] * 1000:6.0f} ms   "
              f"+{r['added_s'] * 1000:.0f} ms ({r['ratio']:.2f}x)")
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
