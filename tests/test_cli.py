"""python -m gensar_lib stats: statistics on good input, a clear message and non-zero exit on bad."""
import os
import re
import subprocess
import sys


def run(*args, env_cache):
    return subprocess.run(
        [sys.executable, "-m", "gensar_lib", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "GENSAR_CACHE": str(env_cache)},
    )


def test_stats_on_office(office_dir, tmp_path):
    out = run("stats", "--dataset", str(office_dir), "--profile", "tiny", env_cache=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.stdout.splitlines())
    assert lines["users"] == "4,905" and lines["items"] == "2,420"
    assert lines["recommendation events"] == "53,258"
    assert lines["test rec cases"] == "4,905"


def test_stats_on_synthetic(tmp_path):
    out = run("stats", "--profile", "tiny", env_cache=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "search events" in out.stdout and "valid search cases" in out.stdout


def test_stats_on_missing_folder_fails_clearly(tmp_path):
    out = run("stats", "--dataset", str(tmp_path / "nope"), env_cache=tmp_path)
    assert out.returncode == 2
    assert "nope" in out.stderr and "does not exist" in out.stderr


def test_stats_on_unknown_profile_fails_clearly(tmp_path):
    out = run("stats", "--profile", "huge", env_cache=tmp_path)
    assert out.returncode == 2 and "unknown profile 'huge'" in out.stderr
