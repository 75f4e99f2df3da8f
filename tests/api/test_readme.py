"""The README's code is true: every ```python block runs, in order, in one namespace, in a temp folder.

A ```text block right after a python block is the output that block prints; it is compared with
doctest's checker (``...`` stands for any text, whitespace runs are equal). Every ``prune-torch``
command line in a ```bash block parses with the real parser, the ones on the example model run,
and every ``nox -s NAME`` the README mentions is a session in noxfile.py.
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import re
import shlex
from pathlib import Path

import attrs
import pytest

from prune_torch._cli import _parser, main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@attrs.frozen
class Block:
    lang: str
    code: str
    line: int  # where the block's code starts in README.md, 1-based


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1) for m in FENCE.finditer(text)]


def python_blocks_with_output() -> list[tuple[Block, str | None]]:
    """Each python block with the text block that follows it directly (its shown output), if any."""
    found = blocks()
    pairs = []
    for i, block in enumerate(found):
        if block.lang != "python":
            continue
        shown = found[i + 1].code if i + 1 < len(found) and found[i + 1].lang == "text" else None
        pairs.append((block, shown))
    return pairs


def command_lines() -> list[list[str]]:
    """The ``prune-torch`` commands of the bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in blocks():
        if block.lang != "bash":
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            # a shell redirection or pipe ends the command's own arguments
            words = words[: next((i for i, w in enumerate(words) if w in (">", "|", "&&")), len(words))]
            if words and words[0] == "prune-torch":
                commands.append(words[1:])
    return commands


def test_the_readme_has_the_blocks_this_test_reads() -> None:
    langs = [b.lang for b in blocks()]
    assert langs.count("python") >= 4
    assert "text" in langs
    assert len(command_lines()) >= 4
    # an unlabelled or misspelt fence would silently escape this test
    assert set(langs) <= {"python", "text", "bash", ""}, langs
    assert all(b.lang or b.code.startswith("packages/") for b in blocks()), "label every code block"


def test_python_blocks_run_in_order_and_print_what_they_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for block, shown in python_blocks_with_output():
        # compile with the README's line numbers so a failure points at the README line
        tree = ast.parse("\n" * (block.line - 1) + block.code, filename=str(README))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(tree, str(README), "exec"), namespace)  # the README is ours
        if shown is not None:
            assert checker.check_output(shown, out.getvalue(), flags), (
                f"README.md line {block.line}: the block printed\n{out.getvalue()}\nbut the README shows\n{shown}"
            )
    # the files the examples say they write
    assert (tmp_path / "widths.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "pruned.pt").stat().st_size > 0


def test_every_command_line_parses(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    for words in command_lines():
        if words == ["--version"]:
            assert main(words) == 0
            assert capsys.readouterr().out.startswith("prune-torch ")
            continue
        args = parser.parse_args(words)
        assert args.command == words[0]


def test_the_command_lines_on_the_example_model_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runnable = [w for w in command_lines() if "prune_torch.examples:resnet_like" in w or w == ["demo"]]
    assert [w[0] for w in runnable] == ["prune", "demo"]
    for words in runnable:
        if words[0] == "demo":
            words = [*words, "--size", "32"]  # the same code path on a smaller picture
        with contextlib.redirect_stdout(io.StringIO()):
            assert main([*words, "--quiet"]) == 0, words
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.pt", "widths.png"]


def test_every_nox_session_the_readme_names_exists() -> None:
    named = set(re.findall(r"nox -s (\w+)", README.read_text(encoding="utf-8")))
    assert {"tests", "demo", "lint"} <= named
    noxfile = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    sessions = {
        node.name
        for node in noxfile.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(decorator) for decorator in node.decorator_list)
    }
    assert named <= sessions, named - sessions
