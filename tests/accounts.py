"""Real Linux users for the tests that play people: an instructor without root, students on a hub.

Only root can make them; each test that does removes them afterwards (homes included). `user_python` gives them a
Python that sees this environment's packages even where our interpreter sits in a folder they cannot enter (pyenv
under /root): a copy of the same interpreter (same version: Debian's 3.11.2 breaks the newest soupsieve, which
nbconvert's HTML export uses), in a virtual environment of its own whose site-packages adds ours, with this
environment's scripts (nbgrader, alembic, jupyter-*) pointed at it.

Where the clone itself sits in a folder other users cannot enter (a clone inside `mktemp -d`, or a home of mode 700),
that Python would see nothing: the environment's site-packages and the editable installs (lnkit/, grader/) are inside
it. `readable` then gives them a copy in the folder the test made for them (hard links where it can), and the editable
installs' finders name the copies.
"""

from __future__ import annotations

import ast
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
    """Whether every user can reach path: each folder on the way (and path itself) open to others (o+x)."""
    parts = os.path.realpath(path).split(os.sep)
    return all(os.stat(os.sep.join(parts[:i]) or os.sep).st_mode & 0o001 for i in range(2, len(parts) + 1))


def _link_or_copy(src, dst):
    """A hard link of a file others can already read and run where its owner can (its mode is left alone), else a
    copy (made so after)."""
    mode = os.stat(src).st_mode
    if mode & 0o004 and (mode & 0o001 or not mode & 0o100):
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another file system
            pass
    shutil.copy2(src, dst)
    return dst


def readable(path: Path, base: Path) -> Path:
    """``path`` itself where every user can reach it; otherwise a copy every user can read, under ``base`` (a folder
    open to all, removed by the test) at ``base/readable/<path's absolute path>``: files keep their places relative
    to each other (a package that finds the repository's root from its own file finds the copy's)."""
    path = Path(os.path.realpath(path))
    if _open_to_others(str(path)):
        return path
    copy = base / "readable" / path.relative_to("/")
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, copy, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(path, copy)
        made = [*copy.relative_to(base).parents][-2::-1]  # readable/, ..., copy.parent: folders made above
        walk = os.walk(copy) if copy.is_dir() else [(str(copy.parent), [], [copy.name])]
        for folder, _, files in [*((str(base / d), [], []) for d in made), *walk]:
            for p in [folder, *(os.path.join(folder, f) for f in files)]:  # hard links: readable already
                st = os.lstat(p)
                want = 0o055 if p == folder or st.st_mode & 0o100 else 0o044
                if not os.path.islink(p) and st.st_mode | want != st.st_mode:
                    os.chmod(p, st.st_mode | want)
    return copy


def _site_for_everyone(base: Path) -> Path:
    """This environment's site-packages, or its readable copy (see `readable`) whose editable installs' finders name
    readable copies of their sources."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    site = readable(purelib, base)
    if site == purelib:
        return purelib
    for finder in site.glob("__editable___*_finder.py"):
        lines = finder.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            for name in ("MAPPING", "NAMESPACES"):
                if line.startswith(f"{name}:"):
                    head, value = line.split(" = ", 1)
                    value = ast.literal_eval(value)
                    value = {k: (str(readable(Path(v), base)) if isinstance(v, str)
                                 else [str(readable(Path(x), base)) for x in v]) for k, v in value.items()}
                    lines[i] = f"{head} = {value!r}\n"
        finder.unlink()  # a hard link of the original: written anew, never through
        finder.write_text("".join(lines))
        for cached in (site / "__pycache__").glob(finder.stem + ".*"):
            cached.unlink()
    for pth in site.glob("*.pth"):  # a path line (setuptools' older editable installs) names its copy
        lines = pth.read_text().splitlines()
        new = [str(readable(Path(line), base)) if line.startswith("/") and os.path.isdir(line) else line
               for line in lines]
        if new != lines:
            pth.unlink()
            pth.write_text("\n".join(new) + "\n")
    return site


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
    purelib = _site_for_everyone(base)
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
            (venv / sub / "jupyter").symlink_to(readable(Path(sys.prefix) / sub / "jupyter", base))
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
