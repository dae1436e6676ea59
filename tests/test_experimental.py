"""A detector its metadata marks experimental says so everywhere its verdicts go (issue 50): the rule,
`aivsreal models` and the card, `predict` (stderr once, JSON per row), the Python API, the REST API and
the page; a malformed mark is refused at load. The page itself is driven in test_web_browser.py."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import jpeg_bytes, synthetic_image
from fastapi.testclient import TestClient
from test_cli import one_line_error, run_cli

from aivsreal.cli import main
from aivsreal.commands.models import describe_models, show_card
from aivsreal.errors import AivsrealError
from aivsreal.models import build_model, default_config, hub
from aivsreal.models.card import experimental_line, model_card
from aivsreal.models.file import ModelMeta, experimental_reason, save_model
from aivsreal.predict.batch import CSV_FIELDS
from aivsreal.predict.detector import Detector
from aivsreal.serve.app import create_app

REASON = "locked external AUC 0.612 is below 0.80 (held-out 0.789)"
SAID = "this detector is experimental"  # the CLI's and the API's one line


def network():
    import torch

    torch.manual_seed(0)
    return build_model(default_config("fast"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(plain, experimental) model files, the same weights."""
    root = tmp_path_factory.mktemp("experimental")
    plain, shaky = root / "plain.pt", root / "shaky.pt"
    save_model(plain, network(), ModelMeta())
    save_model(shaky, network(), ModelMeta(experimental=REASON))
    return plain, shaky


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = [root / f"{i}.jpg" for i in range(3)]
    for i, path in enumerate(paths):
        path.write_bytes(jpeg_bytes(synthetic_image(i % 2, rng)))
    return paths


def said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if SAID in r.getMessage()]


def test_the_rule_is_a_locked_external_auc_of_at_least_0_80():
    assert experimental_reason(0.80) is None and experimental_reason(0.93, 0.95) is None
    assert experimental_reason(0.799, 0.91) == "locked external AUC 0.799 is below 0.80 (held-out 0.910)"
    assert experimental_reason(None, 0.95) == "no locked external AUC measured (held-out 0.950)"


def test_the_python_api_says_so_once_and_every_verdict_carries_it(models, images, caplog):
    plain, shaky = models
    caplog.set_level(logging.WARNING)
    det = Detector.load(shaky, device="cpu")
    assert det.experimental == REASON and len(said(caplog)) == 1 and REASON in said(caplog)[0]
    preds = det.predict([*images, b"not an image"])
    assert [p.experimental for p in preds] == [True, True, True, None]  # None: no verdict to qualify
    assert len(said(caplog)) == 1  # once per load, not per image
    caplog.clear()
    det = Detector.load(plain, device="cpu")
    assert det.experimental is None and not said(caplog)
    assert [p.experimental for p in det.predict(images)] == [False] * 3


def test_onnx_exports_keep_the_mark(models, tmp_path):
    from aivsreal.predict.onnx import export_onnx

    _, shaky = models
    assert Detector.load(export_onnx(shaky, tmp_path / "m.onnx"), backend="onnx").experimental == REASON


def test_predict_says_it_once_on_stderr_and_in_every_json_row(models, images, tmp_path):
    _, shaky = models
    out = tmp_path / "out.json"
    r = run_cli("predict", *images, "--model", shaky, "--device", "cpu", "--json", out, "--csv", tmp_path / "o.csv")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(SAID) == 1 and REASON in r.stderr
    assert len(r.stdout.splitlines()) == 1 + len(images) and SAID not in r.stdout  # the rows stay one per image
    assert [row["experimental"] for row in json.loads(out.read_text())] == [True] * len(images)
    # the CSV keeps this version's columns, so --resume reads files written before the mark existed
    assert (tmp_path / "o.csv").read_text().splitlines()[0] == ",".join(CSV_FIELDS)


def test_predict_of_an_unmarked_model_says_nothing(models, images, tmp_path, capsys, caplog):
    plain, _ = models
    out = tmp_path / "out.json"
    assert main(["predict", *map(str, images), "--model", str(plain), "--device", "cpu", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "experimental" not in captured.out + captured.err and not said(caplog)
    assert [row["experimental"] for row in json.loads(out.read_text())] == [False] * len(images)


def test_models_lists_it_and_its_card_leads_with_it(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "BUNDLED", tmp_path)
    net = network()
    hub.save_pretrained(tmp_path / "steady", net, ModelMeta(), "")  # no stored card: made from the metadata
    shaky = ModelMeta(experimental=REASON)
    hub.save_pretrained(tmp_path / "shaky", net, shaky, model_card("shaky", net.config, shaky))
    rows = {line.split(" | ")[0].strip("| "): line for line in describe_models().splitlines()}
    assert rows["shaky"].endswith(f"| **experimental**: {REASON} |")
    assert rows["steady"].endswith("| – |") and "experimental" not in rows["steady"]
    stored = (tmp_path / "shaky" / hub.CARD).read_text()  # what a Hub page shows: the file itself says it
    card = stored.splitlines()
    assert card[card.index("# `shaky`: a `fast` detector") + 2] == experimental_line(REASON)
    assert show_card("shaky") == stored
    assert "xperimental" not in show_card("steady")
    # a card stored without the line (written by hand, or before the mark) still gets it under its title
    (tmp_path / "shaky" / hub.CARD).write_text("---\nlibrary_name: aivsreal\n---\n\n# shaky\n\nBy hand.\n")
    assert show_card("shaky").splitlines()[4:8] == ["# shaky", "", experimental_line(REASON), ""]


def test_the_rest_api_and_the_page_say_so(models):
    plain, shaky = models
    image = jpeg_bytes(synthetic_image(1, np.random.default_rng(0)))
    files = [("files", ("a.jpg", image, "image/jpeg")), ("files", ("b.jpg", b"broken", "image/jpeg"))]
    for path, marked in ((shaky, True), (plain, False)):
        with TestClient(create_app(path, device="cpu")) as client:
            info = client.get("/api/model").json()
            assert info["experimental"] is marked and info["experimental_reason"] == (REASON if marked else None)
            assert (experimental_line(REASON) in info["card"]) is marked
            good, broken = client.post("/api/predict", files=files).json()["results"]
            assert good["experimental"] is marked and "experimental" not in broken
            page = client.get("/").text
    assert "badge experimental" in page and "r.experimental" in page and "m.experimental_reason" in page


@pytest.mark.parametrize("value", [3, True, "", "two\nlines", "x" * 301, ["a list"], "\x1b[31mred"])
def test_a_malformed_mark_is_refused_at_load(value, tmp_path):
    path = tmp_path / "bad.pt"
    save_model(path, network(), ModelMeta(experimental=value))
    with pytest.raises(AivsrealError, match="experimental must be one line of text") as e:
        Detector.load(path, device="cpu")
    assert "\n" not in str(e.value)


def test_a_malformed_mark_is_an_exit_2_and_an_old_file_is_not_experimental(tmp_path):
    folder = hub.save_pretrained(tmp_path / "f", network(), ModelMeta(), "")
    config = json.loads((folder / hub.CONFIG).read_text())
    del config["meta"]["experimental"]  # as written before the mark existed
    (folder / hub.CONFIG).write_text(json.dumps(config))
    assert Detector.load(folder, device="cpu").experimental is None
    config["meta"]["experimental"] = {"reason": "a mapping"}
    (folder / hub.CONFIG).write_text(json.dumps(config))
    one_line_error(run_cli("models", folder), "experimental must be one line of text")
