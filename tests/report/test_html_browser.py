"""report.html in a real browser: the quickstart's page loads with zero console errors, every
image decodes, every metric section has its chart, every card shows the erased and the base
image with a score each, and correctly kept retention images wear the kept (green) colour.

Needs ``chromium-headless-shell`` (or ``chromium``) on PATH; CI installs it (.ci/run), a
machine without it skips. Set ``ERASEKIT_SCREENSHOT_DIR`` to keep the screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support.quickstart import quickstart_config

from erasekit.cli import main
from erasekit.toyworld import PIPELINE_DIR

REPO = Path(__file__).resolve().parents[2]
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
pytestmark = [
    pytest.mark.skipif(BROWSER is None, reason="no chromium-headless-shell / chromium on PATH (CI installs it)"),
    pytest.mark.skipif(not (Path(PIPELINE_DIR) / "unet").is_dir(), reason="toy weights not shipped"),
]
WINDOW = (1280, 4000)
KEPT_RGB = "rgb(16, 124, 16)"  # erasekit.report.html.GOOD
BAD_RGB = "rgb(197, 15, 31)"  # erasekit.report.html.BAD

CHECK_JS = """
window.addEventListener('load', function () {
  var all = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var imgs = Array.prototype.slice.call(document.images);
  var secs = all('section.metric');
  var cards = all('.card');
  var ret = cards.filter(function (c) { return c.classList.contains('retention'); });
  var border = function (c) { var im = c.querySelector('img.erased-img'); return im ? getComputedStyle(im).borderTopColor : null; };
  var out = {
    images: imgs.length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    sections: secs.map(function (s) { return s.getAttribute('data-metric'); }),
    charts: secs.map(function (s) { return !!s.querySelector('svg.chart'); }),
    cards: cards.length,
    cards_two_scores: cards.filter(function (c) { return all('.score', c).length === 2; }).length,
    retention: ret.length,
    retention_good: ret.filter(function (c) { return c.classList.contains('good'); }).length,
    kept: ret.filter(function (c) { return c.classList.contains('kept'); }).length,
    kept_borders: ret.filter(function (c) { return c.classList.contains('kept'); }).map(border),
    bad_borders: all('.card.bad').map(border),
    toc_links: all('nav.toc a').map(function (a) { return a.getAttribute('href'); }),
    toc_targets_missing: all('nav.toc a').filter(function (a) { return !document.getElementById(a.getAttribute('href').slice(1)); }).length
  };
  console.log('ERASEKIT_CHECK ' + JSON.stringify(out));
});
"""

NOISE = re.compile(r"dbus|vaapi|sandbox|bluez|Floss|drmGetDevices|gpu_init|viz_main|gl_surface|angle|fontconfig", re.I)


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qs_browser")
    cfg = quickstart_config()
    cfg.update(output_dir=str(root / "out"), cache_dir=str(root / "cache"))
    p = root / "quickstart.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p), "--no-progress"]) == 0
    return root / "out"


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BROWSER, "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def page(quickstart_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    html = (quickstart_run / "report.html").read_text(encoding="utf-8")
    assert html.count("</body>") == 1
    out = tmp_path_factory.mktemp("browser") / "report_checked.html"
    out.write_text(html.replace("</body>", f"<script>{CHECK_JS}</script></body>"), encoding="utf-8")
    return out


def test_page_loads_clean_and_complete(page: Path, quickstart_run: Path) -> None:
    proc = _chromium("--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    checks = [ln for ln in console if "ERASEKIT_CHECK " in ln]
    others = [ln for ln in console if "ERASEKIT_CHECK " not in ln]
    assert others == [], f"console messages besides the check: {others}"
    errors = [ln for ln in proc.stderr.splitlines() if ":ERROR:" in ln and not NOISE.search(ln)]
    assert errors == [], errors
    assert len(checks) == 1, proc.stderr[-3000:]
    m = re.search(r'ERASEKIT_CHECK (\{.*\})", source:', checks[0])
    assert m, checks[0]
    got = json.loads(m.group(1))

    report = json.loads((quickstart_run / "report.json").read_text())
    records = [json.loads(ln) for ln in (quickstart_run / "records.jsonl").read_text().splitlines() if ln.strip()]
    n_erased = sum(r["model"] == "erased" for r in records)
    assert got["images"] > 0 and got["decoded"] == got["images"], got
    assert got["images"] == len(records)  # every scored image (erased and base) is on the page
    assert got["sections"] == list(report["metrics"]), got["sections"]
    assert all(got["charts"]), dict(zip(got["sections"], got["charts"], strict=True))
    assert got["cards"] == n_erased and got["cards_two_scores"] == got["cards"], got
    n_retention = sum(r["model"] == "erased" and r.get("arm") in ("retain", "retention") for r in records)
    assert got["retention"] == n_retention > 0
    assert got["retention_good"] > 0 and got["kept"] == got["retention_good"]
    assert set(got["kept_borders"]) == {KEPT_RGB}, got["kept_borders"]  # correctly kept squares are green, never red
    assert got["bad_borders"] and set(got["bad_borders"]) == {BAD_RGB}
    assert got["toc_targets_missing"] == 0 and len(got["toc_links"]) >= len(report["metrics"]) + 3


def test_screenshot(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = _chromium(f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    with Image.open(shot) as im:
        im.load()
        assert im.size == WINDOW
        assert len(im.convert("RGB").resize((64, 256)).getcolors(1 << 16) or []) > 50  # not a blank page
    keep = os.environ.get("ERASEKIT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
