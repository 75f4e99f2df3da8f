"""timm, transformers and detection cases for the zoo (random weights, small configs, no downloads)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import torch

TIMM_FAMILIES = {
    "ResNet": "resnet18",
    "ResNeXt": "resnext26ts",
    "RegNet": "regnetx_002",
    "EfficientNet": "efficientnet_b0",
    "MobileNetV3": "mobilenetv3_small_050",
    "ConvNeXt": "convnext_atto",
    "ViT": "vit_tiny_patch16_224",
    "DeiT": "deit_tiny_patch16_224",
    "Swin": "swin_tiny_patch4_window7_224",
    "BEiT": "beit_base_patch16_224",
    "CaiT": "cait_xxs24_224",
    "PoolFormer": "poolformer_s12",
    "MLP-Mixer": "mixer_s16_224",
    "ResMLP": "resmlp_12_224",
    "CoAtNet": "coatnet_nano_rw_224",
    "EdgeNeXt": "edgenext_xx_small",
    "LeViT": "levit_128s",
    "PiT": "pit_ti_224",
    "TNT": "tnt_s_patch16_224",
    "NFNet": "nfnet_l0",
    "CSPNet": "cspresnet50",
    "CSPDarkNet": "cs3darknet_s",
    "ResNeSt": "resnest14d",
    "DLA": "dla34",
    "HRNet": "hrnet_w18_small",
    "Inception": "inception_v3",
    "Xception": "xception41",
    "DPN": "dpn68",
    "GhostNet": "ghostnet_100",
    "RepVGG": "repvgg_a0",
    "VoVNet": "ese_vovnet19b_dw",
    "TResNet": "tresnet_m",
    "MobileViT": "mobilevit_xxs",
    "EfficientFormer": "efficientformer_l1",
    "DenseNet": "densenet121",
    "MaxViT": "maxvit_tiny_rw_224",
    "EVA-02": "eva02_tiny_patch14_224",
    "FastViT": "fastvit_t8",
}

CI_TIMM = {"ConvNeXt", "ViT", "Swin", "MLP-Mixer", "GhostNet", "EfficientNet"}


def timm_cases(subset: str) -> Iterator[tuple[str, str, Any, Any, dict[str, Any]]]:
    try:
        import timm
    except ImportError:
        return
    available = set(timm.list_models())
    for family, name in TIMM_FAMILIES.items():
        if subset == "ci" and family not in CI_TIMM:
            continue
        if name not in available:
            yield (f"timm {family}", name, _missing(name), lambda: None, {})
            continue
        size = timm.get_pretrained_cfg(name).input_size if timm.get_pretrained_cfg(name) else (3, 224, 224)
        yield (
            f"timm {family}",
            name,
            lambda n=name: timm.create_model(n, pretrained=False),
            lambda s=size: torch.randn(1, *s),
            {},
        )


def _missing(name: str) -> Any:
    def build() -> torch.nn.Module:
        raise LookupError(f"{name} is not in this timm version")

    return build


def _ids(length: int = 16, vocab: int = 100) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, vocab, (1, length))}


def transformers_cases(subset: str) -> Iterator[tuple[str, str, Any, Any, dict[str, Any]]]:
    try:
        import transformers as tf
        from transformers.utils import logging
    except ImportError:
        return
    logging.set_verbosity_error()
    small = {"vocab_size": 100}
    gqa = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    enc = dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=64
    )
    cases: list[tuple[str, Any, Any]] = [
        ("BERT", lambda: tf.BertModel(tf.BertConfig(**small, **enc)), lambda: _ids()),
        ("RoBERTa", lambda: tf.RobertaModel(tf.RobertaConfig(**small, **enc, pad_token_id=1)), lambda: _ids()),
        (
            "DistilBERT",
            lambda: tf.DistilBertModel(
                tf.DistilBertConfig(
                    vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64
                )
            ),
            lambda: _ids(),
        ),
        ("ALBERT", lambda: tf.AlbertModel(tf.AlbertConfig(**small, embedding_size=32, **enc)), lambda: _ids()),
        (
            "GPT-2",
            lambda: tf.GPT2LMHeadModel(
                tf.GPT2Config(
                    vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0
                )
            ),
            lambda: _ids(),
        ),
        ("GPT-NeoX", lambda: tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(**small, **enc)), lambda: _ids()),
        (
            "OPT",
            lambda: tf.OPTForCausalLM(
                tf.OPTConfig(
                    vocab_size=100,
                    hidden_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    ffn_dim=128,
                    max_position_embeddings=64,
                    word_embed_proj_dim=64,
                )
            ),
            lambda: _ids(),
        ),
        (
            "LLaMA (GQA)",
            lambda: tf.LlamaForCausalLM(
                tf.LlamaConfig(
                    **small,
                    **gqa,
                )
            ),
            lambda: _ids(),
        ),
        (
            "Mistral",
            lambda: tf.MistralForCausalLM(
                tf.MistralConfig(
                    **small,
                    **gqa,
                )
            ),
            lambda: _ids(),
        ),
        ("Phi", lambda: tf.PhiForCausalLM(tf.PhiConfig(**small, **enc)), lambda: _ids()),
        (
            "Qwen2",
            lambda: tf.Qwen2ForCausalLM(
                tf.Qwen2Config(
                    **small,
                    **gqa,
                )
            ),
            lambda: _ids(),
        ),
        (
            "BART",
            lambda: tf.BartModel(
                tf.BartConfig(
                    vocab_size=100,
                    d_model=64,
                    encoder_layers=1,
                    decoder_layers=1,
                    encoder_attention_heads=4,
                    decoder_attention_heads=4,
                    encoder_ffn_dim=128,
                    decoder_ffn_dim=128,
                    max_position_embeddings=64,
                )
            ),
            lambda: {**_ids(), "decoder_input_ids": torch.randint(0, 100, (1, 8))},
        ),
        (
            "T5",
            lambda: tf.T5Model(tf.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=1, num_heads=4)),
            lambda: {**_ids(), "decoder_input_ids": torch.randint(0, 100, (1, 8))},
        ),
        (
            "ViT",
            lambda: tf.ViTModel(
                tf.ViTConfig(
                    hidden_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    intermediate_size=128,
                    image_size=32,
                    patch_size=8,
                )
            ),
            lambda: {"pixel_values": torch.randn(1, 3, 32, 32)},
        ),
        (
            "DeiT",
            lambda: tf.DeiTModel(
                tf.DeiTConfig(
                    hidden_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    intermediate_size=128,
                    image_size=32,
                    patch_size=8,
                )
            ),
            lambda: {"pixel_values": torch.randn(1, 3, 32, 32)},
        ),
        (
            "CLIP",
            lambda: tf.CLIPModel(
                tf.CLIPConfig(
                    text_config=dict(
                        vocab_size=100,
                        hidden_size=64,
                        num_hidden_layers=2,
                        num_attention_heads=4,
                        intermediate_size=128,
                        max_position_embeddings=32,
                    ),
                    vision_config=dict(
                        hidden_size=64,
                        num_hidden_layers=2,
                        num_attention_heads=4,
                        intermediate_size=128,
                        image_size=32,
                        patch_size=8,
                    ),
                    projection_dim=32,
                )
            ),
            lambda: {**_ids(8), "pixel_values": torch.randn(1, 3, 32, 32)},
        ),
        (
            "Whisper",
            lambda: tf.WhisperModel(
                tf.WhisperConfig(
                    vocab_size=100,
                    d_model=64,
                    encoder_layers=1,
                    decoder_layers=1,
                    encoder_attention_heads=4,
                    decoder_attention_heads=4,
                    encoder_ffn_dim=128,
                    decoder_ffn_dim=128,
                    num_mel_bins=16,
                    max_source_positions=16,
                    max_target_positions=32,
                    decoder_start_token_id=0,
                    pad_token_id=0,
                )
            ),
            lambda: {"input_features": torch.randn(1, 16, 32), "decoder_input_ids": torch.randint(0, 100, (1, 8))},
        ),
    ]
    for family, build, inputs in cases:
        if subset == "ci" and family not in {"BERT", "GPT-2", "LLaMA (GQA)", "ViT", "T5"}:
            continue
        yield (f"transformers {family}", family, build, inputs, {})


# ultralytics builds these from the yaml shipped in the package: no weights, no download
ULTRALYTICS = {
    "YOLOv8 detect": "yolov8n.yaml",
    "YOLOv8 seg": "yolov8n-seg.yaml",
    "YOLOv8 pose": "yolov8n-pose.yaml",
    "YOLOv8 cls": "yolov8n-cls.yaml",
    # C2PSA attention: qkv viewed and split by sizes kept on the module (num_heads, key_dim, head_dim)
    "YOLO11 detect": "yolo11n.yaml",
    # the same attention, an end-to-end head (one-to-one, top-k instead of NMS)
    "YOLO26 detect": "yolo26n.yaml",
}
# the R-CNN family first; every score kept and few detections, so there are boxes to compare
RCNN = ("fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn")
CI_DETECTION = {"yolov8n.yaml"}


def _yolo(name: str) -> Any:
    def build() -> torch.nn.Module:
        from ultralytics import YOLO

        return YOLO(name, verbose=False).model

    return build


def _torchvision_detector(name: str) -> Any:
    def build() -> torch.nn.Module:
        from torchvision import models

        extra: dict[str, Any] = {}
        if name in RCNN:
            extra = {"box_score_thresh": 0.0, "box_detections_per_img": 20}
        return models.get_model(name, weights=None, weights_backbone=None, **extra)

    return build


def detection_cases(subset: str) -> Iterator[tuple[str, str, Any, Any, dict[str, Any]]]:
    """Ultralytics YOLOv8 (detect, seg, pose, cls) from their yaml and torchvision's detectors, R-CNNs first."""
    have_ultralytics = importlib.util.find_spec("ultralytics") is not None
    for family, name in ULTRALYTICS.items():
        if subset == "ci" and name not in CI_DETECTION:
            continue
        if not have_ultralytics:
            yield (f"ultralytics {family}", name, _missing(f"{name} (ultralytics is not installed)"), lambda: None, {})
            continue
        side = 224 if name.endswith("-cls.yaml") else 256
        yield (
            f"ultralytics {family}",
            name,
            _yolo(name),
            lambda s=side: torch.rand(1, 3, s, s),
            {"detections": not name.endswith("-cls.yaml")},
        )
    if subset == "ci":
        return
    from torchvision import models

    names = list(RCNN) + [n for n in models.list_models(module=models.detection) if n not in RCNN]
    for name in names:
        yield (
            "torchvision detection",
            name,
            _torchvision_detector(name),
            lambda: ([torch.rand(3, 224, 224)],),
            {"detections": True},
        )


