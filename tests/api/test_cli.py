"""The command line end to end: ``python -m prune_torch prune | inspect | graph | demo`` in subprocesses.

Every subprocess runs once, in its own folder, four side by side (a module fixture), and each test
reads the result it is about. Further bad-input cases go through the same ``main`` in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import attrs
import pytest
import torch

import prune_torch as pt
from prune_torch._cli import main

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
    assert "verify: outputs equal" in out
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
    assert returncode != 0
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
        ("unknown-importance", "unknown importance 'l3'"),
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
