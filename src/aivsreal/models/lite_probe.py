"""Linear probes on a frozen ImageNet EfficientNet-Lite (UnivFD-style): `lite0_probe`, `lite1_probe`,
`lite2_probe`, `lite2_probe_stats`.

UnivFD (Ojha et al. 2023) found that a linear classifier on a frozen pretrained backbone
generalises to generators it never saw far better than a network fine-tuned on a few: the probe
cannot reshape the features around the training generators' quirks. Generator traces are
low-level, so the probe reads every stage, not only the last: the global average of each stage's
output and of the head (2,064 values for Lite0 and Lite1, which differ in depth only; 2,136 for
Lite2). The backbone stays frozen (eval mode, no gradients) whatever the training loop does; only
`head` learns, by `aivsreal train` or in closed form from a logistic regression (`set_head`, as
benchmarks/wild.py and the bundled `wild` detector do).

`lite2_probe_stats` pools each stage by its mean and its standard deviation over the image: the
spread of a feature map is a texture statistic, the kind of global statistic Gram-Net (Liu et al.
2020) found to transfer across face generators, and one that the average alone washes out.

Meant for native-resolution crops (`--crop 224`): the network sees them as they are.
On the wild set's held-out sources (3,735 images) the Lite2 probe scores 0.789 same-codec AUC against
Lite0's 0.753 and Lite1's 0.756, and 0.786 with the stats pooling (benchmarks/results/wild.md); it is the
bundled `wild` detector's recipe (Lite0's until 2026-11-27).
"""

from __future__ import annotations

import torch
from torch import nn

from aivsreal.models._probe import PROBE_RECIPE, FrozenProbe, per_channel, pooled
from aivsreal.models._registry import register_model
from aivsreal.models.efficientnet_lite import LITE_MEAN, LITE_STD, lite_backbone
from aivsreal.models.network import ModelConfig

TRAIN_RECIPE = PROBE_RECIPE
POOLING = {"lite2_probe_stats": "mean_std"}  # the others pool by the mean


def default_config(name: str) -> ModelConfig:
    return ModelConfig(name=name, image_size=224, input_size=224, mean=LITE_MEAN, std=LITE_STD,
                       options={"crop": 224, "pool": POOLING.get(name, "mean")})


class StageProbe(FrozenProbe):
    """Frozen backbone (any timm EfficientNet-Lite) -> pooled stages (`features`) -> one linear layer.
    `pool`: "mean" (one value per channel) or "mean_std" (two: [means, standard deviations] per stage)."""

    def __init__(self, backbone: nn.Module, pool: str = "mean"):
        values = per_channel(pool)
        backbone.reset_classifier(0)  # the ImageNet classifier is never used: 1.3M weights less to store
        last_convs = [[m for m in stage.modules() if isinstance(m, nn.Conv2d)][-1] for stage in backbone.blocks]
        widths = [conv.out_channels for conv in last_convs]
        super().__init__(backbone, values * (sum(widths) + backbone.num_features))
        self.pool = pool

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.backbone
        x = n.bn1(n.conv_stem(x))
        out = []
        for stage in n.blocks:
            x = stage(x)
            out += pooled(x, self.pool)
        out += pooled(n.bn2(n.conv_head(x)), self.pool)
        return torch.cat(out, 1)


def build_probe(backbone: str, config: ModelConfig, pretrained: bool, weights: str | None) -> StageProbe:
    """Frozen `backbone` with a fresh head. Loading a saved probe needs no ImageNet file: its weights are in it."""
    pool = config.options.get("pool", "mean")  # probes saved before pooling was an option pooled by mean
    return StageProbe(lite_backbone(backbone, pretrained, weights), pool)


@register_model
def lite0_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> StageProbe:
    return build_probe("efficientnet_lite0", config, pretrained, weights)


@register_model
def lite1_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> StageProbe:
    return build_probe("efficientnet_lite1", config, pretrained, weights)


@register_model
def lite2_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> StageProbe:
    return build_probe("efficientnet_lite2", config, pretrained, weights)


@register_model
def lite2_probe_stats(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> StageProbe:
    return build_probe("efficientnet_lite2", config, pretrained, weights)
