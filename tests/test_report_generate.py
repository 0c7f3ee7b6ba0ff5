"""Report evaluation and generation on hand-made records (no real data, no runs)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from visrep.errors import UserError
from visrep.reports.evaluate import (
    CONFIG_ERROR,
    DATA_MISSING,
    DIFFERS,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    METHOD_MISSING,
    METRIC_MISSING,
    NOT_RUN,
    REPRODUCED,
    Resolver,
    describe_check,
    evaluate_table,
    metric_value,
)
from visrep.reports.generate import generate
from visrep.reports.tables import Check, load_table

from visrep.commands import main
from visrep.results import record_path, write_record
from visrep.spec import Experiment, expand_experiment

TABLE = '''
id = "mini"
title = "Mini table"
slide = 7
citation = "test"
scale = 100
tolerance = 1.0
[[column]]
id = "oxf"
label = "Oxf5k"
dataset = "oxford5k"
dataset_params = { features = "/nowhere/feat.fvecs" }
[[column]]
id = "nodata"
label = "Nowhere"
dataset = "no-such-dataset"
[[row]]
id = "knn"
label = "NN"
method = "knn"
published = { oxf = 40.3, nodata = 1.0 }
[[row]]
id = "aqe"
label = "AQE"
method = "aqe"
published = { oxf = 50.0 }
[[row]]
id = "alpha"
label = "alpha-QE"
method = "alpha-qe"
params = { alpha = 2.0 }
published = { oxf = 39.0 }
[[row]]
id = "bad"
label = "bad param"
method = "knn"
params = { no_such_param = 1 }
published = { oxf = 1.0 }
[[row]]
id = "missing"
label = "not a plugin"
method = "no-such-method"
published = { oxf = 1.0 }
[[row]]
id = "cited"
label = "cited"
published = { oxf = 2.0 }
[runs.knn]
method = "knn"
dataset = "oxford5k"
dataset_params = { features = "/nowhere/feat.fvecs" }
[runs.aqe]
method = "aqe"
dataset = "oxford5k"
dataset_params = { features = "/nowhere/feat.fvecs" }
[runs.ghost]
method = "no-such-method"
dataset = "oxford5k"
[[claim]]
id = "nn-beats-aqe"
text = "NN beats AQE"
checks = [{ relation = "greater", a = "knn", b = "aqe", metric = "metrics.map" },
          { relation = "ratio_at_least", a = "aqe", b = "knn", metric = "timings.query", value = 2 }]
[[claim]]
id = "aqe-beats-nn"
text = "AQE beats NN"
checks = [{ relation = "greater", a = "aqe", b = "knn", metric = "metrics.map" }]
[[claim]]
id = "ghost"
text = "a claim on a missing method"
checks = [{ relation = "within", a = "ghost", b = "knn", metric = "metrics.map", tol = 0.1 }]
'''


def _record(results, method, params, map_, query, features="/elsewhere/feat.fvecs", commit="abc123def4567"):
    job = expand_experiment({"method": method, "dataset": "oxford5k", "params": params,
                             "dataset_params": {"features": features}})[0]
    rec = {"schema": 1, "job": job.job_id, "method": method, "dataset": "oxford5k", "protocol": job.protocol,
           "params": job.params, "dataset_params": job.dataset_params, "protocol_params": job.protocol_params,
           "seed": 0, "metrics": {"map": map_, "n_queries": 55}, "timings": {"query": query},
           "created": "2020-07-01T00:00:00+00:00", "provenance": {"commit": commit, "dirty": True}}
    path = record_path(results, "oxford5k", method, job.job_id)
    write_record(path, rec)
    return path


@pytest.fixture
def store(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    # the records were made from one path of the features file, the table names the same file
    # through another folder (a symlink, as another mount would): found by content, not by path
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    feat = tmp_path / "a" / "feat.fvecs"
    feat.write_bytes(b"the same bytes")
    (tmp_path / "b" / "feat.fvecs").symlink_to(feat)
    (tables / "mini.toml").write_text(TABLE.replace("/nowhere/feat.fvecs", str(tmp_path / "b" / "feat.fvecs")))
    results = tmp_path / "results"
    _record(results, "knn", {}, 0.4029, 0.001, features=str(feat))
    _record(results, "aqe", {}, 0.3696, 0.003, features=str(feat))
    p = _record(results, "alpha-qe", {"alpha": 2.0}, 0.39, 0.003, features=str(feat))
    rec = json.loads(p.read_text())
    rec["metrics"] = {"other": 1.0}
    p.write_text(json.dumps(rec))
    return tmp_path, tables, results


def test_cell_statuses(store):
    tmp_path, tables, results = store
    table = load_table(tables / "mini.toml")
    tr = evaluate_table(table, Resolver(results, data_root=tmp_path, shared=None))
    st = {k: v.status for k, v in tr.cells.items()}
    assert st[("knn", "oxf")] == REPRODUCED
    knn = tr.cells[("knn", "oxf")]
    assert knn.reproduced == pytest.approx(40.29) and knn.delta == pytest.approx(-0.01)
    assert knn.commit == "abc123def4567" and knn.dirty is True and knn.record_path.endswith(".json")
    assert st[("aqe", "oxf")] == DIFFERS and tr.cells[("aqe", "oxf")].delta == pytest.approx(36.96 - 50.0)
    assert st[("alpha", "oxf")] == METRIC_MISSING
    assert st[("bad", "oxf")] == CONFIG_ERROR and "no_such_param" in tr.cells[("bad", "oxf")].reason
    assert st[("missing", "oxf")] == METHOD_MISSING and "no-such-method" in tr.cells[("missing", "oxf")].reason
    assert st[("cited", "oxf")] == METHOD_MISSING
    assert st[("knn", "nodata")] == DATA_MISSING and "no-such-dataset" in tr.cells[("knn", "nodata")].reason
    assert tr.summary() == REPRODUCED


def test_claims_hold_or_not_with_numbers(store):
    tmp_path, tables, results = store
    table = load_table(tables / "mini.toml")
    tr = evaluate_table(table, Resolver(results, data_root=tmp_path, shared=None))
    claims = {c.claim: c for c in tr.claims}
    assert claims["nn-beats-aqe"].status == HOLDS
    assert [c.holds for c in claims["nn-beats-aqe"].checks] == [True, True]
    assert claims["aqe-beats-nn"].status == DOES_NOT_HOLD
    assert "0.3696" in claims["aqe-beats-nn"].checks[0].text and "0.4029" in claims["aqe-beats-nn"].checks[0].text
    assert claims["ghost"].status == METHOD_MISSING


def test_unrun_cell_with_data_is_not_run_and_without_data_is_data_missing(tmp_path, oxford5k_features):
    res = Resolver(tmp_path / "empty", shared=None)
    spec = Experiment(method="knn", dataset="oxford5k", dataset_params={"features": str(oxford5k_features)},
                   data_root=str(oxford5k_features.parent.parent))
    assert res.resolve(spec).status == NOT_RUN
    spec2 = Experiment(method="knn", dataset="oxford5k", data_root=str(tmp_path))
    r2 = res.resolve(spec2)
    assert r2.status == DATA_MISSING and "gnd_oxford5k.mat" in r2.reason
    spec3 = Experiment(method="knn", dataset="oxford5k", dataset_params={"features": "${shared}/x.fvecs"})
    assert res.resolve(spec3).status == DATA_MISSING


def test_describe_check_relations():
    c = Check("within", "a", "metrics.map", b="b", tol=0.005)
    assert describe_check(c, 0.420, 0.424)[1] is True
    assert describe_check(c, 0.420, 0.426)[1] is False
    assert describe_check(c, None, 0.426)[1] is None
    r = Check("ratio_at_least", "cg", "timings.query", b="fsr", value=10)
    assert describe_check(r, 1.0, 0.1)[1] is True and describe_check(r, 1.0, 0.11)[1] is False
    assert describe_check(Check("less", "a", "m", b="b"), 1.0, 2.0)[1] is True
    assert describe_check(Check("at_least_as", "a", "m", b="b"), 0.5, 0.5)[1] is True
    assert describe_check(Check("close", "a", "m", value=0.403, tol=0.0005), 0.4029, None)[1] is True
    assert describe_check(Check("at_most", "a", "m", value=1.0), 1.5, None)[1] is False
    assert metric_value({"metrics": {"medium.map": 0.5}}, "metrics.medium.map") == 0.5
    assert metric_value({"timings": {"query": 0.2}}, "timings.query") == 0.2
    assert metric_value({"metrics": {"map": float("nan")}}, "map") is None


def test_generate_site_and_markdown(store):
    tmp_path, tables, results = store
    out = tmp_path / "site"
    summary = generate(out, results, data_root=tmp_path, tables_dir=tables, asv_results=tmp_path / "no-asv")
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    assert summary["tables"]["mini"]["status"] == REPRODUCED
    assert 'id="table-mini"' in page and 'data-table="mini"' in page
    assert "does not hold" in page and "holds" in page
    assert 'data-leaderboard="oxford5k/oxford"' in page
    # offline: no external scripts, styles, fonts or images
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script src" not in page and "<link" not in page
    # every reproduced number links to a copy of its record, which is in the site
    links = re.findall(r'href="(records/[^"]+\.json)"', page)
    assert links and all((out / link).exists() for link in links)
    assert "abc123def4" in page and "(dirty)" in page
    assert "## Mini table" in md and "| NN | Oxf5k | 40.3 | 40.29 | -0.01 | reproduced" in md
    assert (out / "plots" / "map_vs_time_oxford5k_oxford.png").exists()


def test_readiness_section_from_a_rehearsal(store):
    tmp_path, tables, results = store
    reh = tmp_path / "reh"
    reh.mkdir()
    cells = [{"table": "asmk", "row": "asmk", "column": "holidays", "method": "asmk", "dataset": "holidays",
              "setting": "k=65536", "status": "ok", "wall_s": 1.5, "peak_mb": 12.0, "est_full_s": 7200.0,
              "est_full_peak_mb": 900.0},
             {"table": "dsm", "row": "v-mac", "column": "med_roxf", "method": "dsm", "dataset": "roxford5k",
              "status": "skipped", "reason": "weights file missing"}]
    (reh / "rehearsal.json").write_text(json.dumps({"counts": {"ok": 1, "skipped": 1}, "cells": cells}))
    out = tmp_path / "site-r"
    generate(out, results, data_root=tmp_path, tables_dir=tables, rehearsal=reh / "rehearsal.json")
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert 'id="readiness"' in page and "asmk/asmk/holidays" in page and "2.0 h" in page
    assert "| asmk/asmk/holidays | asmk | holidays | k=65536 | ok | 1.50 | 12 | 2.0 h | 900 |" in md
    assert "skipped: weights file missing" in md
    (reh / "rehearsal.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not a rehearsal file"):
        generate(out, results, data_root=tmp_path, tables_dir=tables, rehearsal=reh / "rehearsal.json")


def test_cli_report_and_list_tables(tmp_path, capsys):
    assert main(["list", "tables", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert "asmk" in names and "reference_oxford5k" in names
    out = tmp_path / "site"
    assert main(["report", "--out", str(out), "--results", str(tmp_path / "none"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(names) == set(summary["tables"])
    assert summary["tables"]["dlp"]["status"] in (METHOD_MISSING, DATA_MISSING)
    assert (out / "index.html").exists() and (out / "report.md").exists()


def test_listing_tables_stays_light():
    """`visrep list tables` and building the CLI with `report`/`bench` import no heavy library."""
    import subprocess
    import sys
    code = ("import sys\nfrom visrep.commands import build_parser\np = build_parser()\n"
            "from visrep.reports.tables import list_tables\nassert list_tables()\n"
            "heavy = [m for m in ('torch', 'faiss', 'cv2', 'matplotlib', 'pandas', 'sklearn') if m in sys.modules]\n"
            "print(','.join(heavy))\n"
            "a = p.parse_args(['report', '--out', 'x', '--run-missing'])\nassert a.run_missing and a.out == 'x'\n"
            "b = p.parse_args(['bench', 'publish'])\nassert b.action == 'publish'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout.strip()}"


# ------------------------------------------------------------------------------ report polish
def _with_per_item(path, values):
    rec = json.loads(path.read_text())
    rec["per_item"] = {"map": values}
    path.write_text(json.dumps(rec))


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}"[^>]*>(.*?)</section>', page, re.S)
    assert m, f"no section {sid}"
    return m.group(1)


def test_inline_html_in_table_text_is_rendered_and_the_rest_escaped(store):
    tmp_path, tables, results = store
    text = (tables / "mini.toml").read_text()
    text = text.replace('label = "NN"', 'label = "QE<sub>1</sub>"', 1)
    text = text.replace('label = "AQE"', 'label = "<script>alert(1)</script>"', 1)
    text = text.replace('label = "Oxf5k"', 'label = "Oxf<sup>5k</sup>"', 1)
    text = text.replace('text = "NN beats AQE"', 'text = "NN beats <i>AQE</i> <img src=x onerror=alert(1)>"', 1)
    (tables / "mini.toml").write_text(text)
    out = tmp_path / "site"
    generate(out, results, data_root=tmp_path, tables_dir=tables, asv_results=tmp_path / "no-asv")
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    body = page.split("<main>", 1)[1].split("</main>", 1)[0]
    assert "QE<sub>1</sub>" in body and "QE&lt;sub&gt;" not in body
    assert "Oxf<sup>5k</sup>" in body and "NN beats <i>AQE</i>" in body
    assert "<script" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<img src=x" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert page.count("<script>") == 1          # the page's own sorting script, nothing else
    # Markdown: readable text, no raw tags
    assert "QE₁" in md and "<sub>" not in md and "<script>" not in md and "&lt;script&gt;" in md
    assert "NN beats *AQE*" in md


def test_real_tables_have_no_internal_references_and_a_complete_legend(tmp_path):
    from visrep.reports import evaluate
    from visrep.reports.generate import STATUS_HELP
    out = tmp_path / "site"
    generate(out, tmp_path / "none", asv_results=tmp_path / "no-asv")
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    for text in (page, md):
        assert "issue " not in text.lower(), re.findall(r".{60}issue .{30}", text, re.I)
        assert not re.search(r"\bissue\s*#?\d", text, re.I)
    legend = re.search(r'<div class="legend" id="legend">(.*?)</div>', page, re.S)
    assert legend, "no legend on the page"
    constants = {v for k, v in vars(evaluate).items() if k.isupper() and isinstance(v, str)}
    assert {"reproduced", "figure", "inconclusive", "holds", "does not hold", "data missing"} <= constants | {"figure"}
    for status in constants | {"figure"}:
        assert f">{status}</span>" in legend.group(1), f"status '{status}' is not in the legend"
        assert f"**{status}**" in md
    # every status class used on the page has a badge in the legend
    used = set(re.findall(r'class="badge (s-[a-z-]+)"', page))
    in_legend = set(re.findall(r'class="badge (s-[a-z-]+)"', legend.group(1)))
    assert used <= in_legend, used - in_legend
    assert set(STATUS_HELP) == constants | {"figure"}


def test_forest_plot_and_overview_counts(store):
    tmp_path, tables, results = store
    text = (tables / "mini.toml").read_text() + '''
[[claim]]
id = "nn-at-least"
text = "NN reaches mAP 0.3"
checks = [{ relation = "at_least", a = "knn", metric = "metrics.map", value = 0.3 }]
'''
    (tables / "mini.toml").write_text(text)
    knn = [0.30 + 0.02 * (i % 7) for i in range(40)]
    aqe = [v - 0.01 - 0.005 * (i % 3) for i, v in enumerate(knn)]
    for path in results.rglob("*.json"):
        rec = json.loads(path.read_text())
        if rec.get("method") in ("knn", "aqe"):
            _with_per_item(path, knn if rec["method"] == "knn" else aqe)
    out = tmp_path / "site"
    summary = generate(out, results, data_root=tmp_path, tables_dir=tables, asv_results=tmp_path / "no-asv")
    table = load_table(tables / "mini.toml")
    tr = evaluate_table(table, Resolver(results, data_root=tmp_path, shared=None))
    claims = {c.claim: c for c in tr.claims}
    assert claims["nn-beats-aqe"].checks[0].lo is not None and claims["nn-beats-aqe"].checks[0].lo > 0
    assert claims["nn-at-least"].checks[0].n == 40
    forest = out / "plots" / "forest_mini.png"
    assert forest.exists() and forest.stat().st_size > 5_000
    assert summary["forest"]["mini"] == "plots/forest_mini.png"
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    section = _section(page, "table-mini")
    assert '<img src="plots/forest_mini.png"' in section
    assert "](plots/forest_mini.png)" in md
    # the overview: counts per status instead of one best cell
    overview = _section(page, "overview")
    row = re.search(r'<tr><td><a href="#table-mini">.*?</tr>', overview, re.S).group(0)
    for phrase in ("1 reproduced", "1 differs", "1 metric missing", "1 config error", "2 method missing",
                   "1 data missing", "2 hold", "1 does not hold", "1 method missing"):
        assert f">{phrase}</span>" in row, (phrase, row)
    assert "<th>Status</th>" not in overview
    md_row = next(line for line in md.splitlines() if line.startswith("| [Mini table]"))
    assert "1 reproduced · 1 differs" in md_row and "2 hold · 1 does not hold · 1 method missing" in md_row


def test_plots_read_well(tmp_path):
    """The figures lay out without overlapping text: a log axis gets plain ticks, one marker per method."""
    from visrep.reports import plots
    pts = [{"label": "diffusion", "map": 0.44 + 0.001 * i, "time": 0.005 + 0.0002 * i} for i in range(9)]
    pts += [{"label": "knn", "map": 0.40, "time": 0.0015}]
    assert plots.map_vs_time(pts, "t", tmp_path / "a.png").exists()
    history = {"S.time_a": [(1, "abc", 0.002)], "S.time_b": [(1, "abc", 3.0)], "S.peakmem_c": [(1, "abc", 1e8)]}
    assert plots.speed_history(history, tmp_path / "b.png").exists()
    assert plots.forest([], "t", tmp_path / "c.png") is None
    rows = [{"label": "c: a vs b (map, n=5)", "diff": 0.01, "lo": -0.01, "hi": 0.03, "outcome": "inconclusive",
             "group": "g", "refs": [0.0], "band": None}]
    assert plots.forest(rows, "t", tmp_path / "c.png").exists()


def test_missing_method_input_file_is_data_missing_whatever_was_resolved_before(tmp_path):
    """A run whose weights file is absent reads 'data missing', even when the same dataset was
    resolved before for another run (the dataset check is cached; the method's files are not)."""
    r = Resolver(tmp_path / "res")
    ok = r.resolve(Experiment(method="knn", dataset="sample-views", params={"descriptor": "histogram"}))
    assert ok.status == NOT_RUN
    missing = r.resolve(Experiment(method="rmac", dataset="sample-views",
                                   params={"weights": str(tmp_path / "absent" / "w.pth")}))
    assert missing.status == DATA_MISSING and "w.pth not found" in missing.reason


SEEDED = '''
id = "seeded"
title = "A claim over training seeds"
slide = 7
citation = "test"
kind = "figure"
[runs.knn]
method = "knn"
dataset = "oxford5k"
data_root = "ROOT"
dataset_params = { features = "FEAT" }
[runs.aqe]
method = "aqe"
dataset = "oxford5k"
data_root = "ROOT"
dataset_params = { features = "FEAT" }
[[claim]]
id = "aqe-beats-nn"
text = "AQE beats NN"
seeds = [0, 1, 2]
checks = [{ relation = "greater", a = "aqe", b = "knn", metric = "metrics.map" }]
'''


def test_claim_with_seeds_is_decided_on_the_seeds_that_ran(tmp_path, oxford5k_features):
    """seeds = [0, 1, 2]: each run is looked up per seed; the first seed's records must exist, the
    claim is decided on the seeds every run has, and the reason and the report name those missing."""
    from visrep.reports.evaluate import NOT_RUN, claim_jobs
    feat, root = oxford5k_features, oxford5k_features.parent.parent
    (tmp_path / "seeded.toml").write_text(SEEDED.replace("FEAT", str(feat)).replace("ROOT", str(root)))
    table = load_table(tmp_path / "seeded.toml")
    assert table.claims[0].seeds == [0, 1, 2]
    results = tmp_path / "results"

    def put(method, seed, aps):
        job = expand_experiment({"method": method, "dataset": "oxford5k", "seed": seed, "data_root": str(root),
                                 "dataset_params": {"features": str(feat)}})[0]
        write_record(record_path(results, "oxford5k", method, job.job_id),
                     {"schema": 1, "job": job.job_id, "method": method, "dataset": "oxford5k",
                      "protocol": job.protocol, "params": job.params, "dataset_params": job.dataset_params,
                      "protocol_params": job.protocol_params, "seed": seed, "metrics": {"map": float(np.mean(aps))},
                      "per_item": {"map": list(aps)}, "timings": {}, "created": "2020-07-01T00:00:00+00:00",
                      "provenance": {"commit": "abc", "dirty": False}})

    resolver = Resolver(results, shared=None)
    assert evaluate_table(table, resolver).claims[0].status == NOT_RUN
    # the main job adds the first seed's jobs only; --run-missing would add the others
    first, _ = claim_jobs(results, tables=[table])
    every, _ = claim_jobs(results, tables=[table], all_seeds=True)
    assert {j.seed for j in first} == {0} and len(first) == 2
    assert {j.seed for j in every} == {0, 1, 2} and len(every) == 6
    rng = np.random.default_rng(0)
    base = {s: rng.uniform(0.2, 0.8, 50) for s in range(3)}
    for s in (0, 1):
        put("knn", s, base[s])
        put("aqe", s, base[s] + 0.1)
    put("knn", 2, base[2])                       # aqe's seed 2 has not run: seed 2 is left out
    cr = evaluate_table(table, Resolver(results, shared=None)).claims[0]
    assert cr.status == HOLDS and cr.seeds_used == [0, 1] and cr.seeds_missing == [2]
    assert "2 seeds x 50 items" in cr.checks[0].text and "decided on seeds 0, 1 of 0, 1, 2" in cr.reason
    assert cr.runs["aqe"]["seeds"] == {0: "record", 1: "record", 2: NOT_RUN}
    # the seeds are shown beside each run in the Markdown report
    out = tmp_path / "site"
    generate(out, results, tables_dir=tmp_path)
    md = (out / "report.md").read_text()
    assert "seeds 0 (record), 1 (record), 2 (pending)" in md
    put("aqe", 2, base[2] - 0.3)                 # the third seed reverses the gain
    cr = evaluate_table(table, Resolver(results, shared=None)).claims[0]
    assert cr.seeds_used == [0, 1, 2] and cr.seeds_missing == [] and cr.status == INCONCLUSIVE
    with pytest.raises(UserError, match="seeds must be a list"):
        (tmp_path / "bad" / "seeded.toml").parent.mkdir()
        (tmp_path / "bad" / "seeded.toml").write_text(SEEDED.replace("seeds = [0, 1, 2]", "seeds = [0, 0]"))
        load_table(tmp_path / "bad" / "seeded.toml")


SEEDED_SPLITS = SEEDED.replace('seeds = [0, 1, 2]\n', 'seeds = [0, 1, 2]\nseed_dataset_params = ["label_split"]\n')


def test_seed_dataset_params_follow_the_seed_and_must_agree_between_claims(tmp_path):
    """seed_dataset_params = ["label_split"]: seed s also draws labelled subset s (as the SSL papers'
    runs); a run shared by two seeded claims must follow the seed the same way in both."""
    from visrep.reports.evaluate import claim_run_seeds
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "seeded.toml").write_text(SEEDED_SPLITS)
    table = load_table(tmp_path / "a" / "seeded.toml")
    claim = table.claims[0]
    assert claim.seed_dataset_params == ["label_split"]
    got = [(s, r.seed, r.dataset_params) for s, r in claim_run_seeds(claim, table.runs["knn"])]
    assert got == [(s, s, {"features": "FEAT", "label_split": s}) for s in (0, 1, 2)]
    assert table.runs["knn"].dataset_params == {"features": "FEAT"}          # the table's run is untouched
    second = SEEDED.split("[[claim]]")[1].replace('id = "aqe-beats-nn"', 'id = "again"')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "seeded.toml").write_text(SEEDED_SPLITS + "[[claim]]" + second)
    with pytest.raises(UserError, match=r"run '(aqe|knn)' follows the seed in dataset parameters \['label_split'\] "
                                        r"in claim 'aqe-beats-nn' but \[\] in claim 'again'"):
        load_table(tmp_path / "b" / "seeded.toml")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "seeded.toml").write_text(SEEDED_SPLITS.replace("seeds = [0, 1, 2]\n", ""))
    with pytest.raises(UserError, match=r"seed_dataset_params \['label_split'\] need the claim's 'seeds'"):
        load_table(tmp_path / "c" / "seeded.toml")


