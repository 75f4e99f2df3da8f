"""Export models from torchvision and transformers to ONNX for ``nox -s onnx`` (random weights, no downloads).

Run in an environment with torch, torchvision and transformers; prune-onnx itself never imports
torch. Writes ``NAME.onnx`` and ``NAME.json`` (the input shapes) into the folder given.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import torch


def _bert() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256
    )
    bert = BertModel(config).eval()
    with torch.no_grad():
        # a fresh init's zero biases and unit LayerNorm scales are equal tensors, which the exporter
        # stores once and shares between unrelated layers (coupling every head to the hidden size);
        # trained weights are never equal, and a little noise makes these as distinct
        for parameter in bert.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)

    class Hidden(torch.nn.Module):  # token ids in, last hidden state out: one tensor each way
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, use_cache=False).last_hidden_state

    ids = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(0))
    return Hidden().eval(), {"input_ids": ids}


def _vision(name: str, size: int = 224) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, {"x": torch.randn(1, 3, size, size)}


MODELS: dict[str, Any] = {
    "torchvision resnet50": lambda: _vision("resnet50"),
    "torchvision mobilenet_v3_large": lambda: _vision("mobilenet_v3_large"),
    "torchvision vit_b_16": lambda: _vision("vit_b_16"),
    "transformers BERT (2 layers, 128 wide)": _bert,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for label, build in MODELS.items():
        model, inputs = build()
        stem = label.split()[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(inputs.values()),
                str(folder / f"{stem}.onnx"),
                dynamo=False,
                input_names=list(inputs),
                opset_version=17,
            )
        shapes = {name: list(t.shape) for name, t in inputs.items()}
        (folder / f"{stem}.json").write_text(json.dumps({"label": f"{label}, torch.onnx.export", "shapes": shapes}))
        print(f"exported {label}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
