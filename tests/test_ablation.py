"""The identifier ablation (notebook 06): variants, tables, the command line, and what holds by construction."""
import json
from dataclasses import replace
from itertools import product

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from gensar_lib import ablation, ablation_run, artifacts, devices, plots, results
from gensar_lib.baselines import BASELINES
from gensar_lib.__main__ import main
from gensar_lib.config import ConfigError, fingerprint, load_profile
from gensar_lib.identifiers import collision_rate, parse_token
from gensar_lib.methods import IDENTIFIER_VARIANTS

TINY = load_profile("tiny")


def test_random_identifiers_are_distinct_seeded_and_informationless():
    ids = ablation_run.random_identifiers(500, 4, 16, seed=3)
    assert collision_rate(ids.semantic) == 0.0
    assert ids.semantic == ids.collaborative
    assert all(len(t) == 4 and [parse_token(x)[0] for x in t] == ["random"] * 4 for t in ids.semantic)
    assert set(ids.tokens_used()) <= set(ids.vocabulary)
    assert ablation_run.random_identifiers(500, 4, 16, seed=3) == ids
    assert ablation_run.random_identifiers(500, 4, 16, seed=4).semantic != ids.semantic


def test_random_identifiers_reject_too_small_a_space():
    with pytest.raises(ConfigError, match=r"2\^3 = 8 IDs for 9 items"):
        ablation_run.random_identifiers(9, 3, 2, seed=0)


def test_every_identifier_variant_has_one_maker():
    assert tuple(ablation_run.VARIANTS) == IDENTIFIER_VARIANTS


def test_unknown_method_is_named():
    with pytest.raises(ConfigError, match="'gensar2'.*choose from"):
        ablation.check_methods(["gensar", "gensar2"])


def _skyline(points: dict[str, tuple[float, float]]) -> set[str]:
    """The Pareto front by a sweep, independent of ``ablation.pareto_front``'s pairwise rule: walk the distinct
    first coordinates from the largest down; at each, only the points with the group's largest second coordinate
    can survive, and they do if that coordinate beats every second coordinate seen at a larger first one."""
    front, best_above = set(), -np.inf
    for x in sorted({p[0] for p in points.values()}, reverse=True):
        group = {m: p[1] for m, p in points.items() if p[0] == x}
        top = max(group.values())
        if top > best_above:
            front |= {m for m, y in group.items() if y == top}
        best_above = max(best_above, top)
    return front


def test_skyline_on_known_fronts():
    assert _skyline({"a": (1, 1), "b": (0, 2), "c": (0, 0)}) == {"a", "b"}
    assert _skyline({"a": (1, 1), "b": (1, 1), "c": (1, 0), "d": (0, 1)}) == {"a", "b"}  # duplicates both stay
    assert _skyline({"a": (2, 0), "b": (2, 1), "c": (3, 1)}) == {"c"}  # equal on one, better on the other
    assert _skyline({}) == set()


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    seen = {"duplicate": 0, "tie_dominated": 0}
    for trial in range(300):
        n = int(rng.integers(1, 9))
        coords = rng.integers(0, 4, size=(n, 2)) if trial % 2 else rng.normal(size=(n, 2)).round(1)
        pts = {f"m{i}": (float(x), float(y)) for i, (x, y) in enumerate(coords)}
        expected = _skyline(pts)
        assert ablation.pareto_front(pts) == expected, pts
        values = list(pts.values())
        seen["duplicate"] += any(values.count(pts[m]) > 1 for m in expected)  # identical points on the front
        seen["tie_dominated"] += any(p[0] == q[0] or p[1] == q[1] for m, p in pts.items() if m not in expected
                                     for k, q in pts.items() if k in expected)  # dominated, equal on one score
    assert min(seen.values()) >= 10, seen  # the random sets do hold ties and duplicates


