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
             layer: str | None = None, tta: bool = False) -> np.ndarray:
    """Grad-CAM maps, (N, H, W) float32 in [0, 1] at the images' size, for (N, H, W, 3) uint8 pixels.

    `explain_fake[i]` chooses the evidence shown for image i: for FAKE (True) or for REAL.
    Runs in fp32: bf16 gradients make visibly noisy maps. A map with no positive evidence is 0.
    """
    model.eval()
    target = _module(model, layer or default_layer(model))
    sign = torch.where(torch.as_tensor(np.asarray(explain_fake, dtype=bool)), 1.0, -1.0)
    x = to_tensor(pixels).float().to(_device(model))
    sign = sign.to(x.device)
    views = tta_views(x, tta)
    total = torch.zeros(x.shape[0], x.shape[2], x.shape[3], device=x.device)
    captured: list[torch.Tensor] = []
    hook = target.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        for k, view in enumerate(views):
            with torch.enable_grad():
                view = view.clone().requires_grad_(True)  # a graph even if the weights are frozen
                score = (model(view).float() * sign).sum()  # images are independent in eval mode
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
    finally:
        hook.remove()
    low = total.amin(dim=(1, 2), keepdim=True)
    high = total.amax(dim=(1, 2), keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (total - low) / torch.where(span > 0, span, 1.0), 0.0)
    return scaled.cpu().numpy().astype(np.float32)


class Explainer:
    """Grad-CAM for a Detector, on its own fp32 copy of the network, under a lock.

    The hooks Grad-CAM sets must never see another thread's forward pass (the web service
    scores on a worker thread), and bf16 gradients make visibly noisy maps.
    """

    def __init__(self, det: Detector, layer: str | None = None):
        if det.network is None:
            raise AivsrealError("Grad-CAM needs the PyTorch model file (model.pt), not an ONNX export")
        self.det = det
        self.layer = layer or default_layer(det.network)
        _module(det.network, self.layer)  # a misspelt --layer fails before any image is read
        self._network: DetectorNet | None = None  # the fp32 copy, made on first use (serve may never explain)
        self._lock = threading.Lock()

    def explain(self, pixels: np.ndarray, target: str = "predicted", p_fake: np.ndarray | None = None) -> np.ndarray:
        """Grad-CAM maps (N, H, W) in [0, 1]: evidence for FAKE, for REAL, or for each verdict."""
        if target == "predicted":
            p_fake = self.det.predict_proba(pixels) if p_fake is None else p_fake
            explain_fake = np.asarray(p_fake) >= self.det.threshold
        elif target in ("FAKE", "REAL"):
            explain_fake = np.full(len(pixels), target == "FAKE")
        else:
            raise AivsrealError(f"unknown Grad-CAM target {target!r} (predicted, FAKE, REAL)")
        with self._lock:
            if self._network is None:
                self._network = copy.deepcopy(self.det.network).float().eval()
            return grad_cam(self._network, pixels, explain_fake, layer=self.layer, tta=self.det.tta)
