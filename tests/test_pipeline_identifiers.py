"""python -m gensar_lib identifiers: the two files in their documented shape, monotone handling,
determinism for a seed, and a clear failure on a bad dataset folder (notebook 03_identifiers).

Each CLI run trains from scratch in its own cache (tiny profile, synthetic world). The two runs of the
determinism check start together, with the default thread settings, to keep the module under about two
minutes.
"""
import json
import os
import subprocess
import sys

import pytest

from gensar_lib.config import load_profile
from gensar_lib.identifiers import parse_token

pytestmark = pytest.mark.slow

TYPES = {"gensar", "semantic", "collaborative", "concatenated"}
ROWS = {"GenSAR semantic ID", "GenSAR collaborative ID", "semantic-only", "collaborative-only", "concatenated"}


def start(out, cache, *extra):
    env = {**os.environ, "GENSAR_CACHE": str(cache)}
    args = [sys.executable, "-m", "gensar_lib", "identifiers", "--profile", "tiny", "--out", str(out), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc, timeout=600):
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The stage run twice on the synthetic world, same seed, different cache and output folders."""
    root = tmp_path_factory.mktemp("cli")
    procs = [start(root / f"out{i}", root / f"cache{i}", "--dataset", "synthetic") for i in (0, 1)]
    runs = []
    for i, proc in enumerate(procs):
        code, stdout, stderr = finish(proc)
        assert code == 0, stderr[-3000:]
        runs.append({"out": root / f"out{i}", "stdout": stdout})
    return runs


def load(run, name):
    return json.loads((run["out"] / name).read_text())


def test_writes_both_files_and_reports(two_runs):
    run = two_runs[0]
    assert (run["out"] / "identifiers.json").is_file() and (run["out"] / "identifier_stats.json").is_file()
    assert "wrote" in run["stdout"] and "GenSAR semantic ID" in run["stdout"]
    stats = load(run, "identifier_stats.json")
    printed = [line for line in run["stdout"].splitlines() if line.startswith("AMI ")]
    assert len(printed) == 4  # the four AMI targets, each with its k-means floor
    value = stats["structure"]["semantic"]["semantic_a"]["ami_leaf"]
    assert f"{value:.3f}" in printed[0] and "floor" in printed[0]


def test_identifiers_json_shape(two_runs):
    ids = load(two_runs[0], "identifiers.json")
    profile = load_profile("tiny")
    synth = profile.data.synthetic
    assert len(ids) == synth.n_leaves * synth.items_per_leaf
    k = profile.quantize.codebook_size
    for item, entry in ids.items():
        assert set(entry) == {"semantic", "collaborative"}, item
        sem, col = entry["semantic"], entry["collaborative"]
        assert len(sem) == len(col) == 4
        assert sem[:2] == col[:2]  # the shared prefix
        parsed_sem = [parse_token(t) for t in sem]
        parsed_col = [parse_token(t) for t in col]
        assert [(kind, lv) for kind, lv, _ in parsed_sem] == [("shared", 0), ("shared", 1), ("semantic", 0),
                                                             ("semantic", 1)]
        assert [(kind, lv) for kind, lv, _ in parsed_col] == [("shared", 0), ("shared", 1), ("collab", 0),
                                                             ("collab", 1)]
        assert all(0 <= code < k for _, _, code in parsed_sem + parsed_col)


def test_identifier_stats_json_shape(two_runs):
    stats = load(two_runs[0], "identifier_stats.json")
    assert set(stats) == {"collision_rates", "types", "structure", "prefix_structure"}
    floors = {"kmeans:semantic", "kmeans:collaborative", "kmeans:concatenated"}
    assert set(stats["structure"]) == TYPES | floors
    assert set(stats["prefix_structure"]) == TYPES | floors
    for kind, levels in stats["structure"].items():
        assert len(levels) == (6 if kind == "gensar" else 4), kind
        for level, m in levels.items():
            assert set(m) == {f"{k}_{lab}" for k in ("ami", "nmi", "purity") for lab in ("leaf", "bundle")}
            assert all(-1.0 <= v <= 1.0 for v in m.values()), (kind, level)
    assert set(stats["structure"]["gensar"]) == {"shared_a", "shared_b", "semantic_a", "semantic_b",
                                                 "collab_a", "collab_b"}
    for kind, p in stats["prefix_structure"].items():
        assert set(p) == {"first_code", "shared_prefix", "next_item"}
        assert set(p["first_code"]) == {"leaf", "bundle"}
        assert 0.0 <= p["next_item"]["share"] <= 1.0 and p["next_item"]["cases"] > 0
    rows = stats["collision_rates"]
    assert {r["identifier"] for r in rows} == ROWS
    for r in rows:
        assert set(r) == {"identifier", "before", "after", "strategy"}
        assert r["strategy"] == "paper"
        assert 0.0 <= r["after"] <= r["before"] <= 1.0  # the paper handling never adds collisions
    assert set(stats["types"]) == TYPES
    k = load_profile("tiny").quantize.codebook_size
    for kind, s in stats["types"].items():
        assert s["n_items"] == len(load(two_runs[0], "identifiers.json"))
        assert s["codebook_size"] == k
        assert s["id_length"] == {"semantic": 4, "collaborative": 4}
        assert set(s["collision_rate"]) == {"semantic", "collaborative", "shared_prefix"}
        for level, d in s["levels"].items():
            assert set(d) == {"usage", "entropy_bits", "entropy_normalised"}, (kind, level)
            assert 0.0 < d["usage"] <= 1.0 and 0.0 <= d["entropy_normalised"] <= 1.0
        reports = s["handling"].values() if kind == "gensar" else [s["handling"]]
        for rep in reports:
            assert rep["after"] <= rep["before"]
            assert rep["per_round"] == sorted(rep["per_round"], reverse=True)  # monotone over rounds
    gensar = stats["types"]["gensar"]
    assert set(gensar["levels"]) == {"shared_a", "shared_b", "semantic_a", "semantic_b", "collab_a", "collab_b"}
    assert gensar["collision_rate"]["semantic"] == gensar["handling"]["semantic"]["after"]
    assert gensar["collision_rate"]["collaborative"] == gensar["handling"]["collaborative"]["after"]


def test_same_seed_same_identifiers(two_runs):
    a, b = two_runs
    assert load(a, "identifiers.json") == load(b, "identifiers.json")
    assert load(a, "identifier_stats.json") == load(b, "identifier_stats.json")


def test_bad_dataset_folder_fails_clearly(tmp_path):
    missing = tmp_path / "no-such-folder"
    code, _, stderr = finish(start(tmp_path / "out", tmp_path / "cache", "--dataset", str(missing)), 120)
    assert code == 2
    assert "no-such-folder" in stderr and "does not exist" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out" / "identifiers.json").exists()


def test_folder_without_data_fails_clearly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = finish(start(tmp_path / "out", tmp_path / "cache", "--dataset", str(empty)), 120)
    assert code == 2
    assert "no dataset layout found" in stderr and "Traceback" not in stderr
