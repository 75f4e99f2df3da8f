"""The command line end to end: ``python -m prune_torch prune | inspect | graph | demo`` in subprocesses.

Every subprocess runs once, in its own folder, four side by side (a module fixture), and each test
reads the result it is about. Further bad-input cases go through the same ``main`` in this process.
The conventions each have a test: ``--version``, help with defaults and choices, ``graph`` to
stdout, atomic outputs that follow symlinks and write through devices, ``--force``, preconditions
checked before any work, Ctrl-C (exit 130, one line, no partial file), progress only on a terminal.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import attrs
import pytest
import torch

import prune_torch as pt
from prune_torch import _models
from prune_torch._cli import CLI_IMPORTANCES, _parser, main
from prune_torch._importance import IMPORTANCES

from . import nets

ROOT = Path(__file__).resolve().parents[2]
TINY = ["tests.api.nets:tiny", "--input-shape", "1,3,16,16"]
PNG = b"\x89PNG\r\n\x1a\n"

COMMANDS: dict[str, list[str]] = {
    "demo": ["demo", "--size", "32"],
    "prune": ["prune", *TINY, "--ratio", "0.5", "--out", "tiny.pt", "--verify", "--plot", "widths.png"],
    "inspect": ["inspect", *TINY],
    "dot": ["graph", *TINY, "--format", "dot", "--out", "graph.dot"],
    "html": ["graph", *TINY, "--format", "html", "--out", "graph.html"],
    "version": ["--version"],
    "graph-stdout": ["graph", *TINY],
    "graph-dash": ["graph", *TINY, "--format", "html", "--out", "-"],
    "graph-dev-stdout": ["graph", *TINY, "--out", "/dev/stdout"],
    # bad input
    "no-import": ["prune", "no_such_package.models:net", "--out", "out.pt"],
    "not-a-module": ["prune", "tests.api.nets:not_a_module", "--out", "out.pt"],
    "bad-shape": ["prune", "tests.api.nets:tiny", "--input-shape", "1,three,16,16", "--out", "out.pt"],
    "ratio-out-of-range": ["prune", *TINY, "--ratio", "1.5", "--out", "out.pt"],
    "out-folder-missing": ["prune", *TINY, "--out", "missing/out.pt"],
}
# more bad input, run in this process through the same entry point (interpreter start-ups are slow)
IN_PROCESS: dict[str, list[str]] = {
    "no-factory": ["prune", "tests.api.nets:no_such_factory", "--out", "out.pt"],
    "not-a-spec": ["inspect", "definitely_not_a_model_name"],
    "zero-shape": ["graph", "tests.api.nets:tiny", "--input-shape", "1,0,16,16", "--out", "graph.dot"],
    "wrong-channels": ["prune", "tests.api.nets:tiny", "--input-shape", "1,5,16,16", "--out", "out.pt"],
    "ratio-negative": ["prune", *TINY, "--ratio", "-0.2", "--out", "out.pt"],
    "unknown-importance": ["prune", *TINY, "--importance", "l3", "--out", "out.pt"],
    "taylor-needs-the-api": ["prune", *TINY, "--importance", "taylor", "--out", "out.pt"],
    "prune-to-stdout": ["prune", *TINY, "--out", "-"],
    "steps-zero": ["prune", *TINY, "--steps", "0", "--out", "out.pt"],
    "out-is-a-folder": ["prune", *TINY, "--out", "."],
    "plot-folder-missing": ["prune", *TINY, "--out", "out.pt", "--plot", "missing/widths.png"],
    "graph-out-missing": ["graph", *TINY, "--format", "html", "--out", "missing/graph.html"],
}


@attrs.frozen
class Run:
    folder: Path
    returncode: int
    stdout: str
    stderr: str

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*"))


def _run(folder: Path, args: list[str]) -> Run:
    folder.mkdir(parents=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    # several commands run side by side: more OpenMP threads than cores spin and crawl
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "prune_torch", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(folder, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("cli")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, base / name, args) for name, args in COMMANDS.items()}
        return {name: future.result() for name, future in futures.items()}


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.stderr
    return run


def test_the_factory_in_the_tests_folder_imports_from_the_repo_root() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import tests.api.nets as n, torch; print(type(n.tiny()).__name__)"
    done = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "TinyCNN"


def test_prune_writes_the_model_prints_the_report_verifies_and_plots(runs: dict[str, Run]) -> None:
    run = ok(runs["prune"])
    assert run.files() == ["tiny.pt", "widths.png"]
    out = run.stdout
    assert out.startswith("parameters")
    assert "MACs" in out
    for row in (
        ["conv1", "Conv2d", "16", "→", "8"],
        ["conv3", "Conv2d", "32", "→", "16"],
        ["fc", "Linear", "10", "→", "10"],
    ):
        assert any(line.split() == row for line in out.splitlines()), row
    assert "verify: every exact group keeps the outputs of the silenced original" in out
    assert "saved tiny.pt" in out
    assert (run.folder / "widths.png").read_bytes().startswith(PNG)
    # the file is the same model as pruning in this process, and loads without pickle
    payload = torch.load(run.folder / "tiny.pt", weights_only=True)
    assert len(payload["plans"]) == 1
    loaded = pt.load_pruned(nets.tiny().eval(), run.folder / "tiny.pt")
    here = nets.tiny().eval()
    pt.prune(here, torch.randn(1, 3, 16, 16), ratio=0.5, show_progress=False)
    for key, value in here.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_prune_options_reach_the_pruner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["prune", "tests.api.nets:resnet_small", "--input-shape", "1,3,32,32", "--ratio", "0.4", "--round-to", "8"]
    args += ["--ignore", "fc", "--global-ranking", "--importance", "l1", "--steps", "2", "--quiet", "--out", "r.pt"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 step(s)" in out
    assert [p.name for p in tmp_path.iterdir()] == ["r.pt"]
    assert len(torch.load(tmp_path / "r.pt", weights_only=True)["plans"]) == 2
    loaded = pt.load_pruned(nets.resnet_small().eval(), tmp_path / "r.pt")
    widths = [m.out_channels for m in loaded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths), widths
    assert sum(widths) < 16 * 3 + 32 * 3
    assert loaded.fc.out_features == 10
    assert loaded(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_inspect_lists_the_groups(runs: dict[str, Run]) -> None:
    run = ok(runs["inspect"])
    lines = run.stdout.splitlines()
    assert lines[0].endswith("3 prunable")
    assert lines[1].split() == ["id", "kind", "units", "status", "members", "/", "reason"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line.split() and line.split()[0].isdigit()}
    prunable = [row for row in rows.values() if row[3] == "prunable"]
    assert [(row[1], row[2], row[4].rstrip(",")) for row in prunable] == [
        ("channels", "16", "conv1.weight[0]"),
        ("channels", "32", "conv2.weight[0]"),
        ("channels", "32", "conv3.weight[0]"),
    ]
    assert any("why:" in line and "model input" in line for line in lines)
    assert run.files() == []


def test_graph_dot_is_written_and_well_formed(runs: dict[str, Run]) -> None:
    run = ok(runs["dot"])
    assert run.files() == ["graph.dot"]
    text = (run.folder / "graph.dot").read_text()
    assert text.startswith("digraph")
    depth, quoted, escaped, lowest = 0, False, False, 0
    for char in text:
        if quoted:
            escaped, quoted = (not escaped and char == "\\"), quoted and (escaped or char != '"')
            continue
        if char == '"':
            quoted = True
        elif char in "{}":
            depth += 1 if char == "{" else -1
            lowest = min(lowest, depth)
    assert (depth, quoted, lowest) == (0, False, 0)
    assert '"v:conv2.weight"' in text
    assert "->" in text


class _Tables(HTMLParser):
    """Every table of a page as rows of cell texts, and the JSON summary."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.summary = ""
        self.open: list[str] = []
        self._cell: list[str] | None = None
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "br"):
            self.open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script" and ("id", "summary") in attrs:
            self._in_summary = True

    def handle_endtag(self, tag: str) -> None:
        assert self.open, tag
        assert self.open[-1] == tag, (self.open, tag)
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        self._in_summary = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_summary:
            self.summary += data


