"""report.html opened in a real headless browser (Debian's ``chromium``).

Two views of the same page: ``--dump-dom`` (the parsed document: tables, cells, embedded images,
which are then decoded here) and ``--screenshot`` (proof that the browser painted the plots: the
page's own styles use no blue, so matplotlib's first line colour can only come from a decoded PNG).
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from mge_harness.reports import formatting as fmt
from mge_harness.reports import synthetic as syn
from mge_harness.reports.build import write_report

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium); CI installs it",
)
MATPLOTLIB_BLUE = np.array([31, 119, 180])  # "C0", the first line of every plot


class _Elements(HTMLParser):
    """Collects tables, their cells and image sources from a DOM dump."""

    def __init__(self):
        super().__init__()
        self.tables, self.cells, self.images = 0, [], []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        self._in_cell = tag == "td"
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    samples = {}
    entries = []
    for seed, (variant, batch) in enumerate(
        (v, b) for v in ("resnet18.external.cbn-on", "resnet18.fused.cbn-on") for b in (1, 8)
    ):
        samples[variant, batch] = syn.timings(0.03 * batch, 0.03, 12, seed)
        entries.append(syn.benchmark(variant, samples[variant, batch], batch=batch, mode="e2e"))
    syn.save(root / "runs", syn.saved_run(entries), 1)
    written = write_report([root / "runs"], out=root / "out")
    return root / "out" / "report.html", samples, written


def chromium(page, *args, profile):
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_dom_has_the_tables_and_decodable_images(report, tmp_path):
    page, samples, written = report
    dom = _Elements()
    dom.feed(chromium(page, "--dump-dom", profile=tmp_path / "profile"))

    markdown = page.with_name("report.md").read_text()
    assert dom.tables == markdown.count("\n| --- |") >= 3  # latency, speedups, runs at least
    assert fmt.ms(np.median(samples["resnet18.fused.cbn-on", 8])) in dom.cells
    pngs = [name for name in (p.name for p in written.files) if name.endswith(".png")]
    assert len(dom.images) == len(pngs) > 0
    import matplotlib.image

    for src in dom.images:
        assert src.startswith("data:image/png;base64,")
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.std() > 0.01


def test_screenshot_shows_the_plots(report, tmp_path):
    page, _, _ = report
    shot = tmp_path / "shot.png"
    chromium(
        page, "--hide-scrollbars", "--window-size=1280,8000", f"--screenshot={shot}",
        profile=tmp_path / "profile",
    )  # fmt: skip
    import matplotlib.image

    rgb = matplotlib.image.imread(shot)[..., :3] * 255
    blue = np.abs(rgb - MATPLOTLIB_BLUE).sum(axis=-1) < 30
    assert blue.sum() > 500, "no plot pixels painted: the embedded PNGs did not render"
    dark_text = (rgb < 80).all(axis=-1)
    assert dark_text.sum() > 1000, "no table text painted"