def test_labelled_subsets_differ_between_label_splits_and_stay_balanced():
    """The Fashion-MNIST loader's N = 100 / 1000 / 4000 labelled subsets (the SSL papers' counts):
    balanced, reproducible per label_split, different between splits; the test split is the same."""
    from visrep import registry
    from visrep.context import RunContext
    from visrep.errors import MissingDataError
    ds = {}
    try:
        for n, split in ((100, 0), (1000, 0), (4000, 0), (4000, 1)):
            d = registry.datasets.create("fashion-mnist", labelled=n, label_split=split)
            ds[n, split] = d.load(RunContext(data_root="/usr/share/datasets"))
    except MissingDataError as e:
        pytest.skip(f"Fashion-MNIST not installed (Debian package dataset-fashion-mnist): {e}")
    for (n, split), data in ds.items():
        idx = data.train.labelled_idx
        assert len(idx) == n and np.bincount(data.train.labels[idx], minlength=10).tolist() == [n // 10] * 10
    again = registry.datasets.create("fashion-mnist", labelled=4000, label_split=1).load(
        RunContext(data_root="/usr/share/datasets"))
    assert np.array_equal(again.train.labelled_idx, ds[4000, 1].train.labelled_idx)
    assert len(np.intersect1d(ds[4000, 0].train.labelled_idx, ds[4000, 1].train.labelled_idx)) < 4000 * 0.2
    assert np.array_equal(ds[4000, 0].labels, ds[4000, 1].labels)
