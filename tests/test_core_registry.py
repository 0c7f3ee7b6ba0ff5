import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from visrep.errors import UserError
from visrep.registry import datasets, methods, protocols

HEAVY = ("torch", "faiss", "cv2", "timm", "sklearn", "skimage", "matplotlib", "pandas", "scipy.io")
PLUGIN_DIR = Path(__file__).parent / "plugins"


def test_listing_is_lazy_in_a_fresh_interpreter():
    code = textwrap.dedent(f"""
        import sys, json, io, contextlib
        from visrep.commands import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            rc = main(["list", "--json"])
        listed = json.loads(out.getvalue())
        print(json.dumps({{"rc": rc, "n": {{k: len(v) for k, v in listed.items()}},
                          "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    assert result["n"]["methods"] >= 3 and result["n"]["datasets"] >= 2 and result["n"]["protocols"] >= 1
    assert result["heavy"] == [], f"listing imported heavy modules: {result['heavy']}"


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UserError, match=r"unknown method 'knnn' \(did you mean: knn"):
        methods.get("knnn")
    with pytest.raises(UserError, match="did you mean: oxford5k"):
        datasets.get("oxford5")
    with pytest.raises(UserError, match="unknown protocol 'nope'"):
        protocols.get("nope")


def test_core_plugins_are_registered():
    assert {"knn", "aqe", "alpha-qe", "histogram"} <= set(methods.names())
    assert {"oxford5k", "paris6k", "oxford105k", "paris106k", "sample-views"} <= set(datasets.names())
    assert "oxford" in protocols.names()


def test_outside_package_registers_through_entry_points(tmp_path):
    dist = tmp_path / "visrep_testplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: visrep-testplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[visrep.plugins]\ntoy = visrep_testplugin\n")
    env_path = f"{tmp_path}:{PLUGIN_DIR}"
    out = subprocess.run([sys.executable, "-m", "visrep", "list", "--json"], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": env_path}, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert "slow-knn" in [m["name"] for m in listed["methods"]]
    assert "toy-retrieval" in [d["name"] for d in listed["datasets"]]
