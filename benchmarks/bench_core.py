"""asv benchmarks of the core: writing and reading a result record atomically (``visrep.results``)."""
from __future__ import annotations

import tempfile
from pathlib import Path


class RecordWriting:
    """write_record of a typical record (atomic temp file + rename) and reading it back."""

    def setup(self):
        from visrep.provenance import provenance
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name) / "oxford5k" / "knn" / "0123456789abcdef.json"
        self.record = {"schema": 1, "job": "0123456789abcdef", "method": "knn", "dataset": "oxford5k",
                       "protocol": "oxford", "params": {"descriptor": "auto", "metric": "ip", "topk": None},
                       "dataset_params": {"features": "x.fvecs", "query_features": None, "query_mode": "auto"},
                       "protocol_params": {}, "seed": 0, "metrics": {"map": 0.403, "n_queries": 55},
                       "timings": {"load": 0.1, "method": 0.05, "query": 0.001}, "manifest": "0" * 16,
                       "created": "2020-07-01T00:00:00+00:00", "provenance": provenance()}

    def teardown(self):
        self.dir.cleanup()

    def time_write_record(self):
        from visrep.results import write_record
        write_record(self.path, self.record)

    def time_write_and_read_record(self):
        from visrep.results import read_record, write_record
        read_record(write_record(self.path, self.record))
