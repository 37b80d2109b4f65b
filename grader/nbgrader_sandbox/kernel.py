"""The kernel nbgrader executes, inside the student's sandbox, talking to nbgrader over Unix sockets.

nbgrader's Execute starts a kernel with ``cwd`` set to ``autograded/<student>/<assignment>``. Here the kernel runs
instead in a bubblewrap sandbox (:mod:`.sandbox`) whose working folder holds read-only copies of that folder's regular
files, never the notebooks (nbgrader has written the one it executes there with the instructor's hidden tests
restored). There is no network in the sandbox, so the kernel's five ZeroMQ channels are Unix sockets (jupyter_client's
``ipc`` transport) in a private host folder bound into the sandbox at :data:`SOCKETS` (beside the connection file,
whose ``ip`` the kernel reads as that inside path while nbgrader connects through the host's). Where Landlock exists
the kernel can make nothing but sockets there (:mod:`.landlock`); a guard outside watches the folder either way.

The settings every sandbox of the course shares (what an assignment may import, memory, CPU time, the opt-out) are
:class:`~.settings.GradingSandbox`'s, read from ``nbgrader_config.py``.
"""

from __future__ import annotations

import json
import os
import threading
import time

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer

from . import sandbox
from .settings import GradingSandbox


def submission_of(folder: str) -> tuple[str, str]:
    """(student, assignment) of nbgrader's ``.../<student>/<assignment>`` folder."""
    folder = os.path.normpath(os.path.abspath(folder))
    return os.path.basename(os.path.dirname(folder)), os.path.basename(folder)


SOCKETS = "/run/kernel"  # where the sockets' folder appears inside: not beneath /tmp or home, which Landlock opens

_KERNEL_BOOT = ("import runpy\n"
                "sys.argv = ['ipykernel_launcher', *sys.argv[1:]]\n"
                "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n")


class IsolatedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in the student's sandbox, over the ipc transport.

    A guard outside the sandbox stops the kernel (the in-kernel run ends; the outside checks still grade) when its
    sockets' folder holds more than it should, or when the notebook's budget (``budget_cpu_seconds`` of the
    sandbox's CPU time, ``budget_wall_seconds`` since it started, set by SafeExecute) is spent; ``stop_reason``
    then says why, as does a stop by the sandbox's supervisor (memory, processes).
    """

    sockets_folder_bytes = Integer(1024**2, help="what the kernel's sockets' folder may hold, all its entries "
                                                 "together, bytes").tag(config=True)
    sockets_folder_entries = Integer(16, help="how many entries the sockets' folder may hold, in all its "
                                              "subfolders").tag(config=True)

    _box: sandbox.Sandbox | None = None
    _ipc_dir: str | None = None
    budget_cpu_seconds: float | None = None
    budget_wall_seconds: float | None = None
    _stopped: str = ""
    exit_status: int | None = None

    async def _async_pre_start_kernel(self, **kw):
        settings = GradingSandbox(parent=self)
        refusal = settings.refusal()
        if refusal:
            raise RuntimeError(refusal)
        folder = kw.get("cwd") or os.getcwd()
        student, assignment = submission_of(folder)
        if sandbox.unavailable():  # the instructor's explicit opt-out: nbgrader's own kernel, as it is
            self.log.warning("nbgrader_sandbox: the kernel runs WITHOUT a sandbox (c.GradingSandbox.allow_unsandboxed)")
            return await super()._async_pre_start_kernel(**kw)
        files, refused = sandbox.regular_files(folder)
        for why in refused:
            self.log.warning("nbgrader_sandbox: not given to the kernel: %s", why)
        packages = tuple(dict.fromkeys([*settings.kernel_packages, *settings.course_spec().kernel_packages,
                                         *settings.packages_for(assignment)]))
        self._box = sandbox.Sandbox(
            key=sandbox.submission_key(folder), packages=packages, files=tuple(files), uid_base=settings.uid_base,
            limits=sandbox.Limits(memory_bytes=settings.memory_bytes, cpu_seconds=settings.cpu_seconds,
                                  processes=settings.processes),
            env={"IPYTHONDIR": "/tmp/.ipython", "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter-runtime",
                 "JUPYTER_CONFIG_DIR": "/tmp/.jupyter", "JUPYTER_DATA_DIR": "/tmp/.jupyter-data",
                 "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
        self._ipc_dir = sandbox.private_dir("sandbox-kernel-", owner=self._box.uid)
        self._box.shared_dirs = ((self._ipc_dir, SOCKETS),)
        self.transport = "ipc"
        self.connection_file = os.path.join(self._ipc_dir, "nbgrader.json")  # the kernel's is kernel.json
        self.ip = os.path.join(self._ipc_dir, "kernel")
        return await super()._async_pre_start_kernel(**kw)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self._box is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        # the kernel's own connection file: the same ports and key, its sockets at the inside path (nbgrader's file,
        # which jupyter_client checks again after the launch, names the host's)
        with open(self.connection_file, encoding="utf-8") as f:
            info = dict(json.load(f), ip=os.path.join(SOCKETS, os.path.basename(self.ip)))
        kernels = os.path.join(self._ipc_dir, "kernel.json")
        fd = os.open(kernels, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        if os.geteuid() == 0:
            os.chown(kernels, self._box.uid, self._box.uid)
        kw["cwd"] = "/"
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # bwrap clears it for the kernel
        launched = await super()._async_launch_kernel(
            self._box.python_argv(_KERNEL_BOOT, "-f", os.path.join(SOCKETS, "kernel.json")), **kw)
        threading.Thread(target=self._guard_sockets_folder, args=(self._ipc_dir,), daemon=True).start()
        return launched

    def _folder_overflow(self, folder: str) -> str:
        """Why the sockets' folder holds more than it should ("" if it does not): its whole tree, links never
        followed, counted until a cap is passed; a folder the guard cannot read counts as too much."""
        entries, size, todo = 0, 0, [folder]
        while todo:
            try:
                with os.scandir(todo.pop()) as found:
                    for e in found:
                        st = e.stat(follow_symlinks=False)
                        entries += 1
                        size += max(st.st_size, st.st_blocks * 512)
                        if e.is_dir(follow_symlinks=False):
                            if st.st_mode & 0o700 != 0o700:  # as root it could be read; the same verdict either way
                                return "it made a folder in its sockets' folder unreadable"
                            todo.append(e.path)
                        if entries > self.sockets_folder_entries or size > self.sockets_folder_bytes:
                            return (f"it wrote more than {self.sockets_folder_entries} entries or "
                                    f"{self.sockets_folder_bytes // 1024} KiB into its sockets' folder")
            except FileNotFoundError:
                continue
            except OSError as e:
                return f"it made its sockets' folder unreadable ({type(e).__name__})"
        return ""

    def _budget_spent(self, pid: int | None, started: float) -> str:
        if self.budget_wall_seconds and time.monotonic() - started > self.budget_wall_seconds:
            return (f"the notebook's run used its budget of {self.budget_wall_seconds:g} s (wall-clock, the "
                    f"backstop that sleeping cannot extend)")
        if self.budget_cpu_seconds and pid and sandbox.cpu_seconds(pid) > self.budget_cpu_seconds:
            return f"the notebook's run used its budget of {self.budget_cpu_seconds:g} CPU seconds"
        return ""

    def _guard_sockets_folder(self, folder: str) -> None:
        """The one host folder the kernel can write to holds its five sockets: anything more (a student's code
        filling the host's disk through it) stops the kernel, as does a spent budget; either ends only the
        in-kernel run."""
        started = time.monotonic()
        while self._ipc_dir == folder:
            pid = getattr(self.provisioner, "pid", None)
            if not os.path.isdir(folder):
                return
            why = self._folder_overflow(folder) or self._budget_spent(pid, started)
            if why:
                self._stopped = why
                self.log.warning("nbgrader_sandbox: the kernel was stopped: %s", why)
                if pid:
                    sandbox.kill_tree(pid)
                return
            time.sleep(0.2)

    @property
    def stop_reason(self) -> str:
        """Why the kernel was stopped from outside ("" if it was not): the guard, or the sandbox's supervisor."""
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is not None:
            self.exit_status = process.returncode  # for the log: how a kernel that died ended
            if not self._stopped and self._box is not None:
                self._stopped = self._box.stopped_for(process.returncode)
        return self._stopped

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        self.stop_reason  # noqa: B018 - read while the process is still known: jupyter_client forgets it
        await super()._async_cleanup_resources(restart=restart)
        self.remove_sockets_folder()

    # jupyter_client binds the public name to its own function, and nbclient calls it (not shutdown_kernel) for a
    # kernel that died: without this, a dead kernel's sockets folder stays behind
    cleanup_resources = _async_cleanup_resources

    def remove_sockets_folder(self) -> None:
        """Remove the sockets' folder with whatever the student's code left in it, whatever its modes (the kernel is
        gone by now: nothing still writes there)."""
        folder, self._ipc_dir = self._ipc_dir, None
        sandbox.remove_tree(folder)