# --- diffusion and segmentation libraries (tiny configs, random weights) -------------------------


def _unet2d() -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=32,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        # heads and head dims of unequal sizes, as in real configs (8 and 8 cannot be told apart)
        attention_head_dim=16,
    )


def _unet2d_condition() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=4,  # a head count here (diffusers' legacy name): 4 heads of 8 and of 16
    )


def _autoencoder_kl() -> torch.nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    )


DIFFUSERS = {
    "UNet2DModel": (_unet2d, lambda: (torch.randn(1, 3, 32, 32), torch.tensor([10]))),
    "UNet2DConditionModel": (
        _unet2d_condition,
        lambda: (torch.randn(1, 4, 32, 32), torch.tensor([10]), torch.randn(1, 7, 32)),
    ),
    "AutoencoderKL": (_autoencoder_kl, lambda: (torch.randn(1, 3, 32, 32),)),
}
CI_DIFFUSERS = {"UNet2DModel"}

# (architecture, encoder): each decoder family once with a resnet encoder, PSPNet with an efficientnet
# one too, Segformer with its own mit encoder
SMP = (
    ("Unet", "resnet18"),
    ("FPN", "resnet18"),
    ("DeepLabV3Plus", "resnet18"),
    ("PSPNet", "resnet18"),
    ("PSPNet", "efficientnet-b0"),
    ("MAnet", "resnet18"),
    ("Segformer", "mit_b0"),
)
CI_SMP = {("Unet", "resnet18")}


