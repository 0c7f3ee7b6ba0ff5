"""The talk's tables as data: the files load, and their numbers are those printed in the talk.

The transcription check reads the talk's text (``../shared/seed/000_6239e73221d4e330.txt``) and,
for every table, finds the printed numbers in the order the text prints them (row-wise for most
tables, column-wise where the slide's text was extracted column by column). Every published
number of every table file must be covered by one of these ordered sequences.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from visrep.reports.tables import list_tables, load_table, load_tables

from visrep.context import shared_data_dir
from visrep.errors import UserError

SEED_NAME = "000_6239e73221d4e330.txt"


def _seed_text() -> str:
    shared = shared_data_dir()
    candidates = [shared.parent / "seed" / SEED_NAME] if shared else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "seed" / SEED_NAME)
    for c in candidates:
        if c.exists():
            return c.read_text(encoding="utf-8")
    pytest.skip(f"the talk's text ({SEED_NAME}) is not here (../shared/seed)")


_NUM = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")


def _tokens(block: str) -> list[float]:
    return [float(x) for x in _NUM.findall(block)]


def _contains_run(tokens: list[float], seq: list[float]) -> bool:
    n = len(seq)
    return any(all(abs(tokens[i + j] - seq[j]) < 1e-9 for j in range(n)) for i in range(len(tokens) - n + 1))


# table id -> (anchor text in the talk, [sequence specs]); a spec is
#   ("row", row_id)                      the row's published values in column order
#   ("col", col_id, [row ids])           one column's values down those rows
#   ("col+ci", col_id, [row ids])        the same, each value followed by its ± interval
LAYOUT = {
    "agm_vocabularies": ("image search: mAP on Oxford5k",
                         [("col", c, ["rakm-350k", "rakm-500k", "rakm-550k", "rakm-600k", "rakm-700k", "akm-550k",
                                      "agm-857k"]) for c in ("oxf5k", "oxf5k_20k")]
                         + [("col", "oxf5k_1m", ["rakm-550k", "agm-857k"])]),
    "asmk": ("Dataset\tMA\tOxf5k", [("row", r) for r in ("asmk-star", "asmk-star-ma", "asmk", "asmk-ma", "he", "he-ma",
                                                          "he-burst", "he-burst-ma", "fine-vocab-ma")]),
    "scene_maps": ("image search on European Cities 1M",
                   [("row", r) for r in ("baseline-bow", "qe1", "qe2", "scene-maps")]),
    "regional_diffusion": ("mAP using ResNet-101 features", [("row", r) for r in ("euclidean", "aqe", "cg", "fsr")]),
    "dsm": ("mAP on RevOP using diffusion", [("row", r) for r in ("v-mac", "v-mac-dsm", "r-mac", "r-mac-dsm", "v-gem",
                                                                  "v-gem-dsm", "r-gem", "r-gem-dsm")]),
    "object_discovery": ("mAP on Instre and RevOP using global features",
                         [("row", r) for r in ("gem", "fs-egm", "os-egm")]),
    "mom_cub": ("fine-grained categorization",
                [("col", c, ["baseline", "cyclic-match", "mom"]) for c in ("r1", "r2", "r4", "r8", "nmi")]
                + [("row", r) for r in ("triplet-semihard", "lifted-structure", "triplet-plus", "clustering",
                                        "triplet-plusplusplus")]),
    "mom_retrieval": ("#### particular object retrieval",
                      [("col", c, rows) for rows in (["mac-baseline", "mac-sfm", "mac-mom"],
                                                     ["rmac-baseline", "rmac-sfm", "rmac-mom"])
                       for c in ("hol", "instre", "oxf5k", "oxf105k", "par6k", "par106k")]),
    "dlp": ("#### classification error",
            [("row", "supervised")] + [("col", c, ["dlp", "mt", "mt-dlp"]) for c in
                                       ("c10_500", "c10_1000", "c100_4000", "c100_10000", "mini_4000", "mini_10000")]),
    "dense_classification": ("5-way novel-class classification accuracy on miniImageNet",
                             [("col+ci", "shot1", ["gap", "dc", "dc-wide"]),
                              ("col+ci", "shot5", ["gap", "dc", "dc-wide", "dc-imp"]),
                              ("col+ci", "shot10", ["gap", "dc", "dc-wide", "dc-imp"]),
                              ("col+ci", "shot1", ["gidaris", "protonet", "tadam"]),
                              ("col+ci", "shot5", ["gidaris", "protonet", "tadam"]),
                              ("col+ci", "shot10", ["protonet", "tadam"])]),
}


def test_tables_load_and_list():
    tables = load_tables()
    ids = [t.id for t in tables]
    assert len(ids) == len(set(ids)) >= 16
    listed = list_tables()
    assert [r["name"] for r in listed] == ids
    assert all(r["title"] for r in listed)
    # every numeric table of the talk has a layout for the transcription check, every table a claim
    for t in tables:
        if t.kind == "table" and t.source == "talk":
            assert t.id in LAYOUT, f"{t.id}: add its layout to the transcription check"
        if t.source == "talk":
            assert t.claims, f"{t.id}: every table of the talk needs at least one claim"


def test_tables_of_the_issue_are_all_there():
    ids = {t.id for t in load_tables()}
    for needed in ("agm_vocabularies", "asmk", "scene_maps", "regional_diffusion", "dsm", "object_discovery",
                   "mom_cub", "mom_retrieval", "dlp", "dense_classification", "hpm", "cg_vs_rwr", "fsr_speed",
                   "bp_attack", "aml"):
        assert needed in ids


@pytest.mark.parametrize("table_id", sorted(LAYOUT))
def test_transcription_matches_the_talk(table_id):
    text = _seed_text()
    table = next(t for t in load_tables() if t.id == table_id)
    anchor, specs = LAYOUT[table_id]
    assert text.count(anchor) >= 1, f"anchor {anchor!r} not in the talk"
    start = text.index(anchor)
    tokens = _tokens(text[start:start + 2500])
    covered = set()
    for spec in specs:
        if spec[0] == "row":
            row = next(r for r in table.rows if r.id == spec[1])
            cols = [c.id for c in table.columns if c.id in row.published]
            seq = [row.published[c] for c in cols]
            covered |= {(row.id, c) for c in cols}
        else:
            rows = [next(r for r in table.rows if r.id == rid) for rid in spec[2]]
            seq = []
            for r in rows:
                seq.append(r.published[spec[1]])
                if spec[0] == "col+ci":
                    seq.append(r.published_ci[spec[1]])
                covered.add((r.id, spec[1]))
        assert _contains_run(tokens, seq), f"{table_id} {spec}: {seq} not printed in this order in the talk"
    published = {(r.id, c) for r in table.rows for c in r.published}
    assert published == covered, f"{table_id}: published cells not checked against the talk: {published - covered}"


def test_a_wrong_number_would_be_caught():
    text = _seed_text()
    start = text.index("Dataset\tMA\tOxf5k")
    tokens = _tokens(text[start:start + 2500])
    assert _contains_run(tokens, [76.4, 69.2, 74.4, 80.0])
    assert not _contains_run(tokens, [76.4, 69.2, 74.4, 81.0])      # one digit off
    assert not _contains_run(tokens, [69.2, 76.4, 74.4, 80.0])      # swapped columns


def test_claim_quotes_are_verbatim():
    text = " ".join(_seed_text().split())
    for t in load_tables():
        for c in t.claims:
            if c.quote and t.source == "talk":
                assert " ".join(c.quote.split()) in text, f"{t.id}/{c.id}: quote not in the talk: {c.quote!r}"


def test_reference_number_comes_from_the_data_readme():
    shared = shared_data_dir()
    if shared is None or not (shared / "README.md").exists():
        pytest.skip("../shared/data/README.md is not here")
    readme = (shared / "README.md").read_text()
    table = next(t for t in load_tables() if t.id == "reference_oxford5k")
    assert table.source.endswith("README.md") and table.kind == "reference"
    assert f"mAP = {table.rows[0].published['oxf5k']:.3f}" in readme


def _write(tmp_path, text, name="t.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bad_table_files_name_the_problem(tmp_path):
    base = 'id = "t"\ntitle = "x"\nslide = 1\ncitation = "c"\n'
    col = '[[column]]\nid = "a"\nlabel = "A"\ndataset = "oxford5k"\n'
    with pytest.raises(UserError, match="id 'u' must equal the file name"):
        load_table(_write(tmp_path, base.replace('"t"', '"u"', 1) + col + '[[row]]\nid = "r"\nlabel = "R"\n'))
    with pytest.raises(UserError, match="unknown column 'b'"):
        load_table(_write(tmp_path, base + col + '[[row]]\nid = "r"\nlabel = "R"\npublished = { b = 1.0 }\n'))
    with pytest.raises(UserError, match="must be a number"):
        load_table(_write(tmp_path, base + col + '[[row]]\nid = "r"\nlabel = "R"\npublished = { a = "1" }\n'))
    with pytest.raises(UserError, match="run 'z' is not defined"):
        load_table(_write(tmp_path, base + 'kind = "figure"\n[[claim]]\nid = "c"\ntext = "t"\n'
                          'checks = [{relation = "greater", a = "z", b = "y", metric = "map"}]\n'))
    with pytest.raises(UserError, match="relation must be one of"):
        load_table(_write(tmp_path, base + 'kind = "figure"\n[runs.z]\nmethod = "knn"\ndataset = "oxford5k"\n'
                          '[[claim]]\nid = "c"\ntext = "t"\nchecks = [{relation = "bigger", a = "z", metric = "map"}]\n'))
    with pytest.raises(UserError, match="unknown field 'publised'"):
        load_table(_write(tmp_path, base + col + '[[row]]\nid = "r"\nlabel = "R"\npublised = { a = 1.0 }\n'))
    with pytest.raises(UserError, match="cannot read table file"):
        load_table(_write(tmp_path, "id = ", name="t.toml"))


def test_column_method_parameters_merge_column_then_method_then_row(tmp_path):
    from visrep.reports.evaluate import cell_spec
    text = ('id = "t"\ntitle = "x"\nslide = 1\ncitation = "c"\n'
            '[[column]]\nid = "a"\nlabel = "A"\ndataset = "cifar10"\n'
            'params = { arch = "cnn13", lr = 0.05 }\nmethod_params = { dlp = { lr = 0.2, labelled_per_batch = 31 } }\n'
            '[[row]]\nid = "s"\nlabel = "S"\nmethod = "supervised"\n'
            '[[row]]\nid = "d"\nlabel = "D"\nmethod = "dlp"\n'
            '[[row]]\nid = "e"\nlabel = "E"\nmethod = "dlp"\nparams = { lr = 0.1 }\n')
    t = load_table(_write(tmp_path, text))
    col = t.columns[0]
    assert cell_spec(t.rows[0], col).params == {"arch": "cnn13", "lr": 0.05}
    assert cell_spec(t.rows[1], col).params == {"arch": "cnn13", "lr": 0.2, "labelled_per_batch": 31}
    assert cell_spec(t.rows[2], col).params == {"arch": "cnn13", "lr": 0.1, "labelled_per_batch": 31}
    with pytest.raises(UserError, match="method_params"):
        load_table(_write(tmp_path, text.replace("method_params = { dlp = { lr = 0.2, labelled_per_batch = 31 } }",
                                                 "method_params = { dlp = 3 }")))
