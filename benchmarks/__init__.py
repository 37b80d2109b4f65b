"""Benchmarks for lnkit, measured as ratios side by side in one run: ``python -m benchmarks`` (or ``make bench``).

This machine is shared and noisy, so every benchmark interleaves its contenders (A, B, C, A, B, C, ...) and reports
medians; ratios are taken within each repetition and then their median, so a slow moment hits both sides of a ratio.
Results go to ``benchmarks/results/cpu.json`` (and ``cuda.json`` when a GPU is present), which chapter 8 reads.
"""
