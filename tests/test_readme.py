"""README.md is a guide: at most 20,000 bytes, and its results block is what ``python -m gensar_lib results``
prints from the committed ablation results (gensar_lib.results)."""
from __future__ import annotations

import json

import pytest

from gensar_lib import results
from gensar_lib.__main__ import main
from gensar_lib.config import REPO_ROOT, ConfigError

README = REPO_ROOT / "README.md"


def _run(method, seed, rec_full, search_sampled, family="generative"):
    """A run with the same value for both metrics of a (task, protocol); ``None`` leaves the task out."""
    metrics = {}
    if rec_full is not None:
        metrics["rec"] = {p: {"HR@10": rec_full, "NDCG@10": rec_full} for p in ("full", "sampled")}
    metrics["search"] = {p: {"HR@10": search_sampled, "NDCG@10": search_sampled} for p in ("full", "sampled")}
    return {"method": method, "family": family, "seed": seed, "metrics": metrics}


def test_the_readme_is_a_guide_of_at_most_20000_bytes():
    size = len(README.read_bytes())
    assert size <= 20_000, f"README.md has {size} bytes; move measurements to lab/LOG.md"


def test_the_readme_results_are_what_the_command_prints(capsys):
    assert main(["results"]) == 0
    printed = capsys.readouterr().out
    assert printed == results.results_markdown()
    text = README.read_text(encoding="utf-8")
    start, end = results.readme_block(text, README)
    assert text[start:end] == "\n" + printed, \
        "README.md's results block is stale: run `python -m gensar_lib results --readme`"
    for path in results.results_files():
        report = json.loads(path.read_text())
        assert f"**{report['dataset']}**, profile `{report['profile']}`" in printed, path.name


def test_a_table_has_a_row_per_method_present_and_marks_each_columns_best():
    runs = [_run("gensar", 0, 0.1, 0.5), _run("gensar", 1, 0.3, 0.7),  # mean 0.2 / 0.6, std 0.141
            _run("sasrec", 0, 0.2, 0.4, "baseline"),  # ties GenSAR's rec mean: both bold
            _run("new-baseline", 0, None, 0.9, "baseline")]  # unknown name, no recommendation score
    table = results.results_table({"dataset": "Toy", "profile": "tiny", "runs": runs})
    header, blank, columns, rule, *rest = table.splitlines()
    rows, verdicts = rest[:rest.index("")], rest[rest.index("") + 1:]
    assert header.startswith("**Toy**, profile `tiny`, seeds 0, 1 ") and blank == ""
    assert columns.count("|") == 11 and "rec. HR@10 full" in columns and "search NDCG@10 sampled" in columns
    assert [row.split(" | ")[0] for row in rows] == ["| GenSAR (shared + specific)", "| SASRec", "| new-baseline"]
    gensar, sasrec, new = (row.strip("| ").split(" | ") for row in rows)
    assert gensar[1:4] == ["2", "**0.200 ± 0.141**", "**0.200 ± 0.141**"] and gensar[4] == "0.600 ± 0.141"
    assert sasrec[1:5] == ["1", "**0.200**", "**0.200**", "0.400"]
    assert new[1:6] == ["1", "-", "-", "**0.900**", "**0.900**"] and new[6:8] == ["-", "-"]
    # then GenSAR against the strongest baseline of each task, in full-ranking HR@10 (one seed: no standard error)
    assert verdicts[0].startswith("- on recommendation, GenSAR equals the strongest baseline, SASRec")
    assert verdicts[1].startswith("- on search, GenSAR trails the strongest baseline, new-baseline")
    assert all("not evidence either way" in line for line in verdicts) and len(verdicts) == 2


def test_readme_rewrites_only_the_block_and_needs_both_markers(tmp_path):
    page = tmp_path / "README.md"
    page.write_text(f"# Title\n\nbefore\n{results.BEGIN}\nold table\n{results.END}\nafter\n", encoding="utf-8")
    results.write_readme("| new |\n", page)
    assert page.read_text() == f"# Title\n\nbefore\n{results.BEGIN}\n| new |\n{results.END}\nafter\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary left behind
    for broken in ("no markers\n", f"{results.END}\n{results.BEGIN}\n", f"{results.BEGIN}\n{results.BEGIN}\n{results.END}\n"):
        page.write_text(broken)
        with pytest.raises(ConfigError, match="results:begin"):
            results.write_readme("| new |\n", page)
        assert page.read_text() == broken


def test_the_command_writes_the_readme_and_fails_before_any_work_without_markers(tmp_path, monkeypatch, capsys):
    page = tmp_path / "README.md"
    monkeypatch.setattr(results, "README", page)
    page.write_text(f"intro\n{results.BEGIN}\n{results.END}\n", encoding="utf-8")
    assert main(["results", "--readme"]) == 0
    assert page.read_text() == f"intro\n{results.BEGIN}\n{results.results_markdown()}{results.END}\n"
    capsys.readouterr()
    monkeypatch.setattr(results, "results_markdown", lambda: pytest.fail("work done before the check"))
    page.write_text("no markers\n")
    assert main(["results", "--readme"]) == 2
    assert "results:begin" in capsys.readouterr().err
