"""The generated report in a real headless browser (Debian's chromium): every table renders,
the sorting script runs and sorts, no console message of any kind, and a screenshot is saved.

Skips with the reason when chromium is not installed (`.ci/run` installs it).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from visrep.reports.generate import generate
from visrep.reports.tables import load_tables

SCREENSHOT = Path(tempfile.gettempdir()) / "visrep-report-screenshot.png"
_SORT_PROBE = """<script>
document.addEventListener("DOMContentLoaded", function () {   // after the page's own sorting script set up
  var t = document.querySelector("table.leaderboard");
  if (!t) { document.body.setAttribute("data-sort-test", "no-leaderboard"); return; }
  var th = t.tHead.rows[t.tHead.rows.length - 1].cells[2];
  function col() { return [].map.call(t.tBodies[0].rows, function (r) { return r.cells[2].getAttribute("data-sort"); }); }
  th.click(); var asc = col(); th.click(); var desc = col();
  document.body.setAttribute("data-sort-test", JSON.stringify([asc, desc]));
});
</script>
</body>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.skip("chromium is not installed (apt-get install chromium); the browser check needs it")


def _browse(chromium: str, url: str, tmp: Path, *extra: str) -> tuple[str, str]:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url]
    env = {**os.environ, "HOME": str(tmp)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    return proc.stdout, proc.stderr


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A report over real records (knn, AQE on the real Oxford5k descriptors) when the data is here."""
    from visrep.context import shared_data_dir
    from visrep.runner import RunSettings, run_job
    from visrep.spec import expand_experiment

    shared_data = shared_data_dir() or Path("/nonexistent")
    tmp_path = tmp_path_factory.mktemp("report")
    results = tmp_path / "results"
    feats = shared_data / "retrieval" / "oxford5k" / "oxford_features_caffenet_pca128.fvecs"
    if feats.exists():
        for method in ("knn", "aqe", "alpha-qe"):
            job = expand_experiment({"method": method, "dataset": "oxford5k",
                                     "params": {"features": str(feats)}}, data_root=str(shared_data / "retrieval"))[0]
            run_job(job, RunSettings(results_dir=str(results), quiet=True, cache_dir=str(tmp_path / "cache")))
    out = tmp_path / "site"
    generate(out, results)
    return out


def test_report_renders_in_chromium(site, tmp_path):
    chromium = _chromium()
    tables = load_tables()
    url = (site / "index.html").resolve().as_uri()
    dom, err = _browse(chromium, url, tmp_path, "--dump-dom")
    assert not _console(err), f"console messages in the browser: {_console(err)}"
    assert "</html>" in dom, f"chromium produced no DOM: {err[-2000:]}"
    for t in tables:
        assert f'id="table-{t.id}"' in dom, f"section of table {t.id} did not render"
        if t.rows:
            assert f'data-table="{t.id}"' in dom, f"table {t.id} did not render"
    n_sortable = dom.count('class="leaderboard sortable"') + dom.count('class="cells sortable"') \
        + dom.count('class="overview sortable"')
    ready = re.search(r'data-sortable-ready="(\d+)"', dom)
    assert ready, "the sorting script did not run"
    assert int(ready.group(1)) == n_sortable > 0

    _, err = _browse(chromium, url, tmp_path, "--window-size=1400,2600", f"--screenshot={SCREENSHOT}")
    assert not _console(err), f"console messages in the browser: {_console(err)}"
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 10_000
    print(f"\nreport screenshot: {SCREENSHOT}")


def test_leaderboard_sorts_in_chromium(site, tmp_path):
    chromium = _chromium()
    page = site / "index.html"
    if 'class="leaderboard sortable"' not in page.read_text():
        pytest.skip("no records, so no leaderboard to sort (real Oxford5k descriptors absent)")
    probe = site / "probe.html"
    probe.write_text(page.read_text().replace("</body>", _SORT_PROBE, 1))
    dom, err = _browse(chromium, probe.resolve().as_uri(), tmp_path, "--dump-dom")
    assert not _console(err), f"console messages in the browser: {_console(err)}"
    m = re.search(r"data-sort-test=\"([^\"]*)\"", dom)
    assert m, "the sort probe did not run"
    asc, desc = json.loads(m.group(1).replace("&quot;", '"'))
    asc, desc = [float(v) for v in asc], [float(v) for v in desc]
    assert len(asc) >= 2 and asc == sorted(asc) and desc == sorted(desc, reverse=True)


_IMG_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = [].slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.getAttribute("src"); });
  var legend = document.getElementById("legend");
  var badges = legend ? [].map.call(legend.querySelectorAll(".badge"), function (b) { return b.textContent; }) : [];
  var wide = [].slice.call(document.querySelectorAll(".overview td.counts"))
                 .filter(function (td) { return td.scrollWidth > td.clientWidth + 1; }).length;
  document.body.setAttribute("data-img-test", JSON.stringify({n: imgs.length, broken: broken, legend: badges,
                                                              overflow: wide}));
});
</script>
</body>"""


def test_images_load_and_legend_renders_in_chromium(site, tmp_path):
    """Every plot (forest plots included) loads from the site folder, offline; the legend names every status."""
    from visrep.reports.generate import STATUS_HELP
    chromium = _chromium()
    probe = site / "probe-img.html"
    probe.write_text((site / "index.html").read_text().replace("</body>", _IMG_PROBE, 1))
    dom, err = _browse(chromium, probe.resolve().as_uri(), tmp_path, "--dump-dom")
    assert not _console(err), f"console messages in the browser: {_console(err)}"
    m = re.search(r"data-img-test=\"([^\"]*)\"", dom)
    assert m, "the image probe did not run"
    got = json.loads(m.group(1).replace("&quot;", '"'))
    assert got["broken"] == [], f"images that do not load: {got['broken']}"
    assert set(got["legend"]) == set(STATUS_HELP)
    assert got["overflow"] == 0, "status counts overflow their overview cell"
