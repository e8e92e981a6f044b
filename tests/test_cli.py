"""python -m gensar_lib: statistics on good input; bad input or arguments give a clear message and exit 2,
the arguments before any work."""
import errno
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gensar_lib.__main__ import main
from gensar_lib.config import load_profile


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


# ---------------------------------------------------------------- arguments checked before any work

OUT_COMMANDS = {
    "identifiers": [],
    "train": [],
    "ablation": ["--methods", "gensar"],
}


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """main() in this process, failing the test if any command reaches prepare_data."""
    import gensar_lib.data.pipeline as data_pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(data_pipeline, "prepare_data", forbidden)
    monkeypatch.setenv("GENSAR_CACHE", str(tmp_path / "cache"))
    return main


def _fails_fast(main, capsys, argv, *expected):
    start = time.monotonic()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, err
    assert time.monotonic() - start < 10  # the ablation command imports its module (seconds); no training
    return err


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_out_is_an_existing_file(no_work, capsys, tmp_path, command):
    out = tmp_path / "taken.json"
    out.write_text("{}")
    _fails_fast(no_work, capsys, [command, "--profile", "tiny", "--out", str(out), *OUT_COMMANDS[command]],
                f"--out {out}: exists and is not a folder")
    assert out.read_text() == "{}"


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_out_under_a_file(no_work, capsys, tmp_path, command):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "results"
    _fails_fast(no_work, capsys, [command, "--profile", "tiny", "--out", str(out), *OUT_COMMANDS[command]],
                f"--out {out}: cannot create the folder: {tmp_path / 'file'} is a file")


def _unwritable_system_folder() -> Path | None:
    """/sys where even root cannot create a file there (sysfs), else None."""
    folder = Path("/sys")
    if not folder.is_dir():
        return None
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return folder
    os.close(fd)
    os.unlink(probe)
    return None


@pytest.mark.parametrize("command", sorted(OUT_COMMANDS))
def test_out_is_a_folder_nobody_may_write(no_work, capsys, command):
    folder = _unwritable_system_folder()
    if folder is None:
        pytest.skip("no folder here that root cannot write to")
    _fails_fast(no_work, capsys, [command, "--profile", "tiny", "--out", str(folder), *OUT_COMMANDS[command]],
                f"--out {folder}: folder is not writable")


def test_out_folder_refusing_files(no_work, capsys, tmp_path, monkeypatch):
    # Root ignores chmod, so the refusal is simulated where the check creates its probe file.
    out = tmp_path / "readonly"
    out.mkdir()
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / "probe"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    _fails_fast(no_work, capsys, ["train", "--profile", "tiny", "--out", str(out)],
                f"--out {out}: folder is not writable (Permission denied)")


def test_good_out_is_created_before_the_work(no_work, capsys, tmp_path):
    out = tmp_path / "new" / "results"
    with pytest.raises(AssertionError, match="work started"):
        no_work(["identifiers", "--profile", "tiny", "--out", str(out)])
    assert out.is_dir() and list(out.iterdir()) == []  # the writability probe is gone


