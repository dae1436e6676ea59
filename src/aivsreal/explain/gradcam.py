"""Grad-CAM (Selvaraju et al. 2017): which regions pushed the detector towards its verdict.

Our models output one logit, so the score explained is the logit for FAKE and its negative
for REAL (as `grad-cam`'s BinaryClassifierOutputTarget does). We implement it here rather
than depend on the `grad-cam` package: that pulls in OpenCV for a dozen lines of tensor code,
and it cannot follow our test-time flip averaging, which is done by explaining both views
and mirroring the second map back.

Which layer: at 32x32 input the last convolutional maps are 1x1 to 4x4 cells, and a 1x1 map
explains nothing. `default_layer` takes the deepest feature map with at least `MIN_CELLS`
cells a side, wherever it sits (fast: the last conv block's output; resnet50v2 and
efficientnet_lite0 at their default sizes: the activation just before the last 4x4 -> 2x2
stride); `layer=` picks another by its module name.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from aivsreal.errors import AivsrealError
from aivsreal.models import DetectorNet, to_tensor, tta_views
from aivsreal.predict.detector import Detector

MIN_CELLS = 4


def default_layer(model: DetectorNet) -> str:
    """Name of the last module to finish that outputs a map of >= MIN_CELLS x MIN_CELLS cells."""
    size = model.config.image_size
    finished: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: finished.append((name, tuple(out.shape))))
             for name, m in model.named_modules() if name and name != "normalize"]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=_device(model)))
    finally:
        for h in hooks:
            h.remove()
    maps = [name for name, shape in finished if len(shape) == 4 and min(shape[2:]) >= MIN_CELLS]
    if not maps:
        raise AivsrealError(f"{model.config.name}: no feature map of {MIN_CELLS}x{MIN_CELLS} or more to explain")
    return maps[-1]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _module(model: DetectorNet, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise AivsrealError(f"no layer {layer!r} in {model.config.name}; the default is {default_layer(model)!r}")
    return modules[layer]


def grad_cam(model: DetectorNet, pixels: np.ndarray, explain_fake: Sequence[bool] | np.ndarray,
             layer: str | None = None, tta: bool = False, views: Sequence[int] | None = None,
             max_pass: int | None = None) -> np.ndarray:
    """Grad-CAM maps, (N, H, W) float32 in [0, 1] at the views' size, for (N, H, W, 3) uint8 views.

    `views`: how many consecutive views make one image (a native-crop model's tiles; default one each),
    and `explain_fake[i]` chooses the evidence shown for image i: for FAKE (True) or for REAL. An image's
    verdict is the mean of its tiles' logits, so the Grad-CAM of that verdict is each tile's own map
    scaled by the same 1/T: the maps of one image are scaled together, by their strongest cell, and a
    tile with less evidence shows less. At most `max_pass` views go through one forward and backward
    pass (default all). Runs in fp32: bf16 gradients make visibly noisy maps. No positive evidence: 0.
    """
    counts = np.ones(len(pixels), dtype=int) if views is None else np.asarray(views, dtype=int)
    fake = np.repeat(np.asarray(explain_fake, dtype=bool), counts)
    model.eval()
    target = _module(model, layer or default_layer(model))
    step = max_pass or max(len(pixels), 1)
    raw = np.concatenate([_raw_maps(model, target, layer, pixels[i : i + step], fake[i : i + step], tta)
                          for i in range(0, len(pixels), step)]) if len(pixels) else np.zeros(pixels.shape[:3])
    for end, n in zip(np.cumsum(counts), counts, strict=True):
        group = raw[end - n : end]
        low, span = group.min(), group.max() - group.min()
        group[:] = (group - low) / span if span > 0 else 0.0
    return raw.astype(np.float32, copy=False)  # already float32: no second copy of every map


def _raw_maps(model: DetectorNet, target: nn.Module, layer: str | None, pixels: np.ndarray, fake: np.ndarray,
              tta: bool) -> np.ndarray:
    """Unscaled Grad-CAM maps (N, H, W) of one pass: views are independent in eval mode."""
    x = to_tensor(pixels).float().to(_device(model))
    sign = torch.where(torch.as_tensor(fake), 1.0, -1.0).to(x.device)
    total = torch.zeros(x.shape[0], x.shape[2], x.shape[3], device=x.device)
    captured: list[torch.Tensor] = []
    hook = target.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        for k, view in enumerate(tta_views(x, tta)):
            with torch.enable_grad():
                view = view.clone().requires_grad_(True)  # a graph even if the weights are frozen
                score = (model(view).float() * sign).sum()
                acts = captured[-1]
                if not isinstance(acts, torch.Tensor) or acts.ndim != 4:  # e.g. --layer on the final linear unit
                    shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
                    raise AivsrealError(f"layer {layer!r} of {model.config.name} outputs {shape}, not a feature "
                                        f"map to explain; the default is {default_layer(model)!r}")
                grads, = torch.autograd.grad(score, acts)
            weights = grads.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * acts).sum(dim=1, keepdim=True)).detach()
            cam = nn.functional.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
            total += cam.flip(2) if k == 1 else cam
            captured.clear()
    finally:
        hook.remove()
    return total.cpu().numpy()


class Explainer:
    """Grad-CAM for a Detector, on its own fp32 copy of the network, under a lock.

    The hooks Grad-CAM sets must never see another thread's forward pass (the web service
    scores on a worker thread), and bf16 gradients make visibly noisy maps.
    """

    def __init__(self, det: Detector, layer: str | None = None, max_pass: int | None = None):
        if det.network is None:
            raise AivsrealError("Grad-CAM needs the PyTorch model file (model.pt), not an ONNX export")
        self.det = det
        self.layer = layer or default_layer(det.network)
        _module(det.network, self.layer)  # a misspelt --layer fails before any image is read
        self.max_pass = max_pass  # views per forward and backward pass; None: the detector's own pass
        self._network: DetectorNet | None = None  # the fp32 copy, made on first use (serve may never explain)
        self._lock = threading.Lock()

    def explain(self, pixels: np.ndarray, target: str = "predicted", p_fake: np.ndarray | None = None,
                views: Sequence[int] | None = None) -> np.ndarray:
        """Grad-CAM maps (N, H, W) in [0, 1] of N views: evidence for FAKE, for REAL, or for each verdict.

        `views`: how many consecutive views make one image (see `grad_cam`); `p_fake` is per image."""
        counts = [1] * len(pixels) if views is None else list(views)
        if target == "predicted":
            if p_fake is None:
                p_fake = self.det.score_views(np.split(pixels, np.cumsum(counts)[:-1]))[0] if counts else []
            explain_fake = np.asarray(p_fake) >= self.det.threshold
        elif target in ("FAKE", "REAL"):
            explain_fake = np.full(len(counts), target == "FAKE")
        else:
            raise AivsrealError(f"unknown Grad-CAM target {target!r} (predicted, FAKE, REAL)")
        step = self.max_pass or self.det.views_per_pass(pixels.shape[1:3])
        with self._lock:
            if self._network is None:
                self._network = copy.deepcopy(self.det.network).float().eval()
            return grad_cam(self._network, pixels, explain_fake, layer=self.layer, tta=self.det.tta, views=counts,
                            max_pass=step)

    def explain_each(self, views: Sequence[np.ndarray], target: str = "predicted",
                     p_fake: np.ndarray | None = None) -> list[np.ndarray]:
        """`explain` for a list of images' (V, H, W, 3) views: each image's (V, H, W) maps."""
        if not len(views):
            return []
        counts = [len(v) for v in views]
        maps = self.explain(np.concatenate(views), target=target, p_fake=p_fake, views=counts)
        return np.split(maps, np.cumsum(counts)[:-1])
