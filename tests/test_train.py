import numpy as np
import pytest
import torch

from aivsreal.data.splits import SplitRecipe, prepare
from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config
from aivsreal.models.network import logits_and_features
from aivsreal.train.augment import alternating_flips, cutout, degrade, flip_and_translate
from aivsreal.train.checkpoint import CHECKPOINT
from aivsreal.train.loop import TrainConfig, train

QUICK = TrainConfig(epochs=3, batch_size=16, lr=0.05, patience=10)


@pytest.fixture
def run_data(tiny_data, cache_dir):
    return prepare(tiny_data, 32, cache_dir, SplitRecipe(val_fraction=0.25, seed=0))


def test_learns_a_separable_dataset(run_data, tmp_path):
    model = build_model(default_config("fast"))
    state = train(model, run_data.train, run_data.val, QUICK, tmp_path, torch.device("cpu"))
    assert state.epoch == 3 and len(state.history) == 3
    fake = logits_and_features(model, run_data.test.images, torch.device("cpu"))[0] >= 0  # P(FAKE) >= 0.5
    assert (fake == run_data.test.labels).mean() >= 0.9
    assert (tmp_path / CHECKPOINT).exists() and (tmp_path / "history.csv").exists()
    # the LR each epoch's last step used: positive, rising then falling (OneCycle), never the
    # extrapolated value past the schedule's end (negative on short runs)
    lrs = [h["lr"] for h in state.history]
    assert all(0 < lr <= QUICK.lr for lr in lrs) and lrs[-1] < max(lrs)


@pytest.mark.parametrize("option", [{}, {"ema": 0.99}, {"lookahead": 3}, {"optimizer": "muon"},
                                    {"alternate_flip": True}, {"bias_lr_scale": 8.0}])
def test_resume_continues_where_it_stopped(run_data, tmp_path, option):
    cpu = torch.device("cpu")
    cfg = TrainConfig(**{**QUICK.__dict__, **option})
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    torch.manual_seed(0)  # the same initial weights for both runs, whatever ran before this test
    full = build_model(default_config("fast"))
    train(full, run_data.train, run_data.val, cfg, full_dir, cpu)
    # Stop after 1 epoch (as if killed), then resume to 3: same result as one uninterrupted run.
    torch.manual_seed(0)
    first = build_model(default_config("fast"))
    with pytest.raises(SystemExit):
        train(first, run_data.train, run_data.val, cfg, part_dir, cpu, on_epoch_end=_exit_after_one)
    resumed = build_model(default_config("fast"))
    state = train(resumed, run_data.train, run_data.val, cfg, part_dir, cpu, resume=True)
    assert state.epoch == 3
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def _exit_after_one(state):
    if state.epoch == 1:
        raise SystemExit


