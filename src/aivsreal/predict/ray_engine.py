r"""`predict --engine ray`: the same rows, errors and resume as `predict`, on a Ray cluster.

Ray Data streams the input paths through a pool of actors (`map_batches`). Each actor loads the
detector once, reads and decodes its own files (the bytes never pass through the driver) with
`decode_path`, the default engine's hardened decoder, and scores them with `Detector.score_decoded`,
so a row is the default engine's row. The driver only lists the inputs and writes the rows.

Exactly-once rows: the driver writes each batch of rows as one Parquet shard (a temporary file
renamed into place), then appends the shard's name to OUT/manifest.jsonl and fsyncs it. A row exists
when its shard is in the manifest. A rerun with the same OUT skips those inputs, cuts a torn last
manifest line and deletes shards the manifest does not name (a kill between the rename and the
append), so a killed job loses only the rows not yet committed and writes none twice. Ray retries
the batch of an actor that dies; its rows still reach the driver, the only writer, once.

Text cells (path, error, domain_reason) are `escaped` as in the CSV, so any file name is valid
UTF-8 in Arrow and reads back exactly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from aivsreal.data.inputs import resolved
from aivsreal.errors import AivsrealError
from aivsreal.models.hub import DEFAULT_MODEL
from aivsreal.predict.batch import (
    CSV_FIELDS,
    csv_row,
    decode_path,
    escaped,
    truncate_torn_line,
    unescaped,
)
from aivsreal.predict.detector import Prediction
from aivsreal.predict.spec import DetectorSpec
from aivsreal.safe_io import atomic_write, writable_dir

MANIFEST = "manifest.jsonl"
SHARDS = "shards"
SHARD_ROWS = 4096  # rows per Parquet shard: what a kill can cost, and the driver's write granularity


def import_ray() -> ModuleType:
    """Ray, or the one-line answer for a base install (Ray is the optional `ray` extra)."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]: without it, map_batches is missing
    except ImportError:
        raise AivsrealError("--engine ray needs Ray: pip install 'aivsreal[ray]'") from None
    return ray


def model_id(spec: DetectorSpec) -> str:
    return DEFAULT_MODEL if spec.model is None else str(spec.model)


def shard_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("label", pa.string()), ("p_fake", pa.float64()),
                      ("error", pa.string()), ("in_domain", pa.bool_()), ("domain_score", pa.float64()),
                      ("domain_reason", pa.string()), ("model", pa.string())])


def shard_table(preds: Iterable[Prediction], model: str) -> Any:
    """Predictions -> one Arrow table of shard rows (text escaped)."""
    import pyarrow as pa

    def text(s: str | None) -> str | None:
        return None if s is None else escaped(s)

    rows = [{"path": escaped(p.source), "label": p.label, "p_fake": p.p_fake, "error": text(p.error),
             "in_domain": p.in_domain, "domain_score": p.domain_score, "domain_reason": text(p.domain_reason),
             "model": model} for p in preds]
    return pa.Table.from_pylist(rows, schema=shard_schema())


def shard_predictions(table: Any) -> Iterator[Prediction]:
    """The inverse of `shard_table` (the model column aside)."""
    for r in table.to_pylist():
        yield Prediction(unescaped(r["path"]), r["label"], r["p_fake"],
                         None if r["error"] is None else unescaped(r["error"]), r["in_domain"], r["domain_score"],
                         None if r["domain_reason"] is None else unescaped(r["domain_reason"]))


class ScoringActor:
    """One per actor slot: loads the detector once, then reads, decodes and scores batches of paths,
    decoding on `threads` threads (Pillow and numpy release the GIL) while torch uses as many."""

    def __init__(self, spec: DetectorSpec, threads: int, batch_size: int):
        import torch

        torch.set_num_threads(threads)
        self.det = spec.load()
        self.model = model_id(spec)
        self.batch_size = batch_size
        self.decode = partial(decode_path, read=self.det.view_reader)
        self.pool = ThreadPoolExecutor(threads)

    def __call__(self, batch: Any) -> Any:
        decoded = list(self.pool.map(self.decode, [unescaped(p) for p in batch.column("path").to_pylist()]))
        return shard_table(self.det.score_decoded(decoded, self.batch_size), self.model)


