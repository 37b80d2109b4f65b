"""Real Linux users for the tests that play people: an instructor without root, students on a hub.

Only root can make them; each test that does removes them afterwards (homes included). `user_python` gives them a
Python that sees this environment's packages even where our interpreter sits in a folder they cannot enter (pyenv
under /root): a copy of the same interpreter (same version: Debian's 3.11.2 breaks the newest soupsieve, which
nbconvert's HTML export uses), in a virtual environment of its own whose site-packages adds ours, with this
environment's scripts (nbgrader, alembic, jupyter-*) pointed at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(argv)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def make_user(name: str, *groups: str) -> Path:
    """A new account, its home made by `useradd -m` with the machine's usual settings; returns the home."""
    remove_user(name)
    run("useradd", "-m", "-s", "/bin/bash", *(["-G", ",".join(groups)] if groups else []), name)
    return Path(os.path.expanduser(f"~{name}"))


def remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


def _open_to_others(path: str) -> bool:
    parts = os.path.realpath(path).split(os.sep)
    return all(os.stat(os.sep.join(parts[:i]) or os.sep).st_mode & 0o001 for i in range(2, len(parts)))


def _python_for_everyone(base: Path) -> str:
    """This interpreter, or a copy of its installation that every user can run (hard links, the standard library
    without its tests and site-packages). The copy's binary finds its libpython beside it: pyenv writes an absolute
    RUNPATH, which is rewritten in place to $ORIGIN/../lib (padded with NULs: the loader reads a C string)."""
    real = os.path.realpath(sys.executable)
    if _open_to_others(real):
        return real
    prefix = Path(sys.base_prefix)
    copy = base / "python"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(prefix / "lib" / version, copy / "lib" / version, copy_function=link, symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo"))
    (copy / "lib" / version / "site-packages").mkdir()
    for lib in (prefix / "lib").glob("libpython*"):
        if lib.is_file() and not lib.is_symlink():
            link(lib, copy / "lib" / lib.name)
    for lib in (prefix / "lib").glob("libpython*"):
        if lib.is_symlink():
            (copy / "lib" / lib.name).symlink_to(os.readlink(lib))
    (copy / "bin").mkdir()
    binary = Path(real).read_bytes()
    old = str(prefix / "lib").encode()
    if old + b"\0" in binary:
        binary = binary.replace(old + b"\0", b"$ORIGIN/../lib".ljust(len(old), b"\0") + b"\0", 1)
    target = copy / "bin" / version
    target.write_bytes(binary)
    target.chmod(0o755)
    return str(target)


def user_python(base: Path, hide: tuple[str, ...] = ()) -> Path:
    """A Python every user can run that sees this environment's packages (see the module's docstring); an editable
    install whose .pth file names one of ``hide`` is left out (``hide=("lnkit",)``: a Python without lnkit)."""
    venv = base / "env"
    system_python = _python_for_everyone(base)
    run(system_python, "-m", "venv", "--without-pip", str(venv))
    purelib = Path(sysconfig.get_paths()["purelib"])
    their_lib = Path(run(str(venv / "bin" / "python"), "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    if hide:  # the site folder, and each of its .pth files but the hidden ones (a .pth runs lines that import)
        (their_lib / "lnkit_course.pth").write_text(
            f"import sys; sys.path.append({str(purelib)!r}); [__import__('site').addpackage({str(purelib)!r}, n, None) "
            f"for n in sorted(__import__('os').listdir({str(purelib)!r})) if n.endswith('.pth') and not any(h in n "
            f"for h in {tuple(hide)!r})]\n")  # builtins only: a .pth line's names are not seen inside a comprehension
    else:
        (their_lib / "lnkit_course.pth").write_text(f"import site; site.addsitedir({str(purelib)!r})\n")
    for sub in ("share", "etc"):
        (venv / sub).mkdir(exist_ok=True)
        if (Path(sys.prefix) / sub / "jupyter").exists():
            (venv / sub / "jupyter").symlink_to(Path(sys.prefix) / sub / "jupyter")
    for script in (Path(sys.prefix) / "bin").iterdir():
        try:
            first, rest = script.read_text().split("\n", 1)
        except (UnicodeDecodeError, ValueError, IsADirectoryError):
            continue
        if first.startswith("#!") and "python" in first and not (venv / "bin" / script.name).exists():
            target = venv / "bin" / script.name
            target.write_text(f"#!{venv / 'bin' / 'python'}\n{rest}")
            target.chmod(0o755)
    for path in [base, *base.rglob("*")]:  # readable by all (hard-linked files are already: mode unchanged)
        if not path.is_symlink():
            mode = path.stat().st_mode
            if mode | (0o055 if path.is_dir() else 0o044) != mode:
                path.chmod(mode | (0o055 if path.is_dir() else 0o044))
    return venv / "bin" / "python"


def as_user(name: str, *argv: str, env: dict, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """argv run as user name (runuser: no password, no login shell), with exactly env."""
    cmd = ["runuser", "-u", name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, f"{' '.join(argv)} as {name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out