def test_ema_weights_are_validated_and_kept(run_data, tmp_path):
    from aivsreal.safe_io import safe_load
    from aivsreal.train.loop import evaluate_loss

    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, patience=10, ema=0.9)
    model = build_model(default_config("fast"))
    state = train(model, run_data.train, run_data.val, cfg, tmp_path, torch.device("cpu"))
    ckpt = safe_load(tmp_path / CHECKPOINT, what="checkpoint")
    raw, averaged = ckpt["model"], ckpt["ema"]
    # The average trails the last step's weights: it is a different model, and the one kept.
    assert any(not torch.allclose(raw[k].float(), averaged[k].float()) for k in raw)
    kept = averaged if state.best_epoch == state.epoch else ckpt["best_model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v.cpu(), kept[k]), k
    val_loss, _ = evaluate_loss(model, run_data.val, torch.device("cpu"))
    assert val_loss == pytest.approx(state.best_val_loss, rel=1e-4)
    with pytest.raises(AivsrealError, match="--ema is a decay"):
        TrainConfig(ema=1.0)


def test_lookahead_pulls_the_weights_back_to_a_slow_copy(run_data, tmp_path):
    """Lookahead changes the run, and each epoch ends on its slow weights: those are validated and kept."""
    from aivsreal.safe_io import safe_load

    finals = []
    for k in (0, 3):
        model = build_model(default_config("fast"))
        train(model, run_data.train, run_data.val, TrainConfig(**{**QUICK.__dict__, "lookahead": k}),
              tmp_path / str(k), torch.device("cpu"))
        finals.append(model.state_dict())
    assert any(not torch.allclose(finals[0][k].float(), finals[1][k].float()) for k in finals[0])
    ckpt = safe_load(tmp_path / "3" / CHECKPOINT, what="checkpoint")
    slow = [s["lookahead_slow_buff"] for s in ckpt["optimizer"]["state"].values()]
    names = dict(model.named_parameters())
    last = [v for k, v in ckpt["model"].items() if k in names]
    assert len(slow) == len(last) == len(names)
    assert all(any(torch.equal(w, s) for s in slow) for w in last)
    with pytest.raises(AivsrealError, match="--lookahead is a number of steps"):
        TrainConfig(lookahead=-1)


def test_muon_learns_with_orthogonal_filter_steps(run_data, tmp_path):
    """--optimizer muon: filter banks step along a semi-orthogonal matrix and keep the norm sqrt(out);
    the rest (batch norm, head) takes SGD; and the network still learns."""
    from aivsreal.train.loop import _base_optimizer
    from aivsreal.train.muon import orthogonalize

    g = torch.randn(64, 288, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(orthogonalize(g))
    assert s.min() > 0.5 and s.max() < 1.5  # every direction moves by about the same amount
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 2  # unlike the raw gradient's
    assert orthogonalize(g.T).shape == (288, 64)

    model = build_model(default_config("fast"))
    opt = _base_optimizer(model, TrainConfig(optimizer="muon", lr=0.05, weight_decay=5e-4))
    kinds = [(group["orthogonal"], p.ndim, group["weight_decay"]) for group in opt.param_groups
             for p in group["params"]]
    assert all(o == (nd == 4) for o, nd, _ in kinds) and len(kinds) == len(list(model.parameters()))
    assert all(wd == (5e-4 if nd in (2, 3) else 0.0) for _, nd, wd in kinds)  # decay on the head only

    model = build_model(default_config("fast"))
    state = train(model, run_data.train, run_data.val, TrainConfig(**{**QUICK.__dict__, "optimizer": "muon"}),
                  tmp_path, torch.device("cpu"))
    assert state.epoch == 3
    fake = logits_and_features(model, run_data.test.images, torch.device("cpu"))[0] >= 0
    assert (fake == run_data.test.labels).mean() >= 0.9
    for p in model.parameters():
        if p.ndim == 4:
            assert p.norm().item() == pytest.approx(len(p) ** 0.5, rel=0.05)


def test_resume_refuses_other_options(run_data, tmp_path):
    train(build_model(default_config("fast")), run_data.train, run_data.val,
          TrainConfig(epochs=1, batch_size=32), tmp_path, torch.device("cpu"))
    with pytest.raises(AivsrealError, match="differ: lr"):
        train(build_model(default_config("fast")), run_data.train, run_data.val,
              TrainConfig(epochs=1, batch_size=32, lr=0.5), tmp_path, torch.device("cpu"), resume=True)


def test_early_stopping_restores_the_best_epoch(run_data, tmp_path):
    cfg = TrainConfig(epochs=30, batch_size=32, lr=5.0, schedule="constant", patience=2)  # diverges
    model = build_model(default_config("fast"))
    state = train(model, run_data.train, run_data.val, cfg, tmp_path, torch.device("cpu"))
    assert state.stopped_early and state.epoch == state.best_epoch + 2 < 30
    from aivsreal.train.loop import evaluate_loss

    val_loss, _ = evaluate_loss(model, run_data.val, torch.device("cpu"))
    assert val_loss == pytest.approx(state.best_val_loss, rel=1e-3)


def test_flip_and_translate_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    flipped_only = flip_and_translate(x, True, 0, g)
    for i in range(2):
        assert torch.equal(flipped_only[i], x[i]) or torch.equal(flipped_only[i], x[i].flip(2))
    shifted = flip_and_translate(x, False, 1, g)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    for i in range(2):  # every output is some 6x6 window of the reflect-padded input
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(shifted[i], w) for w in windows)
    assert torch.equal(flip_and_translate(x, False, 0, g), x)


def test_alternating_flips_show_every_image_both_ways_in_each_pair_of_epochs(run_data, tmp_path, monkeypatch):
    mask = alternating_flips(1000, seed=3)
    idx = torch.randperm(1000)[:300]
    first = mask(idx, 0)
    assert 0.4 < first.float().mean() < 0.6  # a coin per image to begin with
    assert torch.equal(mask(idx, 1), ~first) and torch.equal(mask(idx, 2), first)
    assert torch.equal(alternating_flips(1000, seed=3)(idx, 0), first)  # from the seed alone: resumable
    x = torch.rand(len(idx), 3, 4, 4)
    out = flip_and_translate(x, first, 0, torch.Generator())
    assert torch.equal(out[first], x[first].flip(3)) and torch.equal(out[~first], x[~first])

    # the loop flips by it: with no shift, each training image's view in epoch 2 is the other way round
    import aivsreal.train.loop as loop

    real_augment, real_batches, now = loop.flip_and_translate, loop.epoch_batches, {}
    seen: dict[int, dict[int, torch.Tensor]] = {}

    def spy_batches(data, x_all, order, cfg, gen, epoch, device):
        for x, rows in real_batches(data, x_all, order, cfg, gen, epoch, device):
            now.update(epoch=epoch, rows=rows)
            yield x, rows

    def spy_augment(x, flip, max_shift, gen):
        assert isinstance(flip, torch.Tensor)  # a mask, not a coin per image
        out = real_augment(x, flip, max_shift, gen)
        for image, row in zip(out, now["rows"], strict=True):
            seen.setdefault(int(row), {})[now["epoch"]] = image.clone()
        return out

    monkeypatch.setattr(loop, "epoch_batches", spy_batches)
    monkeypatch.setattr(loop, "flip_and_translate", spy_augment)
    cfg = TrainConfig(**{**QUICK.__dict__, "epochs": 2, "max_shift": 0, "alternate_flip": True})
    train(build_model(default_config("fast")), run_data.train, run_data.val, cfg, tmp_path, torch.device("cpu"))
    both = [views for views in seen.values() if len(views) == 2]
    assert len(both) >= 10
    assert all(torch.equal(views[1], views[0].flip(2)) and not torch.equal(views[1], views[0]) for views in both)


def test_cutout_paints_one_clipped_square_per_image_in_its_mean_colour():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 10, 12) * 255
    out = cutout(x, 4, g)
    changed = (out != x).any(1)  # (n, h, w): pixels the square covered
    for i in range(len(x)):
        rows, cols = changed[i].any(1).nonzero().squeeze(1), changed[i].any(0).nonzero().squeeze(1)
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4  # one square, clipped at the border
        assert changed[i].sum() == len(rows) * len(cols)  # a full rectangle, nothing outside it
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
        inside = out[i][:, changed[i]]
        assert torch.allclose(inside, x[i].mean((1, 2))[:, None].expand_as(inside))
    assert changed.sum(dim=(1, 2)).float().mean() > 8  # mostly whole 4x4 squares, not slivers
    assert torch.equal(cutout(x, 0, g), x)