def committed(out: Path, model: str) -> set[str]:
    """Resolved paths of every row in a shard the manifest names, after tidying what a kill left:
    a torn last manifest line, shards it does not name, temporary files."""
    import pyarrow.parquet as pq

    manifest = out / MANIFEST
    names: list[str] = []
    if manifest.exists():
        truncate_torn_line(manifest)
        for line in manifest.read_text().splitlines():
            entry = json.loads(line)
            if entry["model"] != model:
                raise AivsrealError(f"{out} holds rows of model {entry['model']!r}, not {model!r}: give this "
                                    "run another --out")
            names.append(entry["shard"])
    shards = out / SHARDS
    listed = set(names)
    for f in (shards.iterdir() if shards.is_dir() else ()):
        if f.name not in listed:
            f.unlink()
    done: set[str] = set()
    for name in names:
        if not (shards / name).is_file():
            raise AivsrealError(f"{manifest} names {SHARDS}/{name}, which is missing: the folder was changed "
                                "by hand; give this run another --out")
        done.update(resolved(unescaped(p)) for p in pq.read_table(shards / name, columns=["path"])["path"].to_pylist())
    return done


def commit_shard(out: Path, table: Any, model: str) -> Path:
    """Write the shard (atomically), then name it in the manifest: only then do its rows exist."""
    import pyarrow.parquet as pq

    manifest = out / MANIFEST
    index = len(manifest.read_text().splitlines()) if manifest.exists() else 0
    shard = out / SHARDS / f"part-{index:06d}.parquet"
    atomic_write(shard, lambda f: pq.write_table(table, f))
    with open(manifest, "a") as f:
        f.write(json.dumps({"shard": shard.name, "rows": table.num_rows, "model": model}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return shard


def all_rows(out: Path) -> Iterator[Prediction]:
    """Every committed row, shard by shard in manifest order."""
    import pyarrow.parquet as pq

    for line in (out / MANIFEST).read_text().splitlines():
        yield from shard_predictions(pq.read_table(out / SHARDS / json.loads(line)["shard"]))


def write_csv(out: Path, csv_path: Path) -> None:
    """The default engine's CSV (same columns, escapes and formula guard) of every committed row."""
    def write(f) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(CSV_FIELDS)
        for pred in all_rows(out):
            writer.writerow(csv_row(pred))
        text.flush()
        text.detach()

    atomic_write(csv_path, write)


def actor_cpus(ray: ModuleType, actors: int) -> int:
    """An equal share of the cluster's CPUs per actor, no more than its largest node has."""
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return int(max(1, min(sum(cpus) // actors, max(cpus, default=1))))


def score_on_ray(spec: DetectorSpec, paths: Iterable[str], out: str | Path, address: str | None = None,
                 actors: int = 1, batch_size: int = 256, csv_path: Path | None = None,
                 shard_rows: int = SHARD_ROWS) -> Iterator[Prediction]:
    """The rows of inputs not yet in `out`, as their shards are committed; then, on request, the CSV of all.

    Joins the cluster at `address` (or the Ray this process already runs, or starts one on this
    machine) and shuts down only a Ray it started.
    """
    ray = import_ray()
    out = writable_dir(out)
    model = model_id(spec)
    done = committed(out, model)
    todo = [escaped(p) for p in paths if resolved(p) not in done]
    started = bool(todo) and not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        if todo:
            import pyarrow as pa

            ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
            threads = actor_cpus(ray, actors)
            gpus = 1 if spec.device.startswith("cuda") else 0
            # one block per batch, and at least 4 per actor, so that every actor has work from the start to the end
            step = max(1, min(batch_size, -(-len(todo) // (4 * actors))))
            blocks = [pa.table({"path": todo[i : i + step]}) for i in range(0, len(todo), step)]
            rows = ray.data.from_arrow(blocks).map_batches(
                ScoringActor, fn_constructor_kwargs={"spec": spec, "threads": threads, "batch_size": batch_size},
                batch_size=step, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=threads, num_gpus=gpus)
            for table in rows.iter_batches(batch_size=shard_rows, batch_format="pyarrow"):
                commit_shard(out, table, model)
                yield from shard_predictions(table)
    finally:
        if started:
            ray.shutdown()
    if csv_path is not None:
        write_csv(out, csv_path)
