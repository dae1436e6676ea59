"""The command line's shared vocabulary: one-line usage errors, checked number types, and the
options several verbs take (model, output, device, data, training, calibration), declared once."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are one line and exit 2, like every other error the user can fix."""

    def error(self, message: str):
        self.exit(2, f"aivsreal: error: {message} (see {self.prog} --help)\n")


def number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False):
    """An argparse type: a number of `kind` within [low, high] (open ends where asked)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") \
                from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{value} must be {'>' if low_open else '>='} {low}")
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(f"{value} must be {'<' if high_open else '<='} {high}")
        return value

    return parse


POSITIVE_INT = number(int, 1)
SHARE = number(float, 0, 1)
PROBABILITY_OPEN = number(float, 0, 1, low_open=True, high_open=True)


def data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", help="folder or zip with train/{REAL,FAKE} and test/{REAL,FAKE} (or REAL/, FAKE/); "
                   "default: $AIVSREAL_DATA, else download CIFAKE from Kaggle")
    g.add_argument("--limit", type=number(int, 2), help="use at most N images per split (balanced), for quick runs")
    g.add_argument("--val-fraction", type=PROBABILITY_OPEN, default=0.1, help="share of train held out for validation")
    g.add_argument("--cache-dir", help="where decoded images are cached (default ~/.cache/aivsreal)")
    g.add_argument("--no-cache", action="store_true", help="decode every time, write no cache")
    g.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping it")


def training_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (defaults depend on --model)")
    g.add_argument("--epochs", type=POSITIVE_INT)
    g.add_argument("--batch-size", type=POSITIVE_INT)
    g.add_argument("--lr", type=number(float, 0, low_open=True))
    g.add_argument("--optimizer", choices=("sgd", "adam", "muon"), help="Nesterov SGD, AdamW, or Muon on the "
                   "conv filters and SGD on the rest (Muon: for nets with batch norm after every conv, like fast)")
    g.add_argument("--patience", type=POSITIVE_INT, help="early stopping: epochs without val-loss improvement")
    g.add_argument("--seed", type=number(int, 0), default=0)
    g.add_argument("--ema", type=number(float, 0, 1, high_open=True), metavar="DECAY",
                   help="validate, early-stop on and keep a moving average of the weights (e.g. 0.999; 0 turns it off)")
    g.add_argument("--lookahead", type=number(int, 0), metavar="K",
                   help="Lookahead: every K steps the weights go halfway back to a slow copy (e.g. 5; default 0: off)")
    g.add_argument("--bias-lr-scale", type=number(float, 0, low_open=True), metavar="X",
                   help="batch-norm shifts learn at X times --lr (airbench: 64; default 1)")
    g.add_argument("--cutout", type=number(int, 0), metavar="PX",
                   help="hide a random PX x PX square of each training image (cutout; default 0: off)")
    g.add_argument("--alternate-flip", action="store_true", default=None,
                   help="mirror each training image in every other epoch instead of at random (airbench)")
    g.add_argument("--teacher", metavar="CSV",
                   help="distil: also learn a teacher's P(FAKE) per training image (CSV with path and p_fake "
                        "columns, e.g. a predictions file)")
    g.add_argument("--time-budget", type=number(float, 0, low_open=True), metavar="MIN",
                   help="stop before an epoch would exceed it")
    g.add_argument("--degrade", type=SHARE, metavar="SHARE",
                   help="blur, resize or JPEG-re-compress this share of training images (robustness; default 0)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    g.add_argument("--no-codec-chain", action="store_true",
                   help="--crop runs: plain crops, without the JPEG/rescale/blur/noise chain (on by default)")
    g.add_argument("--workers", type=number(int, 0),
                   help="--crop runs: processes decoding images ahead (default 2)")


def training_overrides(args: argparse.Namespace) -> dict:
    """`training_args` as TrainConfig fields; None where the model's recipe decides."""
    return {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
            "patience": args.patience, "degrade": args.degrade, "ema": args.ema, "workers": args.workers,
            "cutout": args.cutout, "lookahead": args.lookahead, "teacher": args.teacher,
            "bias_lr_scale": args.bias_lr_scale,
            "codec_chain": False if args.no_codec_chain else None, "alternate_flip": args.alternate_flip,
            "time_budget_s": args.time_budget * 60 if args.time_budget else None}


def calibration_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("calibration (fitted on the validation split, stored in the model file)")
    g.add_argument("--calibrate", action="store_true", help="fit temperature scaling: honest P(fake) values")
    target = g.add_mutually_exclusive_group()
    target.add_argument("--target-precision", type=number(float, 0, 1, low_open=True), metavar="P",
                        help="threshold: catch the most fakes while >= P of the images flagged FAKE are fake")
    target.add_argument("--target-fpr", type=number(float, 0, 1, high_open=True), metavar="F",
                        help="threshold: catch the most fakes while <= F of real images are flagged FAKE")


TRAINED_MODEL = ("model.pt from `aivsreal train`, a folder from `aivsreal export --format hf`, a bundled "
                 "detector (`aivsreal models`) or a Hugging Face repo id")


def common_args(p: argparse.ArgumentParser, model: str | None = TRAINED_MODEL, out: str | None = None,
            data: bool = False, device: bool = True, default_model: str | None = None) -> None:
    """The options verbs share, declared once so that they mean the same everywhere."""
    if model:
        p.add_argument("--model", required=default_model is None, default=default_model,
                       help=model + (f" (default: the bundled `{default_model}` detector)" if default_model else ""))
    if out:
        p.add_argument("--out", help=out)
    if device:
        p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    if data:
        data_args(p)


def installed_version() -> str:
    """The version in the installed package's metadata (the source tree's `__version__` if not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aivsreal")
    except PackageNotFoundError:
        from aivsreal import __version__

        return __version__


def data_options(args: argparse.Namespace):
    """The data options of the verbs that read a data set (train, evaluate, robustness, report)."""
    from aivsreal.data.splits import DataOptions, SplitRecipe

    recipe = SplitRecipe(val_fraction=args.val_fraction, seed=getattr(args, "seed", 0), limit=args.limit)
    return DataOptions(path=args.data, recipe=recipe, cache_dir=args.cache_dir, no_cache=args.no_cache,
                       strict=args.strict)