def test_degrade_changes_the_chosen_share_and_nothing_else():
    images = np.random.default_rng(0).integers(0, 256, (400, 16, 16, 3), dtype=np.uint8)
    before = images.copy()
    out = degrade(images, 0.5, np.random.default_rng(1))
    assert np.array_equal(images, before)  # the cached training data is never written to
    changed = (out != images).any(axis=(1, 2, 3))
    assert 0.42 < changed.mean() < 0.58
    assert np.array_equal(degrade(images, 0.5, np.random.default_rng(1)), out)  # reproducible from the seed
    assert np.array_equal(degrade(images, 0.0, np.random.default_rng(1)), images)
    # A changed image is blurrier than its original: fewer fine differences between neighbours.
    fine = np.abs(np.diff(images[changed].astype(int), axis=2)).mean()
    assert np.abs(np.diff(out[changed].astype(int), axis=2)).mean() < 0.9 * fine


def test_data_prepare_drops_train_duplicates_and_flags_leaks(tiny_data, cache_dir):
    import shutil

    shutil.copy(tiny_data / "train" / "FAKE" / "1.jpg", tiny_data / "train" / "FAKE" / "1 (2).jpg")
    shutil.copy(tiny_data / "train" / "REAL" / "5.jpg", tiny_data / "test" / "REAL" / "leak.jpg")
    rd = prepare(tiny_data, 32, cache_dir, SplitRecipe(val_fraction=0.25, seed=0))
    assert len(rd.train) + len(rd.val) == 192  # 193 files, one duplicate dropped
    assert rd.leaked.sum() == 1 and len(rd.test) == 65
    assert any("duplicate" in n for n in rd.notes) and any("identical" in n for n in rd.notes)
    assert np.isin(rd.val.names, rd.train.names).sum() == 0