def test_graph_html_is_written_and_holds_the_groups_table(runs: dict[str, Run]) -> None:
    run = ok(runs["html"])
    assert run.files() == ["graph.html"]
    page = _Tables()
    page.feed((run.folder / "graph.html").read_text())
    page.close()
    assert page.open == []
    assert len(page.tables) == 1
    header, *rows = page.tables[0]
    assert header == ["id", "kind", "units", "parameters", "status"]
    prunable = [row for row in rows if row[4] == "prunable"]
    assert [(row[2], row[3].split(",")[0]) for row in prunable] == [
        ("16", "conv1.weight[0]"),
        ("32", "conv2.weight[0]"),
        ("32", "conv3.weight[0]"),
    ]
    # the same counts as inspect prints
    summary = json.loads(page.summary)
    inspect_head = ok(runs["inspect"]).stdout.splitlines()[0]
    assert inspect_head == f"{summary['ops']} ops, {summary['groups']} groups, {summary['prunable']} prunable"


def test_demo_prunes_and_finds_the_model_equal(runs: dict[str, Run]) -> None:
    run = ok(runs["demo"])
    assert "equal" in run.stdout
    assert "multiple of 8: True" in run.stdout
    assert "(1, 3, 32, 32)" in run.stdout
    assert run.files() == []


