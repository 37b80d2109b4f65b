"""Landlock: inside a sandbox, writes go to its own /tmp and home, nowhere else, whatever the mounts say.

The sandbox's mounts already leave only its size-capped /tmp and home writable, with one exception: the kernel's
sockets folder, a host folder bound in read-write so that nbgrader can reach the kernel's Unix sockets. Watching
that folder's size (kernel.py) cannot see a file that was opened there, unlinked and kept open, or passed in flight
over a socket: host disk no limit counts. Landlock (Linux 5.13+, no privilege needed) closes it from inside: before
any student code runs, the sandboxed process gives up making, writing, truncating, renaming and removing files
everywhere but beneath the writable places it is granted; making sockets stays allowed (Landlock does not handle
it here), which is all the sockets folder is for. The restriction holds for every process the student's code starts.

This module is also source text: :func:`boot_source` is run by ``python -I -S`` inside the sandbox (the grader's
package is not there), so it imports nothing but the standard library.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# Linux's generic syscall numbers: the same on x86-64, arm64, riscv64 and the rest but alpha (110 higher) and mips
_SYSCALLS = {"alpha": (554, 555, 556)}
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = _SYSCALLS.get(platform.machine(), (444, 445, 446))
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# the filesystem rights (include/uapi/linux/landlock.h) this module takes away; reading and executing stay with the
# mounts (read-only everywhere but /tmp and home), as does making sockets
WRITE_FILE = 1 << 1
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: links and renames across folders
TRUNCATE = 1 << 14  # ABI 3


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def handled(abi: int) -> int:
    """The rights taken away under Landlock ABI ``abi`` (each ABI knows a few more)."""
    rights = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.cache
def abi() -> int:
    """The Landlock ABI this kernel offers (0: none, or not enabled at boot)."""
    try:
        version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def restrict_writes(writable: tuple[str, ...], devices: str = "/dev") -> int:
    """Take the write rights away from this process and its future children, but beneath ``writable`` (all of
    them) and for the device files beneath ``devices`` (writing and truncating only: /dev/null). Returns the ABI used;
    raises OSError when Landlock is missing or refuses."""
    libc = _libc()
    version = abi()
    if version < 1:
        raise OSError("Landlock is not available in this kernel")
    rights = handled(version)
    attr = ctypes.c_uint64(rights)  # struct landlock_ruleset_attr, its first field: what later ABIs add stays 0
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        grants = [(path, rights) for path in writable] + [(devices, rights & (WRITE_FILE | TRUNCATE))]
        for path, allowed in grants:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(allowed, fd)
                if libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return version


@functools.cache
def boot_source(writable: tuple[str, ...]) -> str:
    """Python source that restricts the process it runs in (see restrict_writes), or ends it with a message when it
    cannot: the grader asks for this only where its own probe found Landlock, so a failure is never silent. It leaves
    no name behind in ``__main__``. Made once per process (every sandbox's command line carries it)."""
    here = os.path.abspath(__file__.removesuffix("c"))  # the .py, even when imported from a .pyc
    with open(here, encoding="utf-8") as f:
        source = f.read()
    return (f"def _landlock():\n"
            f"    space = {{'__name__': 'landlock', '__file__': {here!r}}}\n"
            f"    exec(compile({source!r}, {here!r}, 'exec'), space)\n"
            f"    try:\n"
            f"        space['restrict_writes']({tuple(writable)!r})\n"
            f"    except OSError as e:\n"
            f"        raise SystemExit(f'nbgrader_sandbox: Landlock could not restrict this sandbox: {{e}}')\n"
            f"_landlock()\n"
            f"del _landlock\n")