def test_run_profile_applies_the_ablation_overrides():
    prof = replace(TINY, ablation=replace(TINY.ablation, epochs=2, max_steps=100))
    run = ablation.run_profile(prof, seed=7)
    assert (run.seed, run.train.epochs, run.train.max_steps) == (7, 2, 100)
    assert ablation.run_profile(replace(TINY, ablation=replace(TINY.ablation, epochs=None)), 0).train == TINY.train


def test_single_task_runs_cut_the_profiles_task_mix():
    full = ablation.run_profile(TINY, 0, "gensar-rec-only").train.task_mix
    assert full == (("NRIP", 1.0), ("ITEM2ID", 1.0), ("ID2ITEM", 0.5))  # from the default TaskMix()
    two = replace(TINY, train=replace(TINY.train, task_mix=(("NRIP", 1.0), ("NSIP", 2.0))))
    assert ablation.run_profile(two, 0, "gensar-search-only").train.task_mix == (("NSIP", 2.0),)
    assert ablation.run_profile(two, 0, "gensar").train.task_mix == two.train.task_mix
    only_search = replace(TINY, train=replace(TINY.train, task_mix=(("NSIP", 1.0),)))
    with pytest.raises(ConfigError, match="'gensar-rec-only'.*keeps none"):
        ablation.run_profile(only_search, 0, "gensar-rec-only")


def test_seeds_of_headline_and_other_methods():
    assert ablation.seeds_of("gensar", TINY, 3) == [0, 1, 2]
    assert ablation.seeds_of("random", TINY, 3) == [0]
    assert ablation.seeds_of("random", TINY, 3, all_seeds=True) == [0, 1, 2]


def _run(method, seed, rec, search):
    row = lambda v: {"HR@1": v, "HR@5": v, "HR@10": v, "NDCG@5": v, "NDCG@10": v}  # noqa: E731
    return {"method": method, "family": "generative", "seed": seed, "collisions": [],
            "metrics": {"rec": {"sampled": row(rec), "full": row(rec / 2)},
                        "search": {"sampled": row(search), "full": row(search / 2)}}}


