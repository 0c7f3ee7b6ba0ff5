"""`visrep data fetch/verify` against a real HTTP server on 127.0.0.1 serving ../shared/data."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import pytest
from visrep.datasets.download import fetch_file

from visrep.commands import main
from visrep.context import shared_data_dir
from visrep.errors import UserError

SHARED = shared_data_dir()
pytestmark = pytest.mark.skipif(SHARED is None or not (SHARED / "retrieval/roxford5k/gnd_roxford5k.pkl").exists(),
                                reason="../shared/data/retrieval not found (set VISREP_SHARED_DATA)")


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler + single 'bytes=N-' ranges (206), like real file servers."""

    def log_message(self, *a):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not rng.startswith("bytes=") or not path or not __import__("os").path.isfile(path):
            return super().send_head()
        start = int(rng[6:].split("-")[0])
        with open(path, "rb") as f:
            data = f.read()
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        import io
        return io.BytesIO(data[start:])


@pytest.fixture()
def server(tmp_path):
    """Serve a copy of shared/data/retrieval (so a test may corrupt files) on a free port."""
    served = tmp_path / "served"
    shutil.copytree(SHARED / "retrieval" / "roxford5k", served / "roxford5k",
                    ignore=shutil.ignore_patterns("jpg"))
    handler = functools.partial(_RangeHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


PKL = "roxford5k/gnd_roxford5k.pkl"


def test_good_download_and_verify(server, tmp_path, capsys):
    url, _ = server
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "roxford5k", "--root", str(root), "--mirror", url]) == 0
    got = root / PKL
    assert got.read_bytes() == (SHARED / "retrieval" / PKL).read_bytes()
    assert not (root / (PKL + ".part")).exists()
    assert main(["data", "verify", "roxford5k", "--root", str(root)]) == 0
    assert "ok" in capsys.readouterr().out
    got.write_bytes(got.read_bytes()[:-1] + b"x")     # damage it: verify must fail
    assert main(["data", "verify", "roxford5k", "--root", str(root)]) == 1
    assert "mismatch" in capsys.readouterr().out


def test_resumed_download(server, tmp_path, monkeypatch):
    url, _ = server
    root = tmp_path / "root"
    full = (SHARED / "retrieval" / PKL).read_bytes()
    part = root / (PKL + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(full[:50000])
    seen = []
    import urllib.request
    real = urllib.request.urlopen

    def spy(req, *a, **k):
        seen.append(req.get_header("Range"))
        return real(req, *a, **k)
    monkeypatch.setattr(urllib.request, "urlopen", spy)
    monkeypatch.setenv("VISREP_MIRROR", url)
    assert main(["--quiet", "data", "fetch", "roxford5k", "--root", str(root), "--no-images"]) == 0
    assert seen == ["bytes=50000-"]                   # one request: the rest of the pickle (images skipped)
    assert (root / PKL).read_bytes() == full and not part.exists()


def test_corrupted_download_leaves_nothing(server, tmp_path, capsys):
    url, served = server
    p = served / PKL
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF                                  # same size, different content
    p.write_bytes(bytes(data))
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "roxford5k", "--root", str(root), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and "nothing was put in place" in err
    assert not (root / PKL).exists() and not (root / (PKL + ".part")).exists()


def test_404_is_a_clear_error(server, tmp_path):
    url, served = server
    (served / PKL).unlink()
    with pytest.raises(UserError, match="HTTP 404"):
        fetch_file(f"{url}/{PKL}", tmp_path / "x.pkl", None, None, quiet=True)
    assert not (tmp_path / "x.pkl").exists()
    assert main(["--quiet", "data", "fetch", "roxford5k", "--root", str(tmp_path / "r"), "--mirror", url]) == 2


def test_manifest_checksums_match_declared_files():
    """Every declared sha256 of my datasets equals the real file's (MANIFEST.tsv), when present."""
    from visrep.registry import datasets
    roots = [SHARED / "retrieval", SHARED / "classification", SHARED / "splits"]
    checked = 0
    for name in ("roxford5k", "rparis6k", "holidays", "instre", "mnist", "miniimagenet"):
        for df in datasets.get(name).files:
            cands = [r / df.path for r in roots] + [SHARED / "splits/miniimagenet_ravi" / df.path.split("/")[-1]]
            real = next((c for c in cands if c.exists()), None)
            if real is None or not df.sha256:
                continue
            assert hashlib.sha256(real.read_bytes()).hexdigest() == df.sha256, df.path
            assert real.stat().st_size == df.size, df.path
            checked += 1
    assert checked >= 8


def test_data_list(capsys):
    assert main(["data", "list", "--json"]) == 0
    import json
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["roxford5k"]["files"][0]["url"].startswith("http://cmp.felk.cvut.cz/revisitop/")
