"""Timing helpers and the machine's description, shared by the CPU and CUDA benchmarks."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1, timer=None) -> dict[str, list[float]]:
    """Run each contender once per repetition, in a rotating order; return every contender's times in seconds.

    ``timer(fn) -> seconds`` times one call (default: ``time.perf_counter`` around it). Rotating the order each
    repetition keeps any contender from always running right after the same neighbour (caches, turbo, the other
    tenant of the machine).
    """
    timer = timer or _wall
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(timer(fns[name]))
    return times


def _wall(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """The median over repetitions of time[num] / time[den], each pair measured in the same repetition."""
    return median([a / b for a, b in zip(times[num], times[den])])


def ratio_spread(times: dict[str, list[float]], num: str, den: str) -> list[float]:
    """The 25th and 75th percentiles of the per-repetition ratios: how much the noise moved the ratio."""
    r = sorted(a / b for a, b in zip(times[num], times[den]))
    q = statistics.quantiles(r, n=4, method="inclusive") if len(r) > 1 else [r[0]] * 3
    return [float(q[0]), float(q[2])]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> dict[str, str]:
    out = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            out[f"L{level}"] = size + (" per core" if level in ("1", "2") else "")
    return out


def _git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+uncommitted changes" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    import numpy as np

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    info = {
        "cpu_model": _cpu_model(),
        "cpus_available": cpus,
        "cpu_count": os.cpu_count(),
        "caches": _caches(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "lnkit_commit": _git_commit(),
    }
    if hasattr(os, "getloadavg"):  # how busy the machine was when the run started (1, 5, 15 minute averages)
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - older NumPy: no mode="dicts"
        pass
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    return info
