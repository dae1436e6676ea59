"""`ensemble`: trained detectors voting as one model (soft voting), made by `aivsreal ensemble`.

Why one network rather than a loop over models: predict, evaluate, serve, Grad-CAM, calibration
and ONNX export then need no ensemble code of their own, and the file scores exactly what was
measured. On CIFAKE three models of two families, averaged, beat each of them (98.43% test
against 97.7-98.0%, benchmarks/results/cifake_ensembles.md, row cifake_ensemble).

The rule, fixed: P(FAKE) = mean over members of sigmoid(member logit / member temperature), each
member with its own TTA, as `aivsreal predict` scores that member alone; the ensemble's output is
logit(that mean), its own threshold 0.5. Every member must read the same pixels (the same
image_size and native crop), since the detector decodes an image once for all of them. The
ensemble's domain check is its last member's: the penultimate features the check reads are the
last member's (network.forward_with_features hooks the last linear layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models._registry import build_model, register_model
from aivsreal.models.file import ModelMeta, read_config
from aivsreal.models.network import DetectorNet, ModelConfig, tta_views

TRAIN_RECIPE: dict[str, Any] = {}  # never trained: made from trained members
MAKE_ONE = "make one from trained models with `aivsreal ensemble A.pt B.pt --out ensemble.pt`"
P_EPS = 1e-6  # P(FAKE) is clipped to [eps, 1 - eps] before the logit, so the output stays finite


def default_config(name: str) -> ModelConfig:
    # mean 0 and std 1/255 make the outer normalisation the identity: each member normalises for itself
    return ModelConfig(name=name, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, options={"members": []})


class SoftVote(nn.Module):
    """Members' P(FAKE), averaged; returns the logit of the mean, shape (N, 1) like any head."""

    def __init__(self, members: Sequence[DetectorNet], tta: Sequence[bool], temperature: Sequence[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.tta, self.temperature = list(tta), list(temperature)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        p = 0.0
        for member, tta, temperature in zip(self.members, self.tta, self.temperature, strict=True):
            views = tta_views(pixels, tta)
            logit = sum(member(v).float() for v in views) / len(views)
            p = p + torch.sigmoid(logit / temperature)
        p = (p / len(self.members)).clamp(P_EPS, 1 - P_EPS)
        return (torch.log(p) - torch.log1p(-p)).unsqueeze(-1)  # logit, in ops every ONNX runtime has


@register_model
def ensemble(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    if pretrained or weights:
        raise AivsrealError(f"an ensemble is not trained and takes no --pretrained/--weights: {MAKE_ONE}")
    members = config.options.get("members") or []
    if len(members) < 2:
        raise AivsrealError(f"an ensemble needs at least two trained members: {MAKE_ONE}")
    for i, m in enumerate(members):  # a model file is data: refuse a damaged member list in one line
        ok = isinstance(m, dict) and isinstance(m.get("config"), dict) and isinstance(m.get("tta"), bool)
        t = m.get("temperature") if ok else None
        if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < float("inf")):
            raise AivsrealError(f"ensemble member {i + 1} is damaged (needs config, tta and a positive "
                                "temperature); remake the file with `aivsreal ensemble`")
    nets = [build_model(read_config(m["config"], f"ensemble member {i + 1}")) for i, m in enumerate(members)]
    return SoftVote(nets, [m["tta"] for m in members], [float(m["temperature"]) for m in members])


def make_ensemble(members: Sequence[tuple[str, DetectorNet, ModelMeta]]) -> tuple[DetectorNet, ModelMeta]:
    """One detector from (name, network, meta) of trained members; refuses members that read
    different pixels. The split and data fingerprint are kept only when every member shares
    them: then `aivsreal evaluate` rebuilds a test split that none of the members trained on."""
    if len(members) < 2:
        raise AivsrealError(f"an ensemble needs at least two members (got {len(members)})")
    first = members[0][1].config
    for name, net, _ in members[1:]:
        if _view(net.config) != _view(first):
            raise AivsrealError(
                f"{name} reads {_reads(net.config)} but {members[0][0]} reads {_reads(first)}: ensemble "
                "members must read the same pixels; train them with the same --image-size / --crop / rescale")
    config = default_config("ensemble")
    config.image_size = config.input_size = first.image_size
    config.options = {"members": [{"name": name, "config": net.config.to_dict(), "tta": meta.tta,
                                   "temperature": meta.temperature} for name, net, meta in members]}
    if first.crop:
        config.options["crop"] = first.crop
    if first.rescale:
        config.options.update(rescale=first.rescale, draft=first.draft)
    network = build_model(config)
    for target, (_, net, _) in zip(network.network.members, members, strict=True):
        target.load_state_dict(net.state_dict())
    metas = [meta for _, _, meta in members]
    shared = all(m.split == metas[0].split and m.data_fingerprint == metas[0].data_fingerprint for m in metas)
    summary = {"ensemble": {"rule": "mean of the members' P(FAKE), threshold 0.5",
                            "members": [{"name": name, "model": net.config.name,
                                         "test": meta.summary.get("metrics", {}).get("test", {})}
                                        for name, net, meta in members]}}
    if shared:  # one dataset and split: the card can say what it was trained on
        summary["data"] = metas[0].summary.get("data", {})
        trained_on = {m.summary.get("trained_on") for m in metas}
        if len(trained_on) == 1 and None not in trained_on:
            summary["trained_on"] = trained_on.pop()
    meta = ModelMeta(split=metas[0].split if shared else None,
                     data_fingerprint=metas[0].data_fingerprint if shared else None,
                     summary=summary, domain=metas[-1].domain)
    return network.eval(), meta


def _view(config: ModelConfig) -> tuple:
    return config.image_size, config.crop, config.rescale, config.draft if config.rescale else None


def _reads(config: ModelConfig) -> str:
    if config.rescale:
        return f"{config.crop} px crops of the image at shorter side {config.rescale} px"
    return f"{config.crop} px native crops" if config.crop else f"images resized to {config.image_size} px"
