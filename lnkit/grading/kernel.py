"""A kernel manager whose kernels run as an unprivileged user in a private copy of the submission folder.

nbgrader's Execute starts the kernel with ``cwd`` set to the autograded folder (next to the course's files). Here
the command is wrapped by :mod:`lnkit.grading.launch`, which runs the kernel instead in a fresh private folder holding
only a copy of that folder, as ``user``, with a memory limit. When grading is not run as root this changes nothing
but a warning in the log (and in the integrity report).
"""

from __future__ import annotations

import sys

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, Unicode

from . import sandbox


class IsolatedKernelManager(AsyncKernelManager):
    user = Unicode("nobody", help="the unprivileged user the kernel runs as when grading as root").tag(config=True)
    memory_bytes = Integer(4 * 1024**3, help="the kernel's address-space limit (RLIMIT_AS), bytes").tag(config=True)

    _private: str | None = None

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        box = sandbox.sandbox(self.user)
        if box.user is None:
            self.log.warning("lnkit.grading: %s", sandbox.isolation_warning(box))
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        self._private = box.private_dir("lnkit-kernel-")
        src = kw.get("cwd") or "."
        wrapped = [sys.executable, "-m", "lnkit.grading.launch", "--work", self._private, "--src", str(src),
                   "--user", self.user, "--memory", str(self.memory_bytes), "--", *kernel_cmd]
        kw["cwd"] = self._private
        return await super()._async_launch_kernel(wrapped, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        sandbox.remove_tree(self._private)
        self._private = None
