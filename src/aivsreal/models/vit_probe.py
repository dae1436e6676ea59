"""Linear probes on a frozen, web-scale pretrained ViT: `clip_probe` (UnivFD) and `dinov2_probe`.

UnivFD (Ojha et al. 2023) showed that a linear classifier on frozen CLIP ViT-L/14 features,
trained on one generator, detects generators it never saw far better than any fine-tuned
network (+15 mAP); later work (e.g. Cozzolino et al. 2024) confirmed CLIP features as a strong
base for unseen generators. DINOv2 is the self-supervised web-scale alternative, offered beside it.
These are the field's standard baselines; the toolkit's own probes stop at
ImageNet EfficientNet-Lite2 (0.789 same-codec AUC on the wild set's held-out sources,
benchmarks/results/wild.md) because no such weights can be had offline where it was built.

The weights come from the Hugging Face Hub through timm on first use (`train --pretrained`, about
1.2 GB for ViT-L/14, then cached), or from a local file (`--weights FILE`: a .safetensors or
.pth state_dict, in timm's layout or the original OpenAI / DINOv2 one, which timm converts;
loaded without running code from it). The backbone stays frozen; the probe reads its pooled class
token (after the final norm, before any projection: 1,024 values for ViT-L). Only `head` learns,
by `aivsreal train` or in closed form via `set_head`. A saved probe holds the backbone too, so
loading one needs neither the Hub nor the file.

Not measured here: the wild benchmark's `--vit-probe` option runs them where the weights exist
(hours of CPU for ViT-L at 12 views per image; minutes on a GPU). Option `arch` names any timm ViT
instead (the tests use a tiny random one).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._probe import PROBE_RECIPE, FrozenProbe
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig

TRAIN_RECIPE = PROBE_RECIPE
# model name -> timm architecture with its pretrained tag (which Hub weights)
ARCHS = {"clip_probe": "vit_large_patch14_clip_224.openai", "dinov2_probe": "vit_large_patch14_dinov2.lvd142m"}
CROP = 224  # both were pretrained on (or interpolate their position embeddings to) 224 px inputs


def default_config(name: str) -> ModelConfig:
    arch = ARCHS[name]
    cfg = timm.models.get_pretrained_cfg(arch)  # offline: only the name's defaults
    if cfg is None:
        raise AivsrealError(f"timm {timm.__version__} does not know {arch}; upgrade timm (pip install -U timm)")
    return ModelConfig(name=name, image_size=CROP, input_size=CROP, mean=tuple(cfg.mean), std=tuple(cfg.std),
                       options={"crop": CROP, "arch": arch})


class TokenProbe(FrozenProbe):
    """Frozen ViT -> pooled class token (`features`) -> one linear layer."""

    def __init__(self, backbone: nn.Module):
        super().__init__(backbone, backbone.num_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def vit_backbone(arch: str, size: int, pretrained: bool, weights: str | None) -> nn.Module:
    """timm `arch` at `size` px without a classifier: its pretrained weights from `weights` or the Hub
    when asked for them, else randomly initialised (the modules a saved probe loads into)."""
    if weights and not Path(weights).is_file():
        raise AivsrealError(f"{weights}: no such weights file (--weights takes a local state_dict of {arch})")
    overlay = {"file": str(weights)} if weights else None
    try:  # with its own classifier, so that timm loads strictly (it loads loosely when a head is dropped)
        model = timm.create_model(arch, pretrained=bool(pretrained or weights), img_size=size,
                                  pretrained_cfg_overlay=overlay)
    except Exception as e:  # no network, or a foreign file: timm and the Hub raise many kinds
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        if weights:
            raise AivsrealError(f"{weights}: not {arch} weights ({reason})") from None
        hub = getattr(timm.models.get_pretrained_cfg(arch), "hf_hub_id", None) or arch
        raise AivsrealError(f"could not load {arch} weights from the Hugging Face Hub ({hub}): {reason}. Connect "
                            f"once to download them (then they are cached), or pass --weights FILE (a state_dict of "
                            f"{arch})") from None
    model.reset_classifier(0)  # CLIP's projection or an ImageNet classifier: the probe reads the token before it
    return model


def build_probe(config: ModelConfig, pretrained: bool, weights: str | None) -> TokenProbe:
    arch = config.options.get("arch") or ARCHS[config.name]
    return TokenProbe(vit_backbone(arch, config.input_size, pretrained, weights))


@register_model
def clip_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> TokenProbe:
    return build_probe(config, pretrained, weights)


@register_model
def dinov2_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> TokenProbe:
    return build_probe(config, pretrained, weights)
