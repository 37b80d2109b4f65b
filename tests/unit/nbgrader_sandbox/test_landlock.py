"""landlock.py: a process that ran its boot source writes beneath the granted folders and nowhere else.

Run here without bubblewrap (a plain child process, no root), so that what is refused is Landlock's doing alone; the
sandboxed kernel's own test is tests/system/test_containment.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from corpus import WRITE_ATTEMPTS

from nbgrader_sandbox import landlock

needs_landlock = pytest.mark.skipif(landlock.abi() == 0, reason="this kernel has no Landlock (Linux 5.13+, enabled)")

ATTEMPTS = WRITE_ATTEMPTS + r'''
import json, socket
inside, outside = sys.argv[1], sys.argv[2]
attempt("write inside", lambda: open(os.path.join(inside, "f"), "wb").write(b"x"))
attempt("folder inside", lambda: os.mkdir(os.path.join(inside, "d")))
attempt("socket outside", lambda: socket.socket(socket.AF_UNIX).bind(os.path.join(outside, "s")))
attempt("write /dev/null", lambda: open("/dev/null", "w").write("x"))
attempt("new file outside", lambda: open(os.path.join(outside, "f"), "wb").write(b"x"))
attempt("unlinked but open outside", lambda: unlinked_but_open(outside, 4096))
attempt("append outside", lambda: open(os.path.join(outside, "existing"), "ab").write(b"x"))
attempt("truncate outside", lambda: os.truncate(os.path.join(outside, "existing"), 0))
attempt("remove outside", lambda: os.unlink(os.path.join(outside, "existing")))
attempt("folder outside", lambda: os.mkdir(os.path.join(outside, "d")))
attempt("link outside", lambda: os.symlink("/etc/passwd", os.path.join(outside, "l")))
attempt("fifo outside", lambda: os.mkfifo(os.path.join(outside, "p")))
attempt("move in to out", lambda: os.rename(os.path.join(inside, "f"), os.path.join(outside, "moved")))
attempt("hard link in to out", lambda: os.link(os.path.join(inside, "f"), os.path.join(outside, "hard")))
attempt("a child's new file outside", lambda: child_creates(os.path.join(outside, "child")))
print(json.dumps(seen))
'''


@needs_landlock
def test_writes_go_beneath_the_granted_folders_only(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "existing").write_bytes(b"kept")
    code = landlock.boot_source((str(inside),)) + ATTEMPTS
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(inside), str(outside)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    allowed = ["write inside", "folder inside", "socket outside", "write /dev/null"]
    assert {k: seen.pop(k) for k in allowed} == dict.fromkeys(allowed, "done")
    refused = dict.fromkeys(seen, "PermissionError")
    if landlock.abi() < 3:  # truncating is Landlock's from ABI 3
        refused.pop("truncate outside")
        seen.pop("truncate outside")
    if landlock.abi() < 2:  # renames and links across folders from ABI 2 (before: refused whatever the rule)
        for k in ("move in to out", "hard link in to out"):
            refused.pop(k)
            seen.pop(k)
    assert seen == refused
    assert sorted(p.name for p in outside.iterdir()) == ["existing", "s"]
    assert (outside / "existing").read_bytes() == b"kept"


@needs_landlock
def test_a_process_that_cannot_be_restricted_ends_with_a_message(tmp_path):
    code = landlock.boot_source((str(tmp_path / "missing"),)) + "print('ran')"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "ran" not in out.stdout
    assert "Landlock could not restrict this sandbox" in out.stderr and "missing" in out.stderr


@needs_landlock
def test_the_boot_source_leaves_no_name_behind():
    code = landlock.boot_source(("/tmp",)) + "print(sorted(n for n in dir() if not n.startswith('__')))"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_rights_taken_away_grow_with_the_abi():
    # include/uapi/linux/landlock.h: WRITE_FILE 1<<1, REMOVE_DIR 1<<4 ... MAKE_SYM 1<<12, REFER 1<<13, TRUNCATE 1<<14;
    # reading (1<<2, 1<<3), executing (1<<0) and making sockets (1<<9) are never taken
    assert landlock.handled(1) == 0b1_1101_1111_0010
    assert landlock.handled(2) == landlock.handled(1) | 1 << 13
    assert landlock.handled(3) == landlock.handled(7) == landlock.handled(2) | 1 << 14
    assert not landlock.handled(7) & (1 << 0 | 1 << 2 | 1 << 3 | 1 << 9)


@pytest.mark.parametrize("inside", ["/tmp/sockets", "/tmp", "/home/student/sockets", "/home/student/../student/s"])
def test_a_shared_folder_beneath_a_writable_place_is_refused(inside):
    """Landlock grants writes beneath /tmp and home: a host folder bound there would take any file through them."""
    from nbgrader_sandbox.sandbox import Sandbox

    with pytest.raises(ValueError, match="beneath a writable place"):
        Sandbox(key="a/b", shared_dirs=(("/var/empty", inside),))._mounts()
