"""The real server on 127.0.0.1, driven by headless Chromium: upload an image, see the verdict."""

import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from conftest import serving  # noqa: E402
from screenshot import CHROMIUM, CHROMIUM_ARGS, capture  # noqa: E402

pytest.importorskip("playwright", reason="the Python package playwright is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Chromium not found at {CHROMIUM} (.ci/run installs Debian's chromium)")


MARKUP = '<img src=x onerror="window.__xss=1">'


@pytest.fixture
def server(tmp_path):
    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import ModelMeta, save_model

    model = tmp_path / "model.pt"
    metrics = {"n": 1, "accuracy": 0.5, "precision": MARKUP, "recall": 0.5, "roc_auc": 0.5}
    save_model(model, build_model(default_config("fast")),  # a crafted model file: markup in its metrics
               ModelMeta(summary={"metrics": {MARKUP: metrics}, "model": {"params": MARKUP}}))
    with serving(model) as url:
        yield url


def test_upload_shows_a_verdict(server, tmp_path):
    images = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        images.append(path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    shown = capture(server, [*images, tmp_path / "broken.jpg"], tmp_path / "page.png")
    verdicts, heat_maps = shown[:3], shown[3:]
    assert sum(v.startswith(("Real", "AI-generated")) and "P(fake)" in v for v in verdicts) == 2
    assert any("not a readable image" in v for v in verdicts)
    assert len(heat_maps) == 2 and all(h.startswith("Grad-CAM heat map for") for h in heat_maps)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_a_crafted_model_file_runs_no_script_in_the_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(server)
        page.wait_for_selector("#model-body table", timeout=30_000)
        page.wait_for_timeout(500)  # an injected <img src=x> would have failed to load by now
        assert page.evaluate("window.__xss") is None
        assert MARKUP in page.inner_text("#model-body")  # shown as text, not parsed
        assert page.locator("#model-body img[src='x']").count() == 0
        assert page.locator(".badge.experimental, .experimental-note").count() == 0  # not marked: no badge
        browser.close()


def test_api_docs_need_no_external_assets(server):
    html = urllib.request.urlopen(server + "/docs", timeout=10).read().decode()
    assert "cdn" not in html.lower() and "https://" not in html and "/openapi.json" in html


def test_an_image_unlike_the_training_data_gets_the_badge(trained_run, tmp_path):
    from playwright.sync_api import sync_playwright

    data, run = trained_run
    big = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(big)
    with serving(run / "model.pt") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#model-body b", timeout=30_000)
        page.set_input_files("#picker", [str(big)])
        page.wait_for_selector(".domain.out", timeout=30_000)
        badge = page.inner_text(".domain.out")
        assert "Outside what this model was trained on" in badge and "640x480" in badge
        assert page.locator(".verdict.unreliable").count() == 1
        assert "Domain: images of 32 px" in page.inner_text("#model-body")
        browser.close()


def test_an_experimental_detector_wears_the_badge_and_each_verdict_says_so(tmp_path):
    from playwright.sync_api import sync_playwright

    from aivsreal.models import build_model, default_config
    from aivsreal.models.file import ModelMeta, save_model

    reason = "locked external AUC 0.612 is below 0.80"
    model = tmp_path / "model.pt"
    save_model(model, build_model(default_config("fast")), ModelMeta(experimental=reason))
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    with serving(model) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#model-body b", timeout=30_000)
        assert page.inner_text("#model-body .badge.experimental") == "experimental"
        assert reason in page.inner_text("#model-body")
        page.set_input_files("#picker", [str(image)])
        page.wait_for_selector("#results .experimental-note", timeout=30_000)
        assert page.locator("#results .experimental-note").count() == 1
        assert reason in page.inner_text("#results .experimental-note")
        browser.close()