def test_summary_and_paper_table_aggregate_over_seeds():
    runs = [_run("gensar", 0, 0.2, 0.4), _run("gensar", 1, 0.4, 0.6), _run("semantic", 0, 0.1, 0.5)]
    s = ablation.summary_frame(runs, "sampled")
    g = s[(s.method == "gensar") & (s.task == "rec") & (s.metric == "NDCG@10")].iloc[0]
    assert g["mean"] == pytest.approx(0.3) and g["std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert g["seeds"] == 2
    table = ablation.paper_table(runs, "full")
    assert list(table.index) == [ablation.LABELS["gensar"], ablation.LABELS["semantic"]]
    assert table.loc[ablation.LABELS["gensar"], ("rec", "HR@10")] == "0.1500 ± 0.0707 *"  # the column's best
    assert table.loc[ablation.LABELS["semantic"], ("rec", "HR@10")] == "0.0500"
    assert table.loc[ablation.LABELS["semantic"], ("search", "NDCG@5")] == "0.2500 *"  # a tie: both marked
    assert table.loc[ablation.LABELS["gensar"], ("search", "NDCG@5")] == "0.2500 ± 0.0707 *"


def test_differences_give_two_standard_error_verdicts():
    runs = [_run("gensar", 0, 0.30, 0.5), _run("gensar", 1, 0.32, 0.5), _run("gensar", 2, 0.34, 0.5),
            _run("semantic", 0, 0.10, 0.50), _run("semantic", 1, 0.12, 0.52), _run("semantic", 2, 0.14, 0.48),
            _run("random", 0, 0.0, 0.0)]
    d = ablation.differences(runs).set_index(["method", "task"])
    rec = d.loc[("semantic", "rec")]
    assert rec.difference == pytest.approx(0.2)
    assert rec.standard_error == pytest.approx(np.sqrt(2 * 0.02 ** 2 / 3)) and rec.beyond_2se
    search = d.loc[("semantic", "search")]
    assert search.difference == pytest.approx(0.0) and not search.beyond_2se
    assert d.loc[("random", "rec")].beyond_2se is None and d.loc[("random", "rec")].seeds == "3 vs 1"
    assert "gensar" not in d.index.get_level_values("method")


def test_baseline_gap_compares_with_the_best_baseline_of_each_task():
    base = lambda name, seed, rec, search: {**_run(name, seed, rec, search), "family": "baseline"}  # noqa: E731
    runs = [_run("gensar", s, r, 0.8) for s, r in enumerate((0.30, 0.32, 0.34))]
    runs += [base("sasrec", s, 0.36, 0.2) for s in range(3)]  # best on rec, and no spread
    runs += [base("query-popularity", s, 0.1, q) for s, q in enumerate((0.9, 0.92, 0.94))]  # best on search
    runs += [_run("semantic", 0, 0.9, 0.99)]  # generative: never the baseline
    gap = ablation.baseline_gap(runs, "sampled", "HR@10").set_index("task")
    assert gap.loc["rec", "best_baseline"] == "sasrec" and gap.loc["search", "best_baseline"] == "query-popularity"
    assert gap.loc["rec", "difference"] == pytest.approx(-0.04)
    assert gap.loc["rec", "standard_error"] == pytest.approx(0.02 / np.sqrt(3)) and gap.loc["rec", "beyond_2se"]
    assert gap.loc["search", "difference"] == pytest.approx(-0.12)
    assert gap.loc["search", "standard_error"] == pytest.approx(0.02 / np.sqrt(3))  # from the baseline alone


def _result(runs, profile=TINY, **kw):
    return results.AblationResult("synthetic", profile.name, runs, profile_key=fingerprint(profile), **kw)


def test_committed_results_load_only_for_the_same_profile(tmp_path):
    path = tmp_path / "ablation.json"
    made = _result([_run("gensar", 0, 0.2, 0.4)], provenance={"date": "2026-12-01 18:00 UTC"})
    path.write_text(json.dumps(made.as_dict()))
    assert ablation.load_committed("synthetic", TINY, path) == made
    other = replace(TINY, train=replace(TINY.train, lr=1e-4))
    with pytest.warns(UserWarning, match="profile_key.*values changed"):
        assert ablation.load_committed("synthetic", other, path) is None
    with pytest.warns(UserWarning, match="no committed ablation results"):
        assert ablation.load_committed("synthetic", TINY, tmp_path / "none.json") is None
    assert ablation.committed_status("synthetic", TINY, path) == (made, "loaded the committed runs of profile "
                                                                  "'tiny' on synthetic (the hyper-parameter grid too)")
    none, status = ablation.committed_status("synthetic", other, path)
    assert none is None and "values changed" in status and str(tmp_path) not in status  # no path shown
    assert ablation.committed_path("Office", "small").name == "ablation_office_small.json"


def test_combine_keeps_todays_runs_and_loads_the_rest():
    committed = _result([_run("gensar", 0, 0.2, 0.4), _run("gensar", 1, 0.3, 0.5), _run("semantic", 0, 0.1, 0.5)],
                        hparams=[{"codebook_size": 8}], provenance={"date": "2026-12-01 18:00 UTC"})
    now = _result([_run("gensar", 0, 0.2, 0.45)])
    both = ablation.combine(now, committed)
    assert [(r["method"], r["seed"], r["source"]) for r in both.runs] == [
        ("gensar", 0, "trained now"), ("gensar", 1, "loaded"), ("semantic", 0, "loaded")]  # no dates shown
    assert both.hparams == committed.hparams
    sources = ablation.sources_frame(both.runs)
    assert sources.values.tolist() == [["gensar", "trained now", "0"], ["gensar", "loaded", "1"],
                                       ["semantic", "loaded", "0"]]
    rep = ablation.reproduction(now, committed)
    # search sampled 0.45 vs 0.40; neither run records its machine; the committed seeds' SD: 0.0707 (0.4 vs 0.5)
    assert rep.values.tolist() == [["gensar", 0, pytest.approx(0.05), None, None, pytest.approx(0.0707, abs=1e-4)]]
    alone = ablation.combine(now, None)
    assert [r["source"] for r in alone.runs] == ["trained now"]


def test_reproduction_lines_say_why_in_either_direction():
    amd, intel = {"cpu": "AMD EPYC", "torch_threads": 1}, {"cpu": "Intel Xeon", "torch_threads": 1}
    committed = _result([{**_run("gensar", 0, 0.2, 0.4), **amd}, {**_run("gensar", 1, 0.21, 0.4), **amd},
                         {**_run("semantic", 0, 0.1, 0.5), **amd}])
    same = ablation.reproduction(_result([{**_run("gensar", 0, 0.2, 0.4), **amd}]), committed)
    assert ablation.reproduction_lines(same) == [
        "GenSAR (shared + specific), seed 0: reproduced exactly (this machine is the same kind of CPU with the same torch thread count)."]
    other = ablation.reproduction(_result([{**_run("gensar", 0, 0.3, 0.4), **intel},
                                           {**_run("semantic", 0, 0.1, 0.5), **amd, "torch_threads": 2}]),
                                  committed)
    assert other[["same_cpu", "same_threads"]].values.tolist() == [[False, True], [True, False]]
    gensar, semantic = ablation.reproduction_lines(other)
    assert gensar.startswith("GenSAR (shared + specific), seed 0: not reproduced; this machine is another kind of CPU with the same "
                             "torch thread count, and a seed gives the same model only on the same kind of CPU")
    assert gensar.endswith("differ by up to 0.100, beyond the committed seeds' spread (SD up to 0.007).")
    assert "reproduced exactly" in semantic and "another torch thread count" in semantic
    drift = ablation.reproduction(_result([{**_run("gensar", 1, 0.2105, 0.4), **amd}]), committed)
    (line,) = ablation.reproduction_lines(drift)
    assert "the code or the library versions differ" in line and "within the committed seeds' spread" in line
    for text in (gensar, semantic, line):
        assert "UTC" not in text and "2026" not in text and "/" not in text


def test_machine_kind_names_vendor_and_family():
    kind = devices.machine_kind()
    assert set(kind) == {"cpu", "torch_threads"} and kind["torch_threads"] == torch.get_num_threads()
    assert kind["cpu"] and "(R)" not in kind["cpu"] and len(kind["cpu"].split()) <= 2


def test_variant_identifiers(tiny_prepared, session_cache):
    n = tiny_prepared.dataset.n_items
    out = {m: ablation_run.variant_identifiers(m, tiny_prepared, TINY, session_cache)
           for m in ("gensar", "semantic", "separate", "random", "gensar-rec-only")}
    assert out["gensar-rec-only"].ids == out["gensar"].ids
    sep, sem = out["separate"].ids, out["semantic"].ids
    assert sep.semantic == sem.semantic and len(sep) == n
    assert all(parse_token(t)[0] == "collaborative" for ident in sep.collaborative for t in ident)
    assert set(sep.tokens_used()) <= set(sep.vocabulary)
    # GenSAR's two IDs share their prefix; the separate variant's never share a token
    g = out["gensar"].ids
    assert all(s[:2] == c[:2] for s, c in zip(g.semantic, g.collaborative))
    assert not any(set(s) & set(c) for s, c in zip(sep.semantic, sep.collaborative))
    for m, v in out.items():
        assert {r["identifier"] for r in v.collisions} == {"semantic", "collaborative"}, m
        assert all(0 <= r["after"] <= r["before"] <= 1 for r in v.collisions), m


def test_extend_keeps_earlier_runs_with_their_dates_and_read_results_refuses_another_recipe(tmp_path):
    earlier = _result([_run("gensar", 0, 0.2, 0.4), _run("semantic", 0, 0.1, 0.5)], hparams=[{"codebook_size": 8}],
                      structure={"gensar": {"gensar_a": {"ami_leaf": 0.5}}},
                      provenance={"date": "2026-12-03 07:00 UTC", "command": "first"})
    now = _result([_run("gensar", 1, 0.3, 0.5), _run("semantic", 0, 0.15, 0.5)],
                  provenance={"date": "2026-12-04 07:00 UTC", "command": "second"})
    both = results.extend(earlier, now)
    assert [(r["method"], r["seed"], r["made"]) for r in both.runs] == [
        ("gensar", 0, "2026-12-03 07:00 UTC"), ("gensar", 1, "2026-12-04 07:00 UTC"),
        ("semantic", 0, "2026-12-04 07:00 UTC")]  # a run made again replaces the earlier one
    assert both.hparams == earlier.hparams and both.structure == earlier.structure  # kept by a save after each run
    assert both.provenance["command"] == "second" and both.provenance["earlier"] == [earlier.provenance]
    assert [r["source"] for r in ablation.combine(_result([]), both).runs] == ["loaded"] * 3  # the date stays in "made"
    third = results.extend(both, _result([], provenance={"date": "2026-12-05 07:00 UTC"}))
    assert [p.get("command") for p in third.provenance["earlier"]] == ["first", "second"]
    assert [r["made"] for r in results.extend(None, now).runs] == ["2026-12-04 07:00 UTC"] * 2
    path = tmp_path / "results.json"
    path.write_text(json.dumps(both.as_dict()))
    assert results.read_results(path, TINY, "synthetic").runs == both.runs
    with pytest.raises(ConfigError, match="field 'dataset' = 'synthetic', but this run is on 'Office'"):
        results.read_results(path, TINY, "Office")
    with pytest.raises(ConfigError, match="field 'profile_key'.*another recipe"):
        results.read_results(path, replace(TINY, train=replace(TINY.train, lr=1e-4)))
    path.write_text("{")
    with pytest.raises(ConfigError, match="results.json: not an ablation results file"):
        results.read_results(path, TINY)


@pytest.fixture(scope="module")
def tiny_ablation(tmp_path_factory):
    """The command line's tiny ablation on the synthetic world; the session's cache, which notebook 06 reuses."""
    out = tmp_path_factory.mktemp("ablation")
    with pytest.MonkeyPatch.context() as mp:  # --commit writes here, not into the repository's figures/
        mp.setattr(results, "COMMITTED", out / "committed")
        assert main(["ablation", "--dataset", "synthetic", "--profile", "tiny", "--commit", "--out", str(out)]) == 0
    return out, json.loads((out / "ablation.json").read_text())


def test_ablation_cli_writes_every_method_and_figure(tiny_ablation):
    out, report = tiny_ablation
    methods = {r["method"] for r in report["runs"]}
    assert methods == set(ablation.METHODS) | set(BASELINES)
    assert report["seeds"] == [0]
    for run in report["runs"]:
        for task, protocol in product(("rec", "search"), ("sampled", "full")):
            row = run["metrics"][task][protocol]
            assert set(row) == {"HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"}
            assert 0 <= row["HR@1"] <= row["HR@5"] <= row["HR@10"] <= 1
    assert len(report["hparams"]) == 2 * len(TINY.ablation.codebook_sizes) * len(TINY.ablation.level_splits)
    for name in plots.ABLATION_FIGURES:
        for ext in ("png", "csv"):
            assert (out / "figures" / results.NOTEBOOK / f"{name}.{ext}").stat().st_size > 0
    assert report["provenance"]["command"].startswith("python -m gensar_lib ablation --dataset synthetic")
    assert report["profile_key"] == fingerprint(TINY)
    assert json.loads((out / "committed" / "ablation_synthetic_tiny.json").read_text()) == report


def _ndcg(report, method, task):
    return next(r for r in report["runs"] if r["method"] == method)["metrics"][task]["sampled"]["NDCG@10"]


def test_ablation_extend_trains_only_the_missing_runs_and_saves_after_each(tiny_ablation, tmp_path, monkeypatch,
                                                                           capsys):
    """Over several sessions: ``--extend FILE`` keeps FILE's runs and trains only what it lacks."""
    results, calls, saved = tmp_path / "next.json", [], []
    train, save = ablation.run_method, artifacts.write_json

    def counted(method, prepared, profile, seed, *args, **kwargs):
        calls.append((method, seed))
        return train(method, prepared, profile, seed, *args, **kwargs)

    monkeypatch.setattr(ablation, "run_method", counted)
    base = ["ablation", "--dataset", "synthetic", "--profile", "tiny", "--extend", str(results)]
    assert main(base + ["--methods", "random", "--out", str(tmp_path / "a")]) == 0
    first = json.loads(results.read_text())
    assert calls == [("random", 0)] and first["hparams"] and first["profile_key"] == fingerprint(TINY)
    assert sorted(r["method"] for r in first["runs"]) == sorted(["random", *BASELINES])
    calls.clear()
    monkeypatch.setattr("gensar_lib.artifacts.write_json",  # the command imports it when it runs
                        lambda path, obj: saved.append(len(obj["runs"])) or save(path, obj))
    assert main(base + ["--methods", "random,semantic", "--out", str(tmp_path / "b")]) == 0
    second = json.loads(results.read_text())
    assert calls == [("semantic", 0)]  # random seed 0 and the baselines came from the file
    assert sorted(r["method"] for r in second["runs"]) == sorted(["random", "semantic", *BASELINES])
    random_runs = [[r for r in report["runs"] if r["method"] == "random"] for report in (first, second)]
    assert random_runs[0] == random_runs[1]
    assert second["hparams"] == first["hparams"]
    assert second["provenance"]["earlier"][0]["date"] == first["provenance"]["date"]
    # random, semantic and every baseline: after the semantic run (an interrupted command keeps it), and at the end
    assert saved == [2 + len(BASELINES)] * 2
    other = base + ["--set", "train.lr=1e-4", "--methods", "random", "--out", str(tmp_path / "c")]
    assert main(other) == 2  # another recipe's results: refused before any work
    assert "field 'profile_key'" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_semantic_information_helps_search_more_than_rec(tiny_ablation):
    """By construction of the synthetic world: queries describe leaves (text), recommendations follow bundles.

    Measured on the two embeddings the identifiers are built from, through the dense (semantic) and SASRec
    (collaborative) baselines. The identifier variants' own gaps are reported in notebook 06, not asserted.
    """
    _, report = tiny_ablation
    search_gap = _ndcg(report, "dense", "search") - _ndcg(report, "sasrec", "search")
    rec_gap = _ndcg(report, "dense", "rec") - _ndcg(report, "sasrec", "rec")
    assert search_gap > rec_gap + 0.1
    assert _ndcg(report, "sasrec", "rec") > _ndcg(report, "dense", "rec")  # collaborative helps rec more


def test_single_task_models_are_the_ends_of_the_trade_off(tiny_ablation):
    """A model never trained on a task's instructions cannot do it as well as one that was."""
    _, report = tiny_ablation
    assert _ndcg(report, "gensar-rec-only", "rec") > _ndcg(report, "gensar-search-only", "rec")
    assert _ndcg(report, "gensar-search-only", "search") > _ndcg(report, "gensar-rec-only", "search")


def test_ablation_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["ablation", "--profile", "tiny", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown ablation method 'nope'" in capsys.readouterr().err
    assert main(["ablation", "--profile", "tiny", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "ablation.json").exists()


def test_downstream_frame_reads_the_budget_curve_comparison(tmp_path, monkeypatch):
    test = {task: {p: {"HR@10": h} for p, h in (("sampled", 0.4 + d), ("full", 0.2 + d))}
            for task, d in (("rec", 0.0), ("search", 0.05))}
    runs = [{"candidate": name, "test": test,
             "history": [{"val_score": v, "train_seconds": 60.0 * (i + 1), "step": 800 * (i + 1)}
                         for i, v in enumerate(vals)]}
            for name, vals in (("small profile", [0.1, 0.3, 0.2]), ("before", [0.05, 0.1, 0.15]))]
    path = tmp_path / "identifiers_downstream_synthetic.json"
    monkeypatch.setattr(results, "downstream_path", lambda dataset: tmp_path / f"identifiers_downstream_{dataset.lower()}.json")
    small = load_profile("small")
    with pytest.warns(UserWarning, match="no identifiers-downstream comparison"):
        assert ablation.downstream_frame("synthetic", small) is None
    path.write_text(json.dumps({"results": runs, "profile_key": fingerprint(TINY)}))
    with pytest.warns(UserWarning, match="profile_key.*not shown"):
        assert ablation.downstream_frame("synthetic", small) is None
    path.write_text(json.dumps({"results": runs, "profile_key": fingerprint(small)}))
    frame = ablation.downstream_frame("Synthetic", small)
    assert list(frame.index) == ["small profile", "before"]
    assert frame.loc["small profile", "best validation NDCG@5"] == 0.3 and frame.loc["small profile", "step"] == 1600
    assert frame.loc["before", "at minute"] == 3.0
    assert frame.loc["before", "search full HR@10"] == pytest.approx(0.25)
    assert ablation.downstream_path("Office").name == "identifiers_downstream_office.json"


def test_verdict_lines_follow_the_numbers_in_either_direction():
    base = lambda name, seed, rec, search: {**_run(name, seed, rec, search), "family": "baseline"}  # noqa: E731
    runs = [_run("gensar", s, r, 0.8) for s, r in enumerate((0.30, 0.32, 0.34))]
    runs += [_run("semantic", s, r, 0.9) for s, r in enumerate((0.20, 0.21, 0.22))]
    runs += [base("sasrec", s, 0.33, 0.2) for s in range(3)]
    lines = ablation.verdict(runs, "sampled", "HR@10", identifiers=("gensar", "semantic"))
    assert all(line.startswith("Verdict: ") for line in lines) and len(lines) == 4
    rec, search, rec_gap, search_gap = lines
    assert "recommendation, GenSAR (shared + specific) identifiers score highest (0.320" in rec
    assert "beyond two standard errors" in rec
    assert "search, semantic-only (TIGER) identifiers score highest (0.900" in search
    assert "GenSAR is level with the strongest baseline, SASRec, in HR@10 (sampled): behind by" in rec_gap
    assert rec_gap.endswith("within two standard errors.")
    assert "GenSAR beats the strongest baseline, SASRec" in search_gap and "0.600 ± 0.000" in search_gap
    one_seed = ablation.verdict(runs + [_run("collaborative", 0, 0.5, 0.1)], "sampled", "HR@10")
    assert "collaborative-only identifiers score highest" in one_seed[0] and "no standard error" in one_seed[0]
    assert "ahead of GenSAR (shared + specific) by 0.180; one of the two ran one seed" in one_seed[0]  # 0.5 - 0.32


def test_fig1_numbers_every_point_and_names_it_in_the_key():
    base = lambda name, seed, rec, search: {**_run(name, seed, rec, search), "family": "baseline"}  # noqa: E731
    runs = [_run("gensar", 0, 0.3, 0.8), _run("semantic", 0, 0.3, 0.8), base("joint", 0, 0.3, 0.8)]  # all overlap
    fig, data = ablation.plot_tradeoff(runs, "sampled")
    assert list(data.number) == [1, 2, 3]
    key = fig.axes[1].texts[0].get_text().splitlines()
    assert key == [f"{n:>2}  {ablation.LABELS[m]}" for n, m in zip(data.number, data.method)]
    marks = sorted(t.get_text() for t in fig.axes[0].texts)
    assert marks == ["1", "2", "3"]
    plt.close(fig)