def test_os_errors_become_messages(monkeypatch, capsys, tmp_path):
    import gensar_lib.data.pipeline as data_pipeline

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "x.pkl"))

    monkeypatch.setattr(data_pipeline, "prepare_data", disk_full)
    assert main(["stats", "--profile", "tiny"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'cache' / 'x.pkl'}: No space left on device\n"


@pytest.mark.parametrize("argv, expected", [
    (["stats", "--profile", ""], "--profile is empty"),
    (["stats", "--dataset", ""], "--dataset is empty"),
    (["ablation", "--methods", ""], "--methods is empty"),
    (["ablation", "--methods", " , "], "--methods is empty"),
    (["ablation", "--methods", "gensar,nope"], "unknown ablation method 'nope'"),
    (["ablation", "--methods", "gensar,,bm25"], "unknown ablation method ''"),
    (["ablation", "--seeds", "0"], "--seeds 0 is impossible"),
])
def test_empty_or_unknown_values_are_errors(no_work, capsys, tmp_path, argv, expected):
    out = tmp_path / "out"
    argv = argv + (["--out", str(out)] if argv[0] == "ablation" else [])
    _fails_fast(no_work, capsys, argv, expected)
    assert not out.exists()  # checked before --out is created


def test_dataset_given_as_a_file(tmp_path):
    file = tmp_path / "Office.inter.json"
    file.write_text("{}")
    out = run("stats", "--dataset", str(file), env_cache=tmp_path)
    assert out.returncode == 2
    assert str(file) in out.stderr and "is a file, not a dataset folder" in out.stderr


def test_stats_on_interactions_without_users(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "Toy.item.json").write_text('{"0": {"title": "Pen", "categories": "Office,Pens"}}')
    (folder / "Toy.inter.json").write_text("{}")
    out = run("stats", "--dataset", str(folder), "--profile", "tiny", env_cache=tmp_path / "cache")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{folder / 'Toy.inter.json'}: no users" in out.stderr
    assert not (tmp_path / "cache" / "data").exists() or not any((tmp_path / "cache" / "data").iterdir())


def _fields(obj, prefix=""):
    """The dotted name of every field of a profile that is not a section."""
    import dataclasses

    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        yield from _fields(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]


def _refused_at_once(main, capsys, tmp_path, setting, *expected):
    """``train --set setting`` exits 2 within 5 s naming ``expected``, before --out is made or data is read."""
    out = tmp_path / "out"
    start = time.monotonic()
    code = main(["train", "--profile", "tiny", "--out", str(out), "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert all(text in err for text in expected), err
    assert time.monotonic() - start < 5 and not out.exists()


@pytest.mark.parametrize("field", list(_fields(load_profile("tiny"))))
def test_every_profile_field_refuses_a_value_of_another_type(no_work, capsys, tmp_path, field):
    _refused_at_once(no_work, capsys, tmp_path, f'{field}={{"bad": 1}}', field, "{'bad': 1}")


@pytest.mark.parametrize("setting, allowed", [
    ("train.max_steps=-5", "an integer >= 1, or null"), ("train.max_steps=abc", "an integer >= 1, or null"),
    ("train.lr=NaN", "a finite number > 0.0"), ("train.lr=0", "a finite number > 0.0"),
    ("train.lr=-Infinity", "a finite number > 0.0"), ("model.num_layers=0", "an integer >= 1"),
    ("eval.max_eval_users=0", "an integer >= 1, or null"), ("eval.beam_size=0", "an integer >= 1"),
    ("eval.ks=[0]", "a list of at least 1 of: an integer >= 1"), ("quantize.codebook_size=1", "an integer >= 2"),
    ("data.synthetic.n_leaves=65", "an integer >= 2 and <= 64"), ("data.protocol=loose", "one of 'strict', 'official'"),
    ("model.dropout_rate=1", "a finite number >= 0.0 and < 1.0"), ("train.prompts=fancy", "one of 'paraphrases'"),
    ("model.pretrained=\"\"", "a non-empty text, or null"), ("seed=-1", "an integer >= 0"),
    ("ablation.level_splits=[[1]]", "a list of at least 1 of: [an integer >= 1, an integer >= 1]"),
    ("train.task_mix=[[\"NRIP\", -1]]", "a list of at least 1 of: [a non-empty text, a finite number >= 0.0], or null"),
    ("ablation.epochs=0", "an integer >= 1, or null"),
])
def test_out_of_range_values_exit_2_before_any_work(no_work, capsys, tmp_path, setting, allowed):
    _refused_at_once(no_work, capsys, tmp_path, setting, setting.split("=")[0], f"(allowed: {allowed}")


@pytest.mark.parametrize("argv, expected", [
    (["--query", ""], "--query '' is empty"),
    (["--query", "  \t"], "--query '  \\t' is empty"),
    (["--k", "11"], "--k 11 is more than the beam keeps (eval.beam_size = 10)"),
])
def test_predict_refuses_a_blank_query_and_more_items_than_the_beam(no_work, capsys, argv, expected):
    _fails_fast(no_work, capsys, ["predict", "--profile", "tiny", "--user", "u1", *argv], expected)
