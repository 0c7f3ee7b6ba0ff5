"""Every row of reports/tables/*.toml is configured as the talk ran it (issue 12, item 1).

Each row x column cell is resolved as the report resolves it (:func:`visrep.reports.evaluate.cell_spec`,
parameters validated and defaults filled by the plugins), with ``${shared}`` replaced by a placeholder
folder (no data is read), and its resolved parameters are compared with what the talk states for
that row: vocabulary size k, multiple assignment, backbone, pooling, label count, shots. A table
the talk gives no setting for (or whose setting belongs to a plugin not configured here yet) is
listed in UNSTATED with the reason, so that a new table must be decided on.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from visrep.reports.evaluate import cell_spec
from visrep.reports.tables import load_tables

from visrep.errors import UserError
from visrep.features import parse_descriptor
from visrep.registry import datasets, methods
from visrep.spec import substitute_shared

PLACEHOLDER = Path("/nonexistent-shared-data")
TABLES = {t.id: t for t in load_tables()}

NETS = {"VGG-16": "vgg16", "ResNet-101": "resnet101"}

#: tables whose rows state no setting checked here, and why
UNSTATED = {
    "active_learning": "no rows (a figure: claims only)",
    "aml": "no rows (a claim only)",
    "gcn_noisy": "no rows (a claim only)",
    "bp_attack": "no rows (a figure)",
    "cg_vs_rwr": "no rows (a figure)",
    "fsfsl": "no rows (claims only: the slide states no numbers)",
    "fsr_speed": "no rows (a claim only)",
    "hpm": "no rows (a figure)",
    "nsod": "proxy rows only; the talk states no setting (a figure with a claim)",
    "robustness": "no rows (a figure: curves and one claim)",
    "smooth_adv": "proxy rows only; the slide's two numbers are cited",
    "scene_maps": "the talk states no vocabulary or parameter for European Cities 1M",
    "object_discovery": "the talk states no backbone for its GeM / EGM rows",
}


def _cfg(method: str, params: dict) -> dict:
    return methods.create(method, **params).cfg


def _resolve(table, row, col) -> tuple[dict, dict]:
    """(method parameters, dataset parameters) of a cell, resolved with defaults; UserError if invalid."""
    spec = cell_spec(row, col)
    params = substitute_shared(spec.params, PLACEHOLDER, where=f"{table.id}/{row.id}")
    dparams = substitute_shared(spec.dataset_params, PLACEHOLDER, where=f"{table.id}/{row.id}")
    cfg = _cfg(spec.method, params)
    dcfg = datasets.create(spec.dataset, **dparams).cfg if spec.dataset in datasets else dict(dparams)
    return cfg, dcfg


def _descriptor(cfg: dict) -> tuple[str, dict]:
    name, params = parse_descriptor(cfg["descriptor"])
    return name, _cfg(name, params)


def _k_of(text: str) -> int:
    return int(float(re.match(r"\s*([\d.]+)k", text).group(1)) * 1000)


# ------------------------------------------------------------------ what the talk states, per table
def check_agm(row, col, cfg, dcfg):
    out = [("vocabulary", cfg["vocabulary"], row.label.lower())]
    if row.label == "AGM":                       # k inferred from a larger start: 857k must be reachable
        out.append(("k_init >= 857000", cfg["k"] >= 857000, True))
    else:
        out.append(("k", cfg["k"], _k_of(row.attrs["k"])))
    out.append(("no cap below k", cfg["vocab_limit"] == 0 or cfg["vocab_limit"] >= cfg["k"], True))
    agm = row.label == "AGM"                     # the paper's Table 1: 40 / 15 iterations, 200 / 100 checks, m = 100
    out += [("iterations", cfg["vocab_niter"], 15 if agm else 40), ("checks", cfg["vocab_checks"], 100 if agm else 200)]
    if agm:
        out.append(("memory m", cfg["agm_m"], 100))
    return out


def check_asmk(row, col, cfg, dcfg):
    ma = row.attrs.get("ma") == "✓"
    out = [("k (65k as in HE)", cfg["k"], 65536), ("MA", cfg["ma"] > 1, ma),
           ("no cap below k", cfg["vocab_limit"] == 0 or cfg["vocab_limit"] >= cfg["k"], True)]
    if row.method.startswith("asmk"):
        out.append(("alpha", cfg["alpha"], 3.0))
    if "BURST" in row.label:
        out.append(("burst", cfg["burst"], True))
    return out


def check_dsm(row, col, cfg, dcfg):
    name, d = _descriptor(cfg)
    pooling = "gem" if "GeM" in row.label else "mac"
    return [("backbone", d["backbone"] or d["arch"], NETS[row.attrs["net"]]), ("pooling", name, pooling)]


def check_mom_retrieval(row, col, cfg, dcfg):
    out = [("backbone", cfg["backbone"], "vgg16"),
           ("pooling", row.method, {"MAC": "mac", "R-MAC": "rmac"}[row.attrs["testing"]])]
    w = cfg["weights"] or ""
    out.append(("weights names a file", w.startswith(str(PLACEHOLDER) + "/models/") and w.endswith(".pth"), True))
    if "MoM" in row.label:
        out.append(("MoM weights", "mom" in Path(w).name.lower(), True))
    return out


def check_regional_diffusion(row, col, cfg, dcfg):
    name, d = _descriptor(cfg)
    out = [("backbone (ResNet-101, d = 2048)", d["backbone"] or d["arch"], "resnet101"), ("pooling", name, "rmac"),
           ("regional method", row.method, {"Euclidean": "r-match", "CG": "regional-diffusion",
                                            "FSR": "regional-fsr"}[row.label]),
           ("m (regions per image; None = all 21)", cfg["m"] or 21, row.attrs["m"]),
           ("PCA-whitened regions", cfg["whitening"], "pca")]
    if row.method != "r-match":      # the authors' run_test.m for regional vectors
        out += [("k", cfg["k"], 200), ("kq", cfg["kq"], 200), ("alpha", cfg["alpha"], 0.99), ("gamma", cfg["gamma"], 3.0),
                ("region scores pooled by GMP", cfg["pooling"], "gmp")]
    if row.method == "regional-fsr":
        out.append(("rank r (the talk: 5k)", cfg["rank"], 5000))
    return out


def check_dlp(row, col, cfg, dcfg):
    """The DLP code's settings (LP-DeepSSL helpers.load_args / README): C13 on CIFAR, ResNet-18 on miniImageNet,
    180 epochs; CIFAR-10 batch 100 / lr 0.05 / 50 labelled per batch, else 128 / 0.2 / 31; weight decay 2e-4."""
    c10 = col.group == "CIFAR-10"
    out = [("labelled", dcfg["labelled"], int(col.label.replace(",", ""))),
           ("split (the paper's first)", dcfg["label_split"], 10),
           ("network", cfg["arch"], "resnet18" if col.group == "miniImageNet" else "cnn13"),
           ("batch", cfg["batch"], 100 if c10 else 128), ("lr", cfg["lr"], 0.05 if c10 else 0.2),
           ("weight decay", cfg["weight_decay"], 2e-4)]
    epochs = {"supervised": ("epochs",), "dlp": ("sup_epochs", "rounds"), "mean-teacher": ("epochs",),
              "mt-dlp": ("mt_epochs", "rounds")}[row.method]
    out += [(e, cfg[e], 180) for e in epochs]
    if row.method != "supervised":
        out.append(("labelled per batch", cfg["labelled_per_batch"], 50 if c10 else 31))
    mini = col.group == "miniImageNet"          # RandomCrop(84, padding 8) vs RandomTranslateWithReflect(4)
    out += [("flip", cfg["flip"], True), ("translation", cfg["max_shift"], 8 if mini else 4),
            ("padding", cfg["pad"], "zeros" if mini else "reflect"), ("rotation", cfg["rotate"], 10.0 if mini else 0.0),
            ("input standardization", cfg["input_norm"], "miniimagenet" if mini else "cifar")]
    if row.method in ("mean-teacher", "mt-dlp"):
        out += [("noise", cfg["sigma"], 0.0), ("EMA", cfg["ema_decay"], 0.97),
                ("EMA after ramp-up", cfg["ema_decay_after"], 0.97)]
    return out


def check_dense(row, col, cfg, dcfg):
    return [("n_way", dcfg["n_way"], 5), ("k_shot", dcfg["k_shot"], int(col.label.split("-")[0]))]


def check_mom_cub(row, col, cfg, dcfg):
    if row.method in ("mom", "pretrained-net"):  # the paper fine-tunes GoogLeNet end to end; Baseline: before it
        return [("backbone (GoogLeNet)", cfg["backbone"], "googlenet")]
    if row.method == "triplet":              # FaceNet's loss and negatives, GoogLeNet fine-tuned end to end
        return [("margin", cfg["margin"], 0.2), ("semi-hard negatives", cfg["negatives"], "hardest"),
                ("backbone (GoogLeNet)", cfg["backbone"], "googlenet"), ("images per class", cfg["per_class"], 40)]
    raise AssertionError(f"mom_cub row {row.id}: method {row.method!r} has no expected configuration")


def check_reference(row, col, cfg, dcfg):
    return [("features", Path(dcfg["features"]).name, "oxford_features_caffenet_pca128.fvecs"),
            ("protocol", col.protocol, "oxford")]


STATED = {
    "agm_vocabularies": check_agm,
    "asmk": check_asmk,
    "dsm": check_dsm,
    "mom_retrieval": check_mom_retrieval,
    "mom_cub": check_mom_cub,
    "regional_diffusion": check_regional_diffusion,
    "dlp": check_dlp,
    "dense_classification": check_dense,
    "reference_oxford5k": check_reference,
}

#: tables owned elsewhere whose rows do not yet carry the talk's setting (the fix is in another file);
#: strict: the test fails once they do, so that the mark is removed
PENDING = {
}


def test_every_table_is_decided():
    assert set(TABLES) == set(STATED) | set(UNSTATED), sorted(set(TABLES) ^ (set(STATED) | set(UNSTATED)))
    assert not set(STATED) & set(UNSTATED)


@pytest.mark.parametrize("table_id", [pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=PENDING[t]))
                                      if t in PENDING else t for t in sorted(STATED)])
def test_rows_resolve_to_the_talks_setting(table_id):
    table, check = TABLES[table_id], STATED[table_id]
    wrong, n = [], 0
    for row in table.rows:
        if not row.method:                       # a cited comparison: nothing of ours to configure
            continue
        for col in table.columns:
            try:
                cfg, dcfg = _resolve(table, row, col)
            except UserError as e:
                wrong.append(f"{row.id}/{col.id}: does not resolve: {e}")
                continue
            for what, got, expected in check(row, col, cfg, dcfg):
                n += 1
                if got != expected:
                    wrong.append(f"{row.id}/{col.id}: {what} = {got!r}, the talk: {expected!r}")
    assert n > 0 and not wrong, "\n".join(wrong[:20])


# ------------------------------------------------------------------ the defects of issue 12, one by one
def test_a_vocabulary_above_vocab_limit_is_an_error_not_a_cap():
    with pytest.raises(UserError, match="k = 350000 words cannot be learned from at most vocab_limit = 200000"):
        methods.create("bow", vocabulary="rakm", k=350000)
    with pytest.raises(UserError, match="initial components"):
        methods.create("bow", vocabulary="agm", k=1000000, vocab_limit=500000)
    assert methods.create("bow", vocabulary="agm", k=1000000, vocab_limit=0).cfg["vocab_limit"] == 0


def test_dsm_v_and_r_rows_can_differ_by_backbone():
    """The descriptor string carries the backbone: V- and R- configurations are different jobs."""
    v = _cfg("diffusion", {"descriptor": "mac:backbone=vgg16;weights=/m/v.pth"})
    r = _cfg("diffusion", {"descriptor": "mac:backbone=resnet101;weights=/m/r.pth"})
    assert _descriptor(v)[1]["backbone"] == "vgg16" and _descriptor(r)[1]["backbone"] == "resnet101"
    assert v != r
