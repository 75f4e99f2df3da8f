"""The prune-onnx command line: prune (with --verify and --plan), inspect, graph, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from tests.onnx.test_onnx import small

from prune_onnx._cli import main


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "small.onnx"
    onnx.save(small(), str(path))
    return path


def test_prune_verifies_and_writes_model_and_plan(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plan = tmp_path / "pruned.onnx", tmp_path / "plan.json"
    code = main(
        ["prune", str(model_path), "--out", str(out), "--plan", str(plan), "--verify", "--input-shape", "x=2,3,8,8"]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "verify: outputs equal" in text
    onnx.checker.check_model(onnx.load(str(out)))
    assert json.loads(plan.read_text())["schema"] == "prune-plan/2"


def test_inspect_lists_groups(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(model_path)]) == 0
    text = capsys.readouterr().out
    assert "1 prunable" in text
    assert "why: dim 1 of model output" in text


@pytest.mark.parametrize("fmt", ["dot", "json"])
def test_graph_writes(model_path: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"g.{fmt}"
    assert main(["graph", str(model_path), "--format", fmt, "--out", str(out)]) == 0
    assert out.read_text().strip()


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no ONNX file" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "m.onnx", "--out", "o.onnx", "--input-shape", "bad"])
    assert exit_info.value.code == 2
