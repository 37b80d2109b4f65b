"""The kernel's launcher: ``python -m lnkit.grading.launch --work DIR --src DIR [...] -- KERNEL_CMD...``.

jupyter_client starts this (as root) instead of the kernel; :class:`lnkit.grading.kernel.IsolatedKernelManager`
builds the command. It copies the submission's files (``--src``, the notebooks excepted: nbgrader has written the
one it executes there with the hidden tests restored) and the connection file into the private folder ``--work``, hands them to the unprivileged user, sets the limits, drops privileges (groups, gid, uid, in that order)
and execs the kernel there, with an interpreter that user can run. The process keeps its id, so the kernel manager
interrupts and kills the kernel as usual.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from . import sandbox


def _chown_tree(path: str, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)
    os.chown(path, uid, gid)


def kernel_argv(box: sandbox.Sandbox, cmd: list[str], connection: str) -> list[str]:
    """The kernel command with this sandbox's interpreter and the private copy of the connection file."""
    if len(cmd) < 3 or cmd[1] != "-m":
        raise ValueError(f"kernel command: expected `python -m MODULE ...`; got {cmd[:3]!r}")
    rest = list(cmd[3:])
    for i, arg in enumerate(rest):
        if arg == "-f" and i + 1 < len(rest):
            rest[i + 1] = connection
        elif arg.startswith("--f="):
            rest[i] = f"--f={connection}"
    return box.python_module(cmd[2], *rest)


def _connection_file(cmd: list[str]) -> str:
    for i, arg in enumerate(cmd):
        if arg == "-f" and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith("--f="):
            return arg[4:]
    raise ValueError("kernel command: no connection file (-f FILE) in it")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m lnkit.grading.launch")
    p.add_argument("--work", required=True, help="the private folder, owned by the user, where the kernel runs")
    p.add_argument("--src", required=True, help="the folder whose files the kernel gets a copy of")
    p.add_argument("--user", default="nobody")
    p.add_argument("--memory", type=int, default=4 * 1024**3, help="address-space limit in bytes")
    p.add_argument("--cpu", type=int, default=900, help="CPU-seconds limit of the kernel process")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    box = sandbox.sandbox(args.user)
    if box.user is None:
        raise SystemExit(f"lnkit.grading.launch: {sandbox.isolation_warning(box)}")
    work = args.work
    if os.path.isdir(args.src):
        # not the notebooks: the one being executed was written there by nbgrader's sanitizing step, with the
        # instructor's test cells restored, hidden tests included
        shutil.copytree(args.src, work, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    connection = os.path.join(work, "kernel-connection.json")
    shutil.copyfile(_connection_file(cmd), connection)
    os.chmod(connection, 0o600)
    _chown_tree(work, box.user.pw_uid, box.user.pw_gid)
    argv_kernel = kernel_argv(box, cmd, connection)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON", "PYTHON"))}
    env.update(HOME=work, TMPDIR=work, IPYTHONDIR=os.path.join(work, ".ipython"), JUPYTER_RUNTIME_DIR=work,
               JUPYTER_CONFIG_DIR=os.path.join(work, ".jupyter"), JUPYTER_DATA_DIR=os.path.join(work, ".jupyter"),
               MPLCONFIGDIR=os.path.join(work, ".matplotlib"), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    os.setgroups([])
    os.setgid(box.user.pw_gid)
    os.setuid(box.user.pw_uid)
    sandbox.set_limits(args.memory, args.cpu)
    os.chdir(work)
    os.execve(argv_kernel[0], argv_kernel, env)


if __name__ == "__main__":
    main(sys.argv[1:])
