"""The benchmark harness runs and records what the book reads. No timing is asserted: this machine is noisy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_textbook_versions_are_right():
    """The baselines must compute the same thing as lnkit, or the speed-ups compare different work."""
    import lnkit
    from benchmarks import cpu

    rng = np.random.default_rng(1)
    x, dout, g, b = rng.standard_normal((6, 32)) + 3, rng.standard_normal((6, 32)), rng.random(32), rng.random(32)
    np.testing.assert_allclose(cpu.textbook_layer_norm(x, g, b), lnkit.layer_norm(x, g, b), rtol=1e-12)
    np.testing.assert_allclose(cpu.textbook_rms_norm(x, g), lnkit.rms_norm(x, g), rtol=1e-12)
    for got, want in zip(cpu.textbook_layer_norm_backward(dout, x, g), lnkit.layer_norm_backward(dout, x, g)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_cpu_benchmark_rows_have_every_field():
    from benchmarks import cpu

    rows = cpu.run(reps=2, threads=[1, 2], shapes=[(3, 40, 64)], log=lambda line: None)
    assert [(r["op"], r["threads"]) for r in rows] == [
        (op, n) for n in (1, 2) for op in ("layer_norm", "rms_norm", "backward")
    ]
    for r in rows:
        assert set(r["ms"]) == {"textbook", "lnkit", "torch"}
        assert r["floor_ms"] > 0 and r["copy_GBps"] > 0
        assert max(r["max_abs_err_vs_float64"].values()) < 1e-4
        assert cpu.format_row(r).startswith(r["op"])


def test_cuda_harness_runs_on_cpu_tensors():
    from benchmarks import cuda

    rows = cuda.run(device="cpu", reps=2, inner=1, shapes=[(16, 32)], log=lambda line: None)
    assert {(r["direction"], r["dtype"]) for r in rows} == {
        (d, t) for d in ("forward", "backward") for t in ("float32", "bfloat16")
    }
    for r in rows:
        assert r["GBps"]["torch"] > 0 and r["GBps"]["lnkit"] > 0 and r["lnkit_over_torch"] > 0


def test_cuda_benchmark_skips_cleanly_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA benchmark would run, not skip")
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--device", "cuda"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CUDA benchmark skipped" in out.stdout


def test_recorded_cpu_results_are_what_the_book_reads():
    data = json.loads((ROOT / "benchmarks" / "results" / "cpu.json").read_text())
    for key in ("cpu_model", "cpus_available", "numpy", "torch", "date_utc"):
        assert data["machine"][key]
    assert {(r["op"], tuple(r["shape"])) for r in data["results"]} >= {
        (op, shape) for op in ("layer_norm", "rms_norm", "backward") for shape in ((8, 1024, 768), (4096, 4096))
    }
    assert data["import"]["numpy_ms"] > 0 and data["import"]["imports_torch"] is False


@pytest.mark.slow
def test_quick_benchmark_command_runs():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--reps", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "lnkit/torch" in out.stdout and "import lnkit" in out.stdout