def assert_one_line_error(command: str, returncode: int, stderr: str, words: str) -> None:
    assert returncode == 2
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"prune-torch {command}: error: ")
    assert words in lines[0]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("no-import", "cannot import 'no_such_package.models'"),
        ("not-a-module", "returned a dict, not a torch.nn.Module"),
        ("bad-shape", "bad input shape '1,three,16,16'"),
        ("ratio-out-of-range", "'ratio' must be a fraction in [0, 1) (got 1.5)"),
        ("out-folder-missing", "cannot write 'missing/out.pt'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_leaves_no_file(runs: dict[str, Run], name: str, words: str) -> None:
    run = runs[name]
    assert_one_line_error(COMMANDS[name][0], run.returncode, run.stderr, words)
    assert run.files() == []
    assert "saved" not in run.stdout


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("no-factory", "has no 'no_such_factory'"),
        ("not-a-spec", "'definitely_not_a_model_name'"),
        ("zero-shape", "bad input shape '1,0,16,16'"),
        ("wrong-channels", "could not trace TinyCNN"),
        ("ratio-negative", "'ratio' must be a fraction in [0, 1) (got -0.2)"),
        ("unknown-importance", "invalid choice: 'l3'"),
        ("taylor-needs-the-api", "invalid choice: 'taylor'"),
        ("prune-to-stdout", "--out - (standard output) is not possible here"),
        ("steps-zero", "'steps' must be an int >= 1 (got 0)"),
        ("out-is-a-folder", "it is a folder"),
        ("plot-folder-missing", "cannot write 'missing/widths.png'"),
        ("graph-out-missing", "cannot write 'missing/graph.html'"),
    ],
)
def test_more_bad_input_through_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    returncode = main(IN_PROCESS[name])
    captured = capsys.readouterr()
    assert_one_line_error(IN_PROCESS[name][0], returncode, captured.err, words)
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pt.PruningError, match="ratio"):
        main(["prune", *TINY, "--ratio", "1.5", "--out", "out.pt", "--debug"])
    assert list(tmp_path.iterdir()) == []


# -- conventions ------------------------------------------------------------------------------------


def test_version(runs: dict[str, Run]) -> None:
    run = ok(runs["version"])
    name, version = run.stdout.split()
    assert name == "prune-torch"
    assert version == importlib.metadata.version("prune-torch")


