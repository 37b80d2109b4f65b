"""Each limit's one default, in CPU seconds where it is a time: c.GradingSandbox's traits (:mod:`.settings`) and the
dataclasses that carry limits into other processes (:class:`.remote.Limits`, :class:`.sandbox.Limits`) take them from
here. Wall-clock seconds appear only as backstops, and say so.
"""

MEMORY_BYTES = 4 * 1024**3  # each student's sandbox, all its processes together; torch alone maps about 1 GiB
CPU_SECONDS = 900  # per sandboxed process (RLIMIT_CPU): a backstop behind the limits per call and per notebook
CALL_SECONDS = 10.0  # CPU seconds per call of a student function, out of the kernel
START_SECONDS = 30.0  # CPU seconds for the notebook's code to run before the first call, out of the kernel
CHECKER_WALL_SECONDS = 900.0  # wall-clock backstop on the checker process of one notebook
NOTEBOOK_CPU_SECONDS = 300.0  # CPU seconds of the kernel's sandbox for the whole in-kernel run
NOTEBOOK_WALL_SECONDS = 900.0  # wall-clock backstop on the whole in-kernel run, which sleeping cannot extend
# measured: the kernel holds 12 threads (ipykernel's), bubblewrap 2; exercise 06 (torch, OMP_NUM_THREADS=1)
# trains with no more; the rest is room for threads that come and go while the kernel starts
KERNEL_PROCESSES = 32
SERVER_PROCESSES = 16  # the student server holds 3 (with torch too), bubblewrap's two included
UID_BASE = 2_100_000_000
