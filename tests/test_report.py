"""`aivsreal report`: one self-contained HTML file with every section, checked in a real browser."""

import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from aivsreal.cli import main
from aivsreal.commands.report import most_confident

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from screenshot import CHROMIUM  # noqa: E402


class Links(HTMLParser):
    """Every URL the page would load or link to."""

    def __init__(self):
        super().__init__()
        self.urls, self.images = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.images += tag == "img"
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]


def test_most_confident_groups_each_class_right_and_wrong():
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    p_fake = np.array([0.1, 0.02, 0.7, 0.9, 0.4, 0.99, 0.95])
    groups = most_confident(labels, p_fake, threshold=0.5, k=2)
    assert [g.tolist() for g in groups.values()] == [[1, 0], [6, 2], [5, 3], [4]]


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory):
    data, run = trained_run
    out = tmp_path_factory.mktemp("report")
    assert main(["report", "--model", str(run / "model.pt"), "--data", str(data), "--out", str(out),
                 "--no-cache", "--examples", "2"]) == 0
    return out / "report.html"


def test_report_is_self_contained_and_has_every_section(report):
    page = report.read_text()
    links = Links()
    links.feed(page)
    assert links.images >= 8  # confusion x3, ROC/PR, curves, reliability, robustness, Grad-CAM examples
    assert links.urls and all(u.startswith("data:image/png;base64,") for u in links.urls)
    assert not re.search(r"https?://", page)
    for heading in ("Metrics", "Confusion matrices", "ROC and precision-recall", "Training", "Calibration",
                    "Robustness", "Grad-CAM"):
        assert f"<h2>{heading}" in page, heading
    assert "JPEG q50" in page and "seed notebook" in page and "ECE" in page
    assert "aivsreal report --model" in page  # how to make it again
    assert "domain_flagged" in page and "test images flagged out of domain" in page  # the domain check per split
    assert re.search(r"(in domain|outside the training domain).{0,20}\(score \d", page)  # and per example


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"Chromium not found at {CHROMIUM}")
def test_report_renders_in_chromium_without_the_network(report, tmp_path):
    pytest.importorskip("playwright", reason="the Python package playwright is not installed")
    from screenshot import open_report

    seen = open_report(report, tmp_path / "report.png")
    assert seen["external_requests"] == []
    assert seen["images"] and all(loaded for _, loaded in seen["images"]), seen["images"]
    assert "Calibration" in seen["headings"] and "Robustness" in seen["headings"]
    assert seen["title"].startswith("aivsreal report")
    assert (tmp_path / "report.png").stat().st_size > 50_000