def test_every_option_has_help_and_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, (name, action.dest)
        assert main([name, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for action in sub._actions:
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS, "-"):
                assert f"(default: {action.default})" in text, (name, action.dest)
            for choice in action.choices or ():
                assert str(choice) in text, (name, choice)
    assert main(["prune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "{bn_scale,fpgm,group_l2,l1,l2,random}" in text


def test_the_importance_choices_are_the_api_names_less_those_needing_data() -> None:
    assert set(CLI_IMPORTANCES) == set(IMPORTANCES) - {"taylor", "wanda", "flap"}
    assert list(CLI_IMPORTANCES) == sorted(CLI_IMPORTANCES)


def test_graph_writes_to_stdout_by_default_and_with_a_dash(runs: dict[str, Run]) -> None:
    for name in ("graph-stdout", "graph-dev-stdout"):
        run = ok(runs[name])
        assert run.stdout.startswith("digraph"), name
        assert run.stdout == (ok(runs["dot"]).folder / "graph.dot").read_text(), name
        assert run.files() == [], name
    run = ok(runs["graph-dash"])
    assert run.stdout.startswith("<!DOCTYPE html>")
    assert run.files() == []
    assert os.path.islink("/dev/stdout") or not os.path.exists("/dev/stdout")


def _graph(*args: str) -> int:
    return main(["graph", *TINY, "--quiet", *args])


def test_an_existing_output_needs_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graph.dot").write_text("mine")
    os.chmod(tmp_path / "graph.dot", 0o640)
    assert_one_line_error("graph", _graph("--out", "graph.dot"), capsys.readouterr().err, "pass --force")
    assert (tmp_path / "graph.dot").read_text() == "mine"
    assert _graph("--out", "graph.dot", "--force") == 0
    assert (tmp_path / "graph.dot").read_text().startswith("digraph")
    assert (tmp_path / "graph.dot").stat().st_mode & 0o777 == 0o640  # replaced, permissions kept
    assert [p.name for p in tmp_path.iterdir()] == ["graph.dot"]
    # the prune command: both outputs are checked before any work
    (tmp_path / "w.png").write_text("mine")
    args = ["prune", *TINY, "--quiet", "--out", "new.pt", "--plot", "w.png"]
    assert_one_line_error("prune", main(args), capsys.readouterr().err, "'w.png' exists; pass --force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.dot", "w.png"]


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.dot").symlink_to("real.dot")  # dangling until written
    assert _graph("--out", "link.dot") == 0
    assert (tmp_path / "link.dot").is_symlink()
    assert (tmp_path / "real.dot").read_text().startswith("digraph")
    (tmp_path / "null").symlink_to(os.devnull)
    assert _graph("--out", "null") == 0  # a device is written through, no --force needed
    assert (tmp_path / "null").is_symlink()
    assert Path(os.devnull).is_char_device()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.dot", "null", "real.dot"]


def _no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(spec: str) -> None:
        raise AssertionError(f"the work started ({spec}) before a precondition failed")

    monkeypatch.setattr(_models, "build_model", fail)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["prune", *TINY, "--out", "out.pt", "--plot", "w.png"], "--plot needs matplotlib"),
        (["graph", *TINY, "--format", "svg", "--out", "g.svg"], "--format svg needs Graphviz"),
        (["prune", *TINY, "--out", "/proc/out.pt"], "cannot write '/proc/out.pt': cannot create files in '/proc'"),
        (["prune", *TINY, "--out", "out.pt", "--plot", "missing/w.png"], "cannot write 'missing/w.png'"),
    ],
)
def test_preconditions_are_checked_before_any_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    _no_work(monkeypatch)
    if "matplotlib" in words:  # as if it were not installed
        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real_find_spec(n, *a)
        )
    if "Graphviz" in words:
        monkeypatch.setattr(shutil, "which", lambda name, *a: None)
    if args[-1].startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    assert_one_line_error(args[0], main(args), capsys.readouterr().err, words)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_an_existing_output_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.pt").write_bytes(b"old model")
    args = ["prune", "tests.api.nets:tiny", "--input-shape", "1,5,16,16", "--out", "out.pt", "--force"]
    assert_one_line_error("prune", main(args), capsys.readouterr().err, "could not trace TinyCNN")
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]
    assert (tmp_path / "out.pt").read_bytes() == b"old model"


class Sleepy(torch.nn.Module):
    """A conv chain whose forward takes two seconds: long enough to be interrupted while working."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3)
        self.conv2 = torch.nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(2.0)
        return self.conv2(torch.relu(self.conv1(x)))


def sleepy() -> torch.nn.Module:
    return Sleepy()


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_ctrl_c_exits_130_with_one_line_and_no_partial_file(tmp_path: Path) -> None:
    args = ["prune", "tests.api.test_cli:sleepy", "--input-shape", "1,3,8,8", "--out", "out.pt", "--verify"]
    process = subprocess.Popen(
        [sys.executable, "-m", "prune_torch", *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the output's staging file appears once the preconditions hold, before the work starts
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out-*.partial.pt")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the staging file never appeared"
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["prune-torch prune: interrupted"]
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


def _on_a_terminal(folder: Path, args: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; what the terminal showed."""
    leader, follower = pty.openpty()
    # a fresh pseudo-terminal is 0 columns wide, and tqdm fits its bar into that: give it a size
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the follower closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "prune_torch", *args],
            cwd=folder,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=300,
            check=False,
        )
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    return done.returncode, b"".join(shown).decode(errors="replace")


def test_progress_shows_on_a_terminal_unless_quiet(tmp_path: Path) -> None:
    args = ["prune", *TINY, "--out", "out.pt", "--verify"]
    returncode, shown = _on_a_terminal(tmp_path, args)
    assert returncode == 0, shown
    for stage in ("building", "pruning", "verifying", "saving"):
        assert stage in shown, shown
    assert "stages" in shown
    returncode, shown = _on_a_terminal(tmp_path, [*args, "--force", "--quiet"])
    assert returncode == 0, shown
    assert shown.strip() == ""


def test_a_failed_verify_exits_1_and_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prune_torch import _verify

    @attrs.frozen
    class Different:
        ok: bool = False

        def __str__(self) -> str:
            return "outputs differ by 1.0"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_verify, "check_equivalence", lambda *args, **kwargs: Different())
    assert main(["prune", *TINY, "--quiet", "--verify", "--out", "out.pt"]) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("prune-torch prune: verification failed: pruning "), line
    assert "(outputs differ by 1.0)" in line
    assert "rolled back" in line
    assert list(tmp_path.iterdir()) == []