def _smp(arch: str, encoder: str) -> Any:
    def build() -> torch.nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=2)

    return build


def _open_clip() -> torch.nn.Module:
    import open_clip

    return open_clip.create_model("ViT-B-32", pretrained=None)


def _open_clip_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    import open_clip

    # the tokenizer's vocabulary ships with the package: no download
    return torch.randn(1, 3, 224, 224), open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat"])


def library_cases(subset: str) -> Iterator[tuple[str, str, Any, Any, dict[str, Any]]]:
    """diffusers UNets and VAE from tiny configs; segmentation-models-pytorch decoders (64×64 inputs); open_clip."""
    have_diffusers = importlib.util.find_spec("diffusers") is not None
    for name, (build, make_inputs) in DIFFUSERS.items():
        if subset == "ci" and name not in CI_DIFFUSERS:
            continue
        if not have_diffusers:
            yield ("diffusers", name, _missing(f"{name} (diffusers is not installed)"), lambda: None, {})
            continue
        yield ("diffusers", name, build, make_inputs, {})
    have_smp = importlib.util.find_spec("segmentation_models_pytorch") is not None
    for arch, encoder in SMP:
        if subset == "ci" and (arch, encoder) not in CI_SMP:
            continue
        name = f"{arch} ({encoder})"
        if not have_smp:
            yield ("segmentation-models-pytorch", name, _missing(f"{name} (not installed)"), lambda: None, {})
            continue
        yield ("segmentation-models-pytorch", name, _smp(arch, encoder), lambda: torch.randn(1, 3, 64, 64), {})
    if subset == "ci":
        return
    # both towers of a CLIP: a ViT image encoder and a text transformer, nn.MultiheadAttention in each
    if importlib.util.find_spec("open_clip") is None:
        yield ("open_clip", "ViT-B-32", _missing("ViT-B-32 (open-clip-torch is not installed)"), lambda: None, {})
    else:
        yield ("open_clip", "ViT-B-32", _open_clip, _open_clip_inputs, {})
