"""`aivsreal` command line: train, ensemble, evaluate, predict, explain, robustness, report, export, serve,
models, download.

Every expected failure (bad path, bad layout, bad model file) prints one line and exits 2;
`--verbose` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import traceback
from pathlib import Path

from aivsreal.commands.options import (
    POSITIVE_INT,
    SHARE,
    TRAINED_MODEL,
    OneLineParser,
    calibration_args,
    common_args,
    data_options,
    installed_version,
    number,
    training_args,
    training_overrides,
)
from aivsreal.errors import AivsrealError
from aivsreal.models import MODEL_NAMES
from aivsreal.models.hub import DEFAULT_MODEL, resolve_model

log = logging.getLogger("aivsreal")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="aivsreal", description="Tell AI-generated images from real ones.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser.add_argument("--version", action="version", version=f"aivsreal {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    t = sub.add_parser("train", help="train a detector, then evaluate it and write a report")
    t.add_argument("--model", default="fast", choices=MODEL_NAMES)
    common_args(t, model=None, out="output folder (default runs/MODEL)", data=True)
    training_args(t)
    m = t.add_argument_group("model")
    m.add_argument("--pretrained", action="store_true",
                   help="start from pretrained weights: ImageNet, or CLIP/DINOv2 for the ViT probes (downloads)")
    m.add_argument("--weights", help="local pretrained weights file for the backbone (offline --pretrained)")
    m.add_argument("--image-size", type=number(int, 8, 4096), help="decode/resize images to this size (default 32)")
    m.add_argument("--input-size", type=number(int, 8, 4096),
                   help="size the network sees (efficientnet_lite0 upsamples)")
    m.add_argument("--crop", type=number(int, 8, 4096), metavar="N",
                   help="images of any size: train on random native N px crops decoded from disk as needed (never "
                        "resized; smaller images are reflect-padded), score tiles of N px")
    t.add_argument("--no-tta", action="store_true", help="do not average predictions with the mirrored image")
    t.add_argument("--no-eval", action="store_true", help="train only; skip evaluation and the report")
    calibration_args(t)

    n = sub.add_parser("ensemble", help="several trained detectors into one model file that averages their P(fake)")
    n.add_argument("members", nargs="+", metavar="MODEL", help=f"two or more: {TRAINED_MODEL}")
    n.add_argument("--out", default="ensemble.pt", help="the model file to write (default ensemble.pt)")

    e = sub.add_parser("evaluate", help="score a trained model on a dataset and write a report")
    common_args(e, out="output folder (default: the model's folder)", data=True)
    calibration_args(e)

    p = sub.add_parser("predict", help="label images as REAL or FAKE, each with its domain check")
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively), globs, zips, path lists "
                   "(.txt/.lst, one input a line) or fsspec URLs (s3://...); docs/cli.md#inputs")
    common_args(p, default_model=DEFAULT_MODEL)
    p.add_argument("--csv", help="also write the results to this CSV file")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--threshold", type=SHARE, help="call FAKE when P(fake) >= this (default: the model's)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=256)
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="onnx: run a file from `aivsreal export` with onnxruntime")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="torch backend only")
    p.add_argument("--workers", type=POSITIVE_INT, help="decoding processes (default: all cores)")
    p.add_argument("--resume", action="store_true", help="skip files already in --csv and append to it")
    r = p.add_argument_group("scale out (pip install 'aivsreal[ray]'; docs/scale_out.md)")
    r.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="ray: score on a Ray cluster, rows in Parquet shards under --out (default: local)")
    r.add_argument("--out", help="--engine ray: folder for the shards (a rerun with the same folder skips what is "
                                 "there)")
    r.add_argument("--address", help="--engine ray: the cluster to join (auto, ray://HOST:10001; default: a Ray "
                                     "started on this machine)")
    r.add_argument("--actors", type=POSITIVE_INT, help="--engine ray: scoring actors, each loads the detector once "
                                                       "(default 1); --device cuda gives each a GPU")
    p.add_argument("-q", "--quiet", action="store_true", help="no table on stdout")

    g = sub.add_parser("explain", help="Grad-CAM: which regions made the model call an image REAL or FAKE")
    g.add_argument("inputs", nargs="+", help="image files, folders, globs, zips, path lists or fsspec URLs, as for "
                   "predict (docs/cli.md#inputs)")
    common_args(g, out="folder for the PNGs and explanations.csv (default: explanations)", default_model=DEFAULT_MODEL)
    g.add_argument("--target", default="predicted", choices=["predicted", "FAKE", "REAL"],
                   help="the class whose evidence is shown (default: each image's verdict)")
    g.add_argument("--layer", help="module name of the feature map to explain (default: the deepest >= 4x4)")
    g.add_argument("--size", type=number(int, 16, 2048), default=224, help="side of each image and overlay in the PNG")

    r = sub.add_parser("robustness", help="test accuracy under JPEG, blur, resize, noise and flip")
    common_args(r, out="output folder (default: MODEL's folder/robustness)", data=True)

    h = sub.add_parser("report", help="one self-contained HTML report: metrics, calibration, robustness, Grad-CAM")
    common_args(h, out="output folder (default: MODEL's folder/report)", data=True)
    h.add_argument("--examples", type=number(int, 0, 100), default=4, help="Grad-CAM examples per group")

    x = sub.add_parser("export", help="export a model: ONNX for onnxruntime, or a Hugging Face-style folder")
    common_args(x, out="output file or folder (default: beside MODEL, .onnx or -hf)", device=False)
    x.add_argument("--format", default="onnx", choices=["onnx", "hf"],
                   help="hf: model.safetensors + config.json + README.md (the card), for the Hub")
    x.add_argument("--half", action="store_true", help="hf: store float weights as fp16 (half the size)")

    s = sub.add_parser("serve", help="web page and REST API around a detector")
    common_args(s, default_model=DEFAULT_MODEL)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=number(int, 0, 65535), default=8000)
    s.add_argument("--max-upload-mb", type=number(float, 0, 1024, low_open=True), default=10.0,
                   help="per-file upload limit (413 above it)")
    s.add_argument("--body-timeout", type=number(float, 0, low_open=True), default=30.0, metavar="S",
                   help="answer 408 to a client that sends nothing for S seconds mid-body")
    s.add_argument("--header-timeout", type=number(float, 0, low_open=True), default=10.0, metavar="S",
                   help="close a connection whose request headers are not complete S seconds after it opened "
                        "or after its last response")
    s.add_argument("--min-body-rate", type=number(float, 0), default=240.0, metavar="B",
                   help="answer 408 to a body slower than B bytes/s after its first 5 s (0: no minimum)")
    s.add_argument("--byte-budget-mb", type=number(float, 0, low_open=True), default=512.0, metavar="MB",
                   help="request bodies held at once by all requests, memory and spool together (503 past it)")
    s.add_argument("--max-connections", type=number(int, 1), default=256, metavar="N",
                   help="open connections; past N a new one replaces the longest wait for headers, else 503")
    s.add_argument("--max-connections-per-client", type=number(int, 1), default=32, metavar="N",
                   help="open connections per client address (503 past N)")

    sub.add_parser("download", help="download CIFAKE from Kaggle (needs credentials)")

    d = sub.add_parser("models", help="the bundled detectors: training data, metrics, domain, size; NAME: its card")
    d.add_argument("name", nargs="?", help="a bundled detector, model file or folder: print its model card")
    return parser


def cmd_train(args) -> int:
    from aivsreal.commands.train import train_and_evaluate

    out = args.out or f"runs/{args.model}"
    summary = train_and_evaluate(
        args.model, out, data_options(args), training_overrides(args),
        {"image_size": args.image_size, "input_size": args.input_size, "crop": args.crop},
        device=args.device, pretrained=args.pretrained, weights=args.weights, resume=args.resume,
        tta=not args.no_tta, run_eval=not args.no_eval, calibration=_calibration_options(args),
    )
    if summary:  # empty on torchrun's other ranks: rank 0 alone reports
        _print_summary(summary, out)
    return 0


def cmd_ensemble(args) -> int:
    from aivsreal.commands.ensemble import ensemble_models

    print(ensemble_models(args.members, args.out))
    return 0


def cmd_evaluate(args) -> int:
    from aivsreal.commands.evaluate import evaluate_saved

    summary = evaluate_saved(args.model, args.out, data_options(args), device=args.device,
                             calibration=_calibration_options(args))
    _print_summary(summary, args.out or str(resolve_model(args.model).run_dir))
    return 0


def _calibration_options(args):
    from aivsreal.evaluate.calibration import CalibrationOptions

    return CalibrationOptions(args.calibrate, args.target_precision, args.target_fpr)


def cmd_explain(args) -> int:
    from aivsreal.commands.explain import explain_files
    from aivsreal.data.inputs import expand_inputs

    out = args.out or "explanations"
    rows = explain_files(args.model, expand_inputs(args.inputs), Path(out), target=args.target,
                         layer=args.layer, size=args.size, device=args.device)
    written = [r for r in rows if r["file"]]
    for r in rows:
        print(f"{r['source']}\t{r['label']}\t{r['p_fake']}\t{r['file'] or r['error']}")
    if len(written) < len(rows):
        log.warning("%d of %d input(s) could not be read", len(rows) - len(written), len(rows))
    print(f"{len(written)} Grad-CAM image(s) in {out}/ (list: {out}/explanations.csv)")
    return 1 if rows and not written else 0


def cmd_robustness(args) -> int:
    from aivsreal.commands.robustness import run_robustness
    from aivsreal.evaluate.robustness import markdown_table

    rows = run_robustness(args.model, args.out, data_options(args), device=args.device)
    print(markdown_table(rows))
    print(f"written to {args.out or resolve_model(args.model).run_dir / 'robustness'}/robustness.md")
    return 0


def cmd_report(args) -> int:
    from aivsreal.commands.report import build_report

    print(build_report(args.model, args.out, data_options(args), device=args.device, examples=args.examples,
                       command=args.command_line))
    return 0


def _print_summary(summary: dict, out: str) -> None:
    for split, m in summary.get("metrics", {}).items():
        print(f"{split:28s} acc {m['accuracy']:.4f}  precision {m['precision']:.4f}  "
              f"recall {m['recall']:.4f}  f1 {m['f1']:.4f}  auc {m['roc_auc']:.4f}  (n={m['n']:,})")
    print(f"model: {out}/model.pt" + (f"   report: {out}/report.md" if summary.get("metrics") else ""))


def cmd_predict(args) -> int:
    from aivsreal.commands.predict import predict_files, predict_on_ray
    from aivsreal.predict.spec import DetectorSpec

    spec = DetectorSpec(args.model, args.device, args.backend, args.precision, args.threshold)
    if args.engine == "ray":
        if args.json or args.resume or args.workers:
            raise AivsrealError("--json, --resume and --workers are for the local engine: --engine ray resumes from "
                                "--out by itself and writes Parquet (and --csv)")
        return predict_on_ray(spec, args.inputs, args.out, args.csv, args.address, args.actors or 1,
                              args.batch_size, args.quiet)
    if args.out or args.address or args.actors:
        raise AivsrealError("--out, --address and --actors are for --engine ray")
    return predict_files(spec.load(), args.inputs, args.csv, args.json, args.resume, args.batch_size, args.workers,
                         args.quiet)


def cmd_export(args) -> int:
    from aivsreal.commands.export import export_model

    print(export_model(args.model, args.format, args.out, half=args.half))
    return 0


def cmd_serve(args) -> int:
    from aivsreal.serve.app import serve

    serve(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, device=args.device,
          body_timeout_s=args.body_timeout, header_timeout_s=args.header_timeout,
          byte_budget_mb=args.byte_budget_mb, min_body_rate=args.min_body_rate, max_connections=args.max_connections,
          max_connections_per_client=args.max_connections_per_client)
    return 0


def cmd_models(args) -> int:
    from aivsreal.commands.models import describe_models, show_card

    print(show_card(args.name) if args.name else describe_models())
    return 0


def cmd_download(args) -> int:
    from aivsreal.data.download import download_cifake

    print(download_cifake())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = "aivsreal " + shlex.join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    commands = {"train": cmd_train, "ensemble": cmd_ensemble, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "explain": cmd_explain, "robustness": cmd_robustness, "report": cmd_report, "export": cmd_export,
                "serve": cmd_serve, "download": cmd_download, "models": cmd_models}
    try:
        return commands[args.command](args)
    except AivsrealError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"aivsreal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aivsreal: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless --verbose
        if args.verbose:
            traceback.print_exc()
        print(f"aivsreal: internal error: {type(e).__name__}: {e} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
