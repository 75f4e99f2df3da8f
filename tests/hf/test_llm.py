"""Streaming prune of a safetensors checkpoint (``pt.prune_checkpoint``) against the in-memory ``pt.prune``.

A small random LLaMA, Qwen2 and GPT-2 are saved with ``save_pretrained`` in several shards; the
streamed prune must write a checkpoint that plain ``from_pretrained`` loads, with logits
bit-identical to the same model loaded and pruned in memory with the same options: weight-only
importance read tensor by tensor, and calibration importance (Wanda, FLAP) gathered one decoder
layer at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import prune_torch as pt
from prune_ops import PruningError
from prune_torch._activations import gather_statistics
from prune_torch._checkpoint import _aliases, _build_on_meta
from prune_torch._layerwise import stream_statistics
from prune_torch._shards import SourceCheckpoint

transformers = pytest.importorskip("transformers", minversion="5.0")
pytest.importorskip("safetensors")
transformers.utils.logging.set_verbosity_error()
T = transformers

VOCAB = 40


def _llama() -> Any:
    return T.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=8,
        max_position_embeddings=32,
        initializer_range=0.3,
    )


def _qwen2() -> Any:
    return T.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=8,
        max_position_embeddings=32,
        initializer_range=0.3,
        tie_word_embeddings=True,
    )


def _gpt2() -> Any:
    return T.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0
    )


CONFIGS: dict[str, tuple[Callable[[], Any], dict[str, Any]]] = {
    "llama": (_llama, {}),
    "qwen2": (_qwen2, {}),
    # GPT-2's config derives the head dim from n_embd / n_head: only MLP units round-trip
    "gpt2": (_gpt2, {"head_ratio": 0.0}),
}


def _save(config: Any, directory: Path, shard: str = "12KB") -> None:
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(directory, safe_serialization=True, max_shard_size=shard)


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(3))


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(_ids()).logits


def _calibration() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randint(0, VOCAB, (2, 10), generator=gen) for _ in range(3)]


@pytest.mark.parametrize("family", sorted(CONFIGS))
@pytest.mark.parametrize("importance", ["l2", "l1"])
def test_streamed_prune_equals_in_memory_prune(tmp_path: Path, family: str, importance: str) -> None:
    build, extra = CONFIGS[family]
    src, dst = tmp_path / "src", tmp_path / "dst"
    _save(build(), src)
    assert len(list(src.glob("*.safetensors"))) > 1, "the test needs a sharded checkpoint"
    report = pt.prune_checkpoint(None, src, dst, ratio=0.5, importance=importance, show_progress=False, **extra)
    assert report.bytes_after < report.bytes_before
    assert report.after.parameters < report.before.parameters

    in_memory = T.AutoModelForCausalLM.from_pretrained(src).eval()
    pt.prune(in_memory, _ids(), ratio=0.5, importance=importance, show_progress=False, **extra)
    streamed = T.AutoModelForCausalLM.from_pretrained(dst).eval()
    assert torch.equal(_logits(streamed), _logits(in_memory))
    ours, theirs = streamed.state_dict(), in_memory.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == report.bytes_after
    assert sorted(index["weight_map"]) == sorted(
        json.loads((src / "model.safetensors.index.json").read_text())["weight_map"]
    )
    assert (dst / "generation_config.json").is_file()


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_layer_by_layer_statistics_equal_the_loaded_models(tmp_path: Path, family: str) -> None:
    _save(CONFIGS[family][0](), tmp_path)
    loaded = gather_statistics(T.AutoModelForCausalLM.from_pretrained(tmp_path), _calibration(), show_progress=False)
    meta, checkpoint = _build_on_meta(None, tmp_path), SourceCheckpoint(tmp_path)
    streamed = stream_statistics(meta, checkpoint, _aliases(meta, checkpoint), _calibration(), show_progress=False)
    assert all(t.is_meta for t in meta.parameters()), "every layer goes back to the meta device"
    assert sorted(streamed.stats) == sorted(loaded.stats)
    assert any(path.endswith("down_proj.weight") or path.endswith("mlp.c_proj.weight") for path, _ in loaded.stats)
    for key, ours in streamed.stats.items():
        theirs = loaded.stats[key]
        assert ours.count == theirs.count
        np.testing.assert_array_equal(ours.total, theirs.total, err_msg=str(key))
        np.testing.assert_array_equal(ours.squares, theirs.squares, err_msg=str(key))


@pytest.mark.parametrize("family", sorted(CONFIGS))
@pytest.mark.parametrize("importance", ["wanda", "flap"])
def test_streamed_calibration_prune_equals_in_memory_prune(tmp_path: Path, family: str, importance: str) -> None:
    build, extra = CONFIGS[family]
    src, dst = tmp_path / "src", tmp_path / "dst"
    _save(build(), src)
    options: dict[str, Any] = {"ratio": 0.5, "importance": importance, "show_progress": False, **extra}
    report = pt.prune_checkpoint(None, src, dst, calibration=_calibration(), **options)

    in_memory = T.AutoModelForCausalLM.from_pretrained(src).eval()
    expected = pt.prune(in_memory, _ids(), calibration=_calibration(), **options)
    assert report.plan.entries == expected.plan.entries
    streamed = T.AutoModelForCausalLM.from_pretrained(dst).eval()
    assert torch.equal(_logits(streamed), _logits(in_memory))
    ours, theirs = streamed.state_dict(), in_memory.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    # the calibration decided: weight magnitudes alone keep other units
    weight_only = pt.prune_checkpoint(None, src, tmp_path / "l2", ratio=0.5, show_progress=False, **extra)
    assert weight_only.plan.entries != report.plan.entries


def test_calibration_streaming_needs_a_decoder_stack(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    def mlp() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    save_file(mlp().state_dict(), tmp_path / "model.safetensors")
    batches = [torch.ones(3, 4)]
    with pytest.raises(PruningError, match=r"decoder stack.*Sequential has none.*in memory"):
        pt.prune_checkpoint(
            mlp, tmp_path, tmp_path / "out", importance="wanda", calibration=batches, example_inputs=batches[0]
        )


def test_streamed_config_follows_widths(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _save(_llama(), src)
    pt.prune_checkpoint(T.AutoConfig.from_pretrained(src), src, dst, ratio=0.5, show_progress=False)
    config = json.loads((dst / "config.json").read_text())
    assert config["intermediate_size"] == 24
    assert config["num_key_value_heads"] == 2
    assert config["num_attention_heads"] == 4
    assert config["head_dim"] == 8


def test_model_from_a_factory(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _save(_llama(), src)
    pt.prune_checkpoint(lambda: T.LlamaForCausalLM(_llama()), src, dst, ratio=0.5, show_progress=False)
    streamed = T.AutoModelForCausalLM.from_pretrained(dst).eval()
    assert streamed.model.layers[1].mlp.down_proj.in_features == 24
    assert _logits(streamed).shape == (2, 9, VOCAB)


def test_single_file_checkpoint_and_bfloat16(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(_llama()).to(torch.bfloat16).eval()
    model.save_pretrained(src, safe_serialization=True)
    pt.prune_checkpoint(None, src, dst, ratio=0.5, show_progress=False)
    assert not (dst / "model.safetensors.index.json").exists()
    streamed = T.AutoModelForCausalLM.from_pretrained(dst, dtype=torch.bfloat16).eval()
    in_memory = T.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).eval()
    pt.prune(in_memory, _ids(), ratio=0.5, show_progress=False)
    assert streamed.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert torch.equal(_logits(streamed), _logits(in_memory))


def test_refusals_write_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _save(_llama(), src)
    with pytest.raises(PruningError, match="uniform=True"):
        pt.prune_checkpoint(None, src, dst, global_ranking=True, show_progress=False)
    with pytest.raises(PruningError, match="needs 'calibration'"):
        pt.prune_checkpoint(None, src, dst, importance="wanda", show_progress=False)
    with pytest.raises(PruningError, match="'calibration' is for calibration-aware importance"):
        pt.prune_checkpoint(None, src, dst, calibration=_calibration(), show_progress=False)
    with pytest.raises(PruningError, match="bias compensation"):
        pt.prune_checkpoint(None, src, dst, importance="flap", calibration=_calibration(), compensate=True)
    with pytest.raises(PruningError, match="unknown option"):
        pt.prune_checkpoint(None, src, dst, between_steps=print, show_progress=False)
    with pytest.raises(PruningError, match="one step"):
        pt.prune_checkpoint(None, src, dst, steps=2, show_progress=False)
    with pytest.raises(PruningError, match=r"no model\.safetensors"):
        pt.prune_checkpoint(_llama(), tmp_path / "missing", dst, show_progress=False)
    # GPT-2 with pruned heads: its config cannot say so, and nothing is written
    gpt2_src = tmp_path / "gpt2"
    _save(_gpt2(), gpt2_src)
    with pytest.raises(pt.PretrainedError, match="Nothing was written"):
        pt.prune_checkpoint(None, gpt2_src, dst, ratio=0.5, show_progress=False)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    dst.mkdir()
    (dst / "keep.txt").write_text("x")
    with pytest.raises(PruningError, match="not empty"):
        pt.prune_checkpoint(None, src, dst, show_progress=False)
    pt.prune_checkpoint(None, src, dst, overwrite=True, show_progress=False)
    assert not (dst / "keep.txt").exists()
    assert os.path.isfile(dst / "config.json")


def test_wrong_config_is_named(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _save(_llama(), src)
    other = _llama()
    other.intermediate_size = 64
    with pytest.raises(PruningError, match="in the checkpoint"):
        pt.prune_checkpoint(other, src, dst, show_progress=False)
