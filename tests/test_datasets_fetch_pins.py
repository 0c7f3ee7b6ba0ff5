"""`visrep data fetch/verify/list` for image archives with no published checksum (trust on first use).

A loopback HTTP server (http.server on 127.0.0.1, recording the paths asked for) serves tiny fake
tarballs under the declared paths of the real declarations (Holidays, Paris, R1M); nothing
leaves 127.0.0.1. Checked: extraction into each loader's layout, the pin file
(``<root>/.visrep-pins.json``), the pin error on a changed server file, ``--repin``, verify's
pinned / unchecked / mismatch lines, a malformed pin file refused before any request, and
``data list --table`` for real tables (dsm, asmk).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request

import pytest
from visrep.datasets import download

from visrep.commands import main
from visrep.context import shared_data_dir
from visrep.registry import datasets

SHARED = shared_data_dir()


@pytest.fixture()
def holidays_images(monkeypatch, loopback_server, make_tgz):
    """Holidays reduced to its two declared image archives (the real declarations), served as fakes."""
    url, folder, seen = loopback_server
    Holidays = datasets.get("holidays")
    archives = tuple(df for df in Holidays.files if df.path.endswith(".tar.gz"))
    assert [df.path for df in archives] == ["holidays/jpg1.tar.gz", "holidays/jpg2.tar.gz"]
    assert all(df.pin and df.sha256 is None and df.md5 is None and "no published checksum" in df.source
               for df in archives)
    assert archives[0].url == "ftp://ftp.inrialpes.fr/pub/lear/douze/data/jpg1.tar.gz"
    monkeypatch.setattr(Holidays, "files", archives)
    (folder / "holidays").mkdir()
    (folder / "holidays/jpg1.tar.gz").write_bytes(make_tgz({"jpg/100000.jpg": b"one", "jpg/100001.jpg": b"two"}))
    (folder / "holidays/jpg2.tar.gz").write_bytes(make_tgz({"jpg/100100.jpg": b"three"}))
    return url, folder, seen


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_first_fetch_extracts_into_loader_layout_and_pins(holidays_images, tmp_path, capsys):
    url, folder, _ = holidays_images
    root = tmp_path / "root"
    assert main(["data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 0
    err = capsys.readouterr().err
    # both archives merge into holidays/jpg/ (the loader reads <root>/holidays/jpg/<name>.jpg)
    assert sorted(p.name for p in (root / "holidays/jpg").iterdir()) == ["100000.jpg", "100001.jpg", "100100.jpg"]
    assert (root / "holidays/jpg/100100.jpg").read_bytes() == b"three"
    pins = json.loads((root / ".visrep-pins.json").read_text())
    assert set(pins) == {"holidays/jpg1.tar.gz", "holidays/jpg2.tar.gz"}
    p1 = pins["holidays/jpg1.tar.gz"]
    assert p1["sha256"] == _sha(folder / "holidays/jpg1.tar.gz")
    assert p1["size"] == (folder / "holidays/jpg1.tar.gz").stat().st_size
    assert p1["url"] == f"{url}/holidays/jpg1.tar.gz" and len(p1["date"]) == 10
    assert f"no published checksum: pinned sha256 {p1['sha256']}" in err and "on first download" in err
    # verify: pinned, with the note; exit 0
    assert main(["data", "verify", "holidays", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pinned    holidays/jpg1.tar.gz" in out and f"pinned sha256 {p1['sha256']}" in out
    # a second fetch downloads nothing and keeps the pin file as it was
    before = (root / ".visrep-pins.json").read_bytes()
    assert main(["--quiet", "data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 0
    assert (root / ".visrep-pins.json").read_bytes() == before


def test_changed_server_file_is_a_pin_error_until_repin(holidays_images, tmp_path, capsys, make_tgz):
    url, folder, seen = holidays_images
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 0
    old = json.loads((root / ".visrep-pins.json").read_text())["holidays/jpg2.tar.gz"]
    # an archive deleted after its extraction is 'extracted': not downloaded again
    (root / "holidays/jpg2.tar.gz").unlink()
    seen.clear()
    assert main(["data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 0
    assert "already extracted" in capsys.readouterr().err and seen == []
    # the publisher replaces jpg2; the local copy is gone (the pins stay): the fetch refuses it
    shutil.rmtree(root / "holidays")
    (folder / "holidays/jpg2.tar.gz").write_bytes(make_tgz({"jpg/100100.jpg": b"THREE, changed"}))
    new_sha = _sha(folder / "holidays/jpg2.tar.gz")
    assert main(["--quiet", "data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "holidays/jpg2.tar.gz" in err and old["sha256"] in err and new_sha in err
    assert "pinned on first download" in err and "--repin" in err and "nothing was put in place" in err
    assert not (root / "holidays/jpg2.tar.gz").exists() and not (root / "holidays/jpg2.tar.gz.part").exists()
    assert not (root / "holidays/jpg/100100.jpg").exists()
    assert json.loads((root / ".visrep-pins.json").read_text())["holidays/jpg2.tar.gz"] == old
    # --repin accepts the new copy and records its digest
    assert main(["data", "fetch", "holidays", "--root", str(root), "--mirror", url, "--repin"]) == 0
    assert "re-pinned" in capsys.readouterr().err
    assert json.loads((root / ".visrep-pins.json").read_text())["holidays/jpg2.tar.gz"]["sha256"] == new_sha
    assert (root / "holidays/jpg/100100.jpg").read_bytes() == b"THREE, changed"


def test_verify_reports_pinned_unchecked_and_mismatch(holidays_images, tmp_path, capsys):
    url, _, _ = holidays_images
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 0
    pins = json.loads((root / ".visrep-pins.json").read_text())
    del pins["holidays/jpg2.tar.gz"]                      # as if put there by hand: present, never pinned
    (root / ".visrep-pins.json").write_text(json.dumps(pins))
    a1 = root / "holidays/jpg1.tar.gz"
    a1.write_bytes(a1.read_bytes() + b"tampered")
    capsys.readouterr()
    assert main(["data", "verify", "holidays", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "mismatch  holidays/jpg1.tar.gz" in out and "differs from its pin" in out and "--repin" in out
    assert "unchecked holidays/jpg2.tar.gz" in out and "not pinned yet" in out
    assert download.verify_dataset("holidays", root) == [("holidays/jpg1.tar.gz", "mismatch", False),
                                                         ("holidays/jpg2.tar.gz", "unchecked", False)]
    # fetch: the tampered copy is replaced by the (still pinned) served one; the unpinned one is pinned
    assert main(["data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 0
    assert "pinned the copy found on disk" in capsys.readouterr().err
    assert main(["data", "verify", "holidays", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pinned    holidays/jpg1.tar.gz" in out and "pinned    holidays/jpg2.tar.gz" in out


@pytest.mark.parametrize("text, what", [
    ("{not json", "not readable as JSON"),
    ("[1, 2]", "expected an object"),
    ('{"holidays/jpg1.tar.gz": {"sha256": "abc", "size": 3}}', "expected 64"),
    ('{"holidays/jpg1.tar.gz": {"sha256": "' + "0" * 64 + '", "size": -1}}', "non-negative integer"),
])
def test_malformed_pin_file_errors_before_any_download(holidays_images, tmp_path, capsys, monkeypatch, text, what):
    url, _, seen = holidays_images
    root = tmp_path / "root"
    root.mkdir()
    (root / ".visrep-pins.json").write_text(text)
    calls = []
    real = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert main(["--quiet", "data", "fetch", "holidays", "--root", str(root), "--mirror", url]) == 2
    err = capsys.readouterr().err
    assert "malformed pin file" in err and what in err and ".visrep-pins.json" in err
    assert calls == [] and seen == [] and sorted(p.name for p in root.iterdir()) == [".visrep-pins.json"]
    assert main(["data", "verify", "holidays", "--root", str(root)]) == 2


def test_r1m_tarballs_merge_into_revisitop1m_jpg(loopback_server, tmp_path, monkeypatch, make_tgz):
    url, folder, _ = loopback_server
    from visrep.datasets import revisitop
    r1m = revisitop.R1M_FILES
    assert len(r1m) == 101 and r1m[0].path == "revisitop1m/revisitop1m.txt"
    assert r1m[0].url == "http://ptak.felk.cvut.cz/revisitop/revisitop1m/revisitop1m.txt"
    assert r1m[100].url == "http://ptak.felk.cvut.cz/revisitop/revisitop1m/jpg/revisitop1m.100.tar.gz"
    monkeypatch.setattr(revisitop, "R1M_FILES", r1m[:3])
    (folder / "revisitop1m").mkdir()
    (folder / "revisitop1m/revisitop1m.txt").write_text("a/x\nb/y\n")
    (folder / "revisitop1m/revisitop1m.1.tar.gz").write_bytes(make_tgz({"a/x": b"1"}))
    (folder / "revisitop1m/revisitop1m.2.tar.gz").write_bytes(make_tgz({"b/y": b"2"}))
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "revisitop1m", "--root", str(root), "--mirror", url]) == 0
    assert (root / "revisitop1m/jpg/a/x").read_bytes() == b"1" and (root / "revisitop1m/jpg/b/y").read_bytes() == b"2"
    assert set(json.loads((root / ".visrep-pins.json").read_text())) == {p.path for p in r1m[:3]}
    # roxford5k-r1m (a table's dataset name) = roxford5k + these files
    assert [df.path for df in download.dataset_files("roxford5k-r1m")][-3:] == [p.path for p in r1m[:3]]


@pytest.mark.skipif(SHARED is None or not (SHARED / "retrieval/paris6k/gnd_paris6k.mat").exists(),
                    reason="../shared/data/retrieval/paris6k not found")
def test_paris_tarballs_flatten_into_the_loaders_jpg(loopback_server, tmp_path, make_tgz):
    """Paris tarballs hold paris/<landmark>/<name>.jpg; the loader reads paris6k/jpg/<name>.jpg."""
    import cv2
    import numpy as np
    from visrep.datasets.matlab_gnd import read_matlab_gnd

    from visrep.context import RunContext
    url, folder, _ = loopback_server
    (folder / "paris6k").mkdir()
    shutil.copy(SHARED / "retrieval/paris6k/gnd_paris6k.mat", folder / "paris6k/gnd_paris6k.mat")
    imlist = read_matlab_gnd(folder / "paris6k/gnd_paris6k.mat")["imlist"]
    jpg = cv2.imencode(".jpg", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
    a, b = imlist[0], imlist[-1]
    (folder / "paris6k/paris_1-v1.tgz").write_bytes(make_tgz({f"paris/{a.split('_')[1]}/{a}.jpg": jpg}))
    (folder / "paris6k/paris_2-v1.tgz").write_bytes(make_tgz({f"paris/{b.split('_')[1]}/{b}.jpg": jpg}))
    decl = datasets.get("paris6k").files
    assert [df.url for df in decl[1:]] == ["https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_1-v1.tgz",
                                           "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_2-v1.tgz"]
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "paris6k", "--root", str(root), "--mirror", url]) == 0
    assert sorted(p.name for p in (root / "paris6k/jpg").iterdir()) == sorted([f"{a}.jpg", f"{b}.jpg"])
    assert (root / "paris6k/.jpg.paris_2-v1.tgz.extracted").exists()       # markers next to jpg/, not in it
    data = datasets.create("paris6k").load(RunContext(root, quiet=True))
    assert data.db_image(0).shape[:2] == (8, 8) and data.db_image(len(imlist) - 1).shape[:2] == (8, 8)
    # rparis6k shares the same archives (one download) and extracts them into rparis6k/jpg
    assert [df.path for df in datasets.get("rparis6k").files[1:]] == ["paris6k/paris_1-v1.tgz", "paris6k/paris_2-v1.tgz"]
    assert {df.extract_to for df in datasets.get("rparis6k").files[1:]} == {"rparis6k/jpg"}


def test_data_list_table_dsm_and_asmk(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "roxford5k").mkdir(parents=True)
    (root / "roxford5k/gnd_roxford5k.pkl").write_bytes(b"not the publisher's pickle")
    assert main(["data", "list", "--table", "dsm", "--root", str(root), "--json"]) == 0
    [rep] = json.loads(capsys.readouterr().out)
    names = [d["name"] for d in rep["datasets"]]
    assert names[:4] == ["roxford5k", "roxford5k-r1m", "rparis6k", "rparis6k-r1m"]
    files = {d["name"]: {f["path"]: f["status"] for f in d["files"]} for d in rep["datasets"]}
    assert files["roxford5k"] == {"roxford5k/gnd_roxford5k.pkl": "mismatch", "oxford5k/oxbuild_images-v1.tgz": "missing"}
    r1m = files["roxford5k-r1m"]
    assert len(r1m) == 2 + 101 and r1m["revisitop1m/revisitop1m.txt"] == "missing"
    assert r1m["revisitop1m/revisitop1m.100.tar.gz"] == "missing"
    assert set(files["rparis6k"]) == {"rparis6k/gnd_rparis6k.pkl", "paris6k/paris_1-v1.tgz", "paris6k/paris_2-v1.tgz"}
    # still needed: both pickles (sizes stated) + 104 archives/lists of unstated size, each path once
    assert rep["missing_bytes"] == 149871 + 276508 and rep["missing_unknown"] == 1 + 2 + 101
    assert main(["data", "list", "--table", "asmk", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "table asmk" in out
    for name in ("oxford5k", "oxford105k", "paris6k", "holidays"):
        assert f"\n  {name} " in out
    assert "missing   holidays/gnd_holidays.mat" in out and "no published checksum" in out
    assert "still to download:" in out
    assert main(["data", "list", "--table", "dms", "--root", str(root)]) == 2
    assert "did you mean: dsm" in capsys.readouterr().err
    assert main(["data", "list", "--table", "all", "--root", str(root), "--json"]) == 0
    assert {r["table"] for r in json.loads(capsys.readouterr().out)} >= {"dsm", "asmk"}


def test_oxford_archive_downloaded_once_for_oxford5k_and_roxford5k(loopback_server, tmp_path, monkeypatch, make_tgz):
    """One VGG tarball (its URL as in revisitop's download.py), extracted flat into both loaders' jpg/."""
    url, folder, seen = loopback_server
    for name in ("oxford5k", "roxford5k"):
        cls = datasets.get(name)
        [arch] = [df for df in cls.files if df.path.endswith(".tgz")]
        assert arch.path == "oxford5k/oxbuild_images-v1.tgz" and arch.extract_to == f"{name}/jpg"
        assert arch.url == "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"
        monkeypatch.setattr(cls, "files", (arch,))
    (folder / "oxford5k").mkdir()
    (folder / "oxford5k/oxbuild_images-v1.tgz").write_bytes(make_tgz({"oxbuild/all_souls_000000.jpg": b"img"}))
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "oxford5k", "--root", str(root), "--mirror", url]) == 0
    assert main(["--quiet", "data", "fetch", "roxford5k", "--root", str(root), "--mirror", url]) == 0
    assert seen == ["/oxford5k/oxbuild_images-v1.tgz"]
    for name in ("oxford5k", "roxford5k"):
        assert (root / f"{name}/jpg/all_souls_000000.jpg").read_bytes() == b"img"


def test_flatten_refuses_two_members_with_one_name(tmp_path, make_tgz):
    arch = tmp_path / "a.tgz"
    arch.write_bytes(make_tgz({"x/same.jpg": b"1", "y/same.jpg": b"2"}))
    with pytest.raises(download.UserError, match="two members are named same.jpg"):
        download.extract(arch, tmp_path / "jpg", layout="flatten")
    assert list((tmp_path / "jpg").iterdir()) == []
    assert not download.marker_path(arch, tmp_path / "jpg").exists()


def test_data_list_groups_the_labelled_subset_files_with_their_total_size(tmp_path, capsys):
    from visrep.datasets.ssl_splits import published_label_files
    assert main(["data", "list", "--table", "dlp", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    c10 = published_label_files("cifar10")
    total = sum(f.size for f in c10)
    line = next(ln for ln in out.splitlines() if "ssl_labels/cifar10/" in ln)
    assert line.split()[1:3] == ["40", "files:"] and len(c10) == 40
    assert f"{total / 1e3:.1f} kB in all" in line and "labels" in line
    assert "miniimagenet-ssl/train.tar.gz" in out and "no published checksum" in out
