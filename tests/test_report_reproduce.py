"""`pytest -m reproduce`: the talk's tables, cell by cell and claim by claim, generated from reports/tables.

- Each full-scale cell with a published number is run (when its method is registered and its data
  is on disk under $VISREP_DATA) and compared with the table's tolerance; otherwise it skips with
  the reason (method missing / data missing), exactly the status the report shows.
- Each claim is evaluated from fresh records and decided by the paired bootstrap of
  ``visrep.reports.evaluate.decide_check``; it must hold. A claim the statistics decide 'does not
  hold' or 'inconclusive' at proxy scale carries an ``xfail`` with the measured interval in its
  table file: a strict xfail (it fails the day the claim starts to hold, so the table file gets
  updated). Speed claims (timings only) are shown, not asserted: they depend on the machine.
- The cells and claims marked ``quick = true`` also run in the default `pytest` run
  (marker ``quick_reproduce``), so CI notices a regression of the Oxford5k baseline or of diffusion.

Records go to a temporary results folder of the session; the cache is the test's (conftest).
``VISREP_REPRODUCE_RESULTS=DIR`` makes the session read and write records in DIR instead: `.ci/run`
points it at the folder the main job (``visrep run default``, which runs every claim's
configuration) has just filled from the same commit, so the claims are decided from those records
rather than recomputed.
"""
from __future__ import annotations

import pytest
from visrep.reports.evaluate import (
    DATA_MISSING,
    DIFFERS,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    METHOD_MISSING,
    PROXY,
    REPRODUCED,
    SHOWN,
    Resolver,
    evaluate_cell,
    evaluate_claim,
)
from visrep.reports.tables import load_tables

_TABLES = {t.id: t for t in load_tables()}


def _cells(quick_only: bool):
    out = []
    for t in _TABLES.values():
        for row in t.rows:
            if row.scale != "full" or (quick_only and not row.quick):
                continue
            for col in t.columns:
                if col.id in row.published:
                    out.append(pytest.param(t.id, row.id, col.id, id=f"{t.id}/{row.id}/{col.id}"))
    return out


def _claims(quick_only: bool):
    return [pytest.param(t.id, c.id, id=f"{t.id}/{c.id}") for t in _TABLES.values() for c in t.claims
            if c.quick or not quick_only]


@pytest.fixture(scope="session")
def resolver(tmp_path_factory):
    import os
    shared_results = os.environ.get("VISREP_REPRODUCE_RESULTS")
    return Resolver(shared_results or tmp_path_factory.mktemp("reproduce-results"))


def check_cell(resolver, table_id, row_id, col_id):
    t = _TABLES[table_id]
    row = next(r for r in t.rows if r.id == row_id)
    col = t.column(col_id)
    cell = evaluate_cell(t, row, col, resolver, run_missing=True)
    if cell.status in (METHOD_MISSING, DATA_MISSING):
        pytest.skip(f"{cell.status}: {cell.reason}")
    if cell.status == SHOWN:
        pytest.skip(f"{col.metric} = {cell.reproduced:.4g} (paper {cell.published:g}): {cell.reason}")
    assert cell.status in (REPRODUCED, PROXY), (
        f"{table_id} {row.label} / {col.label}: {cell.status}: paper {cell.published}, "
        f"visrep {cell.reproduced} (delta {cell.delta}) — {cell.reason}; record {cell.record_path}")
    assert cell.status != DIFFERS


def check_claim(resolver, table_id, claim_id):
    t = _TABLES[table_id]
    claim = next(c for c in t.claims if c.id == claim_id)
    result = evaluate_claim(t, claim, resolver, run_missing=True)
    evidence = "; ".join(f"{ch.outcome}: {ch.text}" for ch in result.checks)
    if result.status in (METHOD_MISSING, DATA_MISSING):
        pytest.skip(f"{result.status}: {result.reason}")
    if all(c.metric.startswith("timings.") for c in claim.checks):
        # speed is measured (report, asv), never asserted by a timed test: it depends on the machine and its load
        pytest.skip(f"speed claim, shown not asserted: {result.status} [{evidence}]")
    if claim.xfail:
        if result.status in (DOES_NOT_HOLD, INCONCLUSIVE):
            pytest.xfail(f"{result.status}: {claim.xfail} [{evidence}]")
        if result.status == HOLDS:
            pytest.fail(f"XPASS(strict): '{claim.text}' now holds ({evidence}); "
                        f"update the table file {t.path.name} (remove its xfail)")
    assert result.status == HOLDS, f"'{claim.text}' {result.status}: {result.reason or evidence}"


@pytest.mark.reproduce
@pytest.mark.parametrize("table_id,row_id,col_id", _cells(quick_only=False))
def test_cell(resolver, table_id, row_id, col_id):
    check_cell(resolver, table_id, row_id, col_id)


@pytest.mark.reproduce
@pytest.mark.parametrize("table_id,claim_id", _claims(quick_only=False))
def test_claim(resolver, table_id, claim_id):
    check_claim(resolver, table_id, claim_id)


@pytest.mark.quick_reproduce
@pytest.mark.parametrize("table_id,row_id,col_id", _cells(quick_only=True))
def test_quick_cell(resolver, table_id, row_id, col_id):
    check_cell(resolver, table_id, row_id, col_id)


@pytest.mark.quick_reproduce
@pytest.mark.parametrize("table_id,claim_id", _claims(quick_only=True))
def test_quick_claim(resolver, table_id, claim_id):
    check_claim(resolver, table_id, claim_id)


def test_quick_subset_is_not_empty():
    assert _cells(quick_only=True) and _claims(quick_only=True)
