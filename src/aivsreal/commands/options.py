"""The command line's shared vocabulary: one-line usage errors, checked number types, and the
options several verbs take (model, output, device, data, calibration), declared once."""

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
