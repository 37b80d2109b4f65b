"""The kernel nbgrader executes, inside the student's sandbox, talking to nbgrader over Unix sockets.

nbgrader's Execute starts a kernel with ``cwd`` set to ``autograded/<student>/<assignment>``. Here the kernel runs
instead in a bubblewrap sandbox (:mod:`.sandbox`) whose working folder holds read-only copies of that folder's regular
files, never the notebooks (nbgrader has written the one it executes there with the instructor's hidden tests
restored). There is no network in the sandbox, so the kernel's five ZeroMQ channels are Unix sockets (jupyter_client's
``ipc`` transport) in a private folder bound into the sandbox, beside the connection file.

The settings every sandbox of the course shares (what an assignment may import, memory, CPU time, the opt-out) are
:class:`GradingSandbox`'s, read from ``nbgrader_config.py``.
"""

from __future__ import annotations

import os
import threading
import time

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Dict, Integer, List
from traitlets.config import Configurable

from . import sandbox


class GradingSandbox(Configurable):
    """What untrusted code may use when it is graded: the same for the kernel and for the student server."""

    packages = Dict({}, help="per assignment, the packages graded code may import (others get default_packages); "
                             "lnkit is never granted to the student server").tag(config=True)
    default_packages = List(["numpy"], help="the packages graded code may import").tag(config=True)
    kernel_packages = List(["ipykernel", "lnkit"], help="added in the kernel only: it runs the notebook as the "
                                                        "student sees it (visible checks), and decides no score"
                           ).tag(config=True)
    memory_bytes = Integer(4 * 1024**3, help="address-space limit of each sandboxed process, bytes").tag(config=True)
    cpu_seconds = Integer(900, help="CPU-seconds limit of each sandboxed process (a backstop)").tag(config=True)
    uid_base = Integer(2_100_000_000, help="as root, each student's sandbox runs as a uid of its own, from "
                                           "uid_base to uid_base + 999999 (no account needed)").tag(config=True)
    allow_unsandboxed = Bool(False, help="grade WITHOUT a sandbox where bubblewrap is unavailable: only for a "
                                         "setting where every student is trusted").tag(config=True)

    def packages_for(self, assignment: str) -> tuple[str, ...]:
        return tuple(self.packages.get(assignment, self.default_packages))

    def refusal(self) -> str:
        """Why student code must not run here ("" when a sandbox can be made, or the instructor opted out)."""
        reason = sandbox.unavailable()
        if not reason or self.allow_unsandboxed:
            return ""
        return (f"lnkit.grading refuses to run student code: no sandbox can be made here. {reason}. To grade anyway "
                f"where every student is trusted, set c.GradingSandbox.allow_unsandboxed = True in nbgrader_config.py.")


def submission_of(folder: str) -> tuple[str, str]:
    """(student, assignment) of nbgrader's ``.../<student>/<assignment>`` folder."""
    folder = os.path.normpath(os.path.abspath(folder))
    return os.path.basename(os.path.dirname(folder)), os.path.basename(folder)


_KERNEL_BOOT = ("import runpy\n"
                "sys.argv = ['ipykernel_launcher', *sys.argv[1:]]\n"
                "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n")


class IsolatedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the student's sandbox, over the ipc transport."""

    _box: sandbox.Sandbox | None = None
    _ipc_dir: str | None = None

    async def _async_pre_start_kernel(self, **kw):
        settings = GradingSandbox(parent=self)
        refusal = settings.refusal()
        if refusal:
            raise RuntimeError(refusal)
        folder = kw.get("cwd") or os.getcwd()
        student, assignment = submission_of(folder)
        if sandbox.unavailable():  # the instructor's explicit opt-out: nbgrader's own kernel, as it is
            self.log.warning("lnkit.grading: the kernel runs WITHOUT a sandbox (c.GradingSandbox.allow_unsandboxed)")
            return await super()._async_pre_start_kernel(**kw)
        files, refused = sandbox.regular_files(folder)
        for why in refused:
            self.log.warning("lnkit.grading: not given to the kernel: %s", why)
        packages = tuple(dict.fromkeys([*settings.kernel_packages, *settings.packages_for(assignment)]))
        self._box = sandbox.Sandbox(
            key=f"{student}/{assignment}", packages=packages, files=tuple(files), uid_base=settings.uid_base,
            limits=sandbox.Limits(memory_bytes=settings.memory_bytes, cpu_seconds=settings.cpu_seconds),
            env={"IPYTHONDIR": "/tmp/.ipython", "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter-runtime",
                 "JUPYTER_CONFIG_DIR": "/tmp/.jupyter", "JUPYTER_DATA_DIR": "/tmp/.jupyter-data",
                 "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
        self._ipc_dir = sandbox.private_dir("lnkit-kernel-", owner=self._box.uid)
        self._box.shared_dirs = (self._ipc_dir,)
        self.transport = "ipc"
        self.connection_file = os.path.join(self._ipc_dir, "kernel.json")
        self.ip = os.path.join(self._ipc_dir, "kernel")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self._box is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        if os.geteuid() == 0:
            os.chown(self.connection_file, self._box.uid, self._box.uid)
        kw["cwd"] = "/"
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # bwrap clears it for the kernel
        launched = await super()._async_launch_kernel(
            self._box.python_argv(_KERNEL_BOOT, "-f", self.connection_file), **kw)
        threading.Thread(target=self._guard_sockets_folder, args=(self._ipc_dir,), daemon=True).start()
        return launched

    def _guard_sockets_folder(self, folder: str) -> None:
        """The one host folder the kernel can write to holds its five sockets: anything more (a student's code
        filling the host's disk through it) kills the kernel, which ends only the in-kernel run."""
        while self._ipc_dir == folder:
            try:
                entries = list(os.scandir(folder))
                size = sum(e.stat(follow_symlinks=False).st_size for e in entries)
            except OSError:
                return
            if len(entries) > 16 or size > 1024**2:
                self.log.warning("lnkit.grading: the kernel wrote %d entries (%d bytes) into its sockets' folder: "
                                 "stopped", len(entries), size)
                pid = getattr(self.provisioner, "pid", None)
                if pid:
                    sandbox.kill_tree(pid)
                for e in entries:
                    if e.is_file(follow_symlinks=False) and e.name != "kernel.json":
                        os.unlink(e.path)
                return
            time.sleep(0.2)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        self.remove_sockets_folder()

    # jupyter_client binds the public name to its own function, and nbclient calls it (not shutdown_kernel) for a
    # kernel that died: without this, a dead kernel's sockets folder stays behind
    cleanup_resources = _async_cleanup_resources

    def remove_sockets_folder(self) -> None:
        sandbox.remove_tree(self._ipc_dir)
        self._ipc_dir = None