def _write_teacher(path, names, p_fake):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "p_fake"])  # a predictions file's columns
        w.writerows([name, "", "", f"{p:.6f}"] for name, p in zip(names, p_fake, strict=True))


def test_a_teacher_pulls_the_training_targets(run_data, tmp_path):
    """A teacher that contradicts every label cancels it out (targets near 0.5): the student stays
    unsure, where the same run without a teacher is confident."""
    cpu, tr = torch.device("cpu"), run_data.train
    wrong = tmp_path / "teacher.csv"
    _write_teacher(wrong, tr.names[::-1], (1 - tr.labels)[::-1])  # any row order
    certainty = {}
    for name, teacher in (("plain", None), ("contradicting teacher", str(wrong))):
        model = build_model(default_config("fast"))
        cfg = TrainConfig(**{**QUICK.__dict__, "teacher": teacher})
        train(model, tr, run_data.val, cfg, tmp_path / name.replace(" ", "_"), cpu)
        p = 1 / (1 + np.exp(-logits_and_features(model, tr.images, cpu)[0]))
        certainty[name] = float(np.abs(p - 0.5).mean())
    assert certainty["contradicting teacher"] < certainty["plain"] / 2, certainty


def test_teacher_file_errors_say_what_is_wrong(run_data, tmp_path):
    from aivsreal.train.teacher import teacher_targets

    names = run_data.train.names
    good = tmp_path / "good.csv"
    _write_teacher(good, names, np.linspace(0, 1, len(names)))
    assert np.allclose(teacher_targets(good, names), np.linspace(0, 1, len(names)), atol=1e-6)
    short = tmp_path / "short.csv"
    _write_teacher(short, names[1:], np.zeros(len(names) - 1))
    with pytest.raises(AivsrealError, match=f"no p_fake for 1 of the {len(names)} training images"):
        teacher_targets(short, names)
    bad = tmp_path / "bad.csv"
    _write_teacher(bad, names, [1.5] + [0.0] * (len(names) - 1))
    with pytest.raises(AivsrealError, match="not a probability"):
        teacher_targets(bad, names)
    (tmp_path / "cols.csv").write_text("name,score\na,1\n")
    with pytest.raises(AivsrealError, match="needs 'path' and 'p_fake' columns"):
        teacher_targets(tmp_path / "cols.csv", names)
    with pytest.raises(AivsrealError, match="cannot read it"):
        teacher_targets(tmp_path / "absent.csv", names)


@pytest.mark.parametrize("optimizer", ["sgd", "muon"])
def test_bias_lr_scale_speeds_up_only_the_batch_norm_shifts(optimizer):
    """--bias-lr-scale X: the batch-norm shifts follow the same one-cycle schedule at X times the rate
    of everything else, at every step; nothing else moves group, and X must be positive."""
    from aivsreal.train.loop import _base_optimizer, _scheduler

    model = build_model(default_config("fast", options={"widths": [8, 8, 8]}))
    cfg = TrainConfig(epochs=2, lr=0.1, optimizer=optimizer, bias_lr_scale=64.0)
    opt = _base_optimizer(model, cfg)
    shifts = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    fast_group = [g for g in opt.param_groups if g.get("lr_scale") == 64.0]
    assert len(fast_group) == 1 and {id(p) for p in fast_group[0]["params"]} == shifts
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    sched = _scheduler(opt, cfg, steps=20)
    for _ in range(20):
        rates = {g.get("lr_scale", 1.0): g["lr"] for g in opt.param_groups}
        assert rates[64.0] == pytest.approx(64 * rates[1.0])
        opt.step()
        sched.step()
    plain = _base_optimizer(model, TrainConfig(lr=0.1, optimizer=optimizer))
    assert all("lr_scale" not in g for g in plain.param_groups)
    with pytest.raises(AivsrealError, match="--bias-lr-scale multiplies"):
        TrainConfig(bias_lr_scale=0)
