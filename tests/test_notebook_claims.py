"""What the notebooks' prose claims, checked on the numbers they recorded (``gensar_lib.plots.record``).

Each notebook writes ``<figures>/<notebook>/claims.json`` while it runs. These tests run after the
notebooks (conftest puts them last, and leaves them out of a session that runs no notebook), and assert
each claim with thresholds per tier:

- CI, ``make test``: profile ``tiny`` on the synthetic world;
- before a release, the slower tier: ``make run`` (profile ``small``, synthetic) and
  ``GENSAR_DATASET=../shared/data/amazon-office make run``, then
  ``.venv/bin/python -m pytest tests/test_notebook_claims.py --claims-from figures``.

A tier's thresholds sit below the values measured when it was set (README, "Measured"), so that a
change that breaks what the text says fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gensar_lib.artifacts import code_fingerprint
from gensar_lib.plots import CLAIMS

pytestmark = pytest.mark.after_notebooks
PACKAGE = Path(__file__).resolve().parent.parent / "gensar_lib"

IDENTIFIERS = ("semantic-only", "collaborative-only", "concatenated", "GenSAR_semantic_ID", "GenSAR_collaborative_ID")


def law_above_model(v: dict) -> bool:
    """Notebook 05's synthetic-world ceiling: ``law_<task>_<protocol>_hr10`` above the model's value."""
    return all(v[f"law_{t}_{p}_hr10"] > v[f"{t}_{p}_hr10"] for t in ("rec", "search") for p in ("sampled", "full"))


# notebook 05's two AdamW steps by hand, on every tier that runs it
ADAMW_BY_HAND = [
    ("two AdamW steps by hand give the library's weights (max abs difference < 1e-6, far below the update) "
     "and losses", lambda v: v["adamw_by_hand_max_diff"] < 1e-6 and v["adamw_by_hand_loss_diff"] < 1e-5
     and v["adamw_second_step_change"] > 10 * v["adamw_by_hand_max_diff"]),
    ("the warm-up starts at 0: the first step moves no weight",
     lambda v: v["adamw_warmup_steps"] > 0 and v["adamw_first_step_change"] == 0),
]

# notebook 01's Summary, on every tier it is run for
SASREC_BEATS_POPULARITY = (
    lambda v: all(v[f"SASRec_rec_{p}_ndcg10"] > v[f"popularity_rec_{p}_ndcg10"] for p in ("sampled", "full")))

# notebook 00 on Amazon Office: the leak and the hard negatives (tiny measured: 4900 of 4900 leak, 97%)
OFFICE_00 = [
    ("strict histories never hold their own target", lambda v: v["strict_leaked_cases"] == 0),
    ("on Amazon Office every search test case holds its own answer under the official protocol",
     lambda v: v["official_leaked_cases"] == v["search_test_cases"] == v["search_test_twins"] > 0),
    ("a candidate list is the positive, then n_negatives items the user never touched",
     lambda v: v["candidates_per_case"] == v["n_negatives"] + 1 and v["positive_first"] == 1.0
     and v["negatives_untouched"] == 1.0),
    ("in most search lists BM25 scores a negative as high as the positive (measured 97%)",
     lambda v: v["search_lists_with_a_negative_as_good"] > 0.5),
]

# notebook 01 on Amazon Office (tiny measured: NDCG@10 sampled 0.235 / 0.005, targets 22.9 vs negatives 50.0 training
# counts, same leaf category: semantic 0.51, SASRec 0.07, chance 0.02)
OFFICE_01 = [
    ("SASRec beats popularity on both protocols (NDCG@10)", SASREC_BEATS_POPULARITY),
    ("full ranking is harder than the sampled protocol",
     lambda v: all(v[f"{m}_rec_full_hr10"] <= v[f"{m}_rec_sampled_hr10"] for m in ("SASRec", "popularity"))),
    ("on Office the sampled negatives are more popular than the targets, and popularity falls under random (0.10)",
     lambda v: v["target_train_count"] < v["negative_train_count"] and v["popularity_rec_sampled_hr10"] < 0.10),
    ("semantic neighbours follow the category tree far more than SASRec's and far above chance",
     lambda v: v["semantic_same_leaf_category"] > 3 * v["SASRec_same_leaf_category"]
     and v["semantic_same_leaf_category"] > 5 * v["chance_same_leaf_category"]),
]

# (notebook, profile, dataset) -> [(claim, check on the recorded values)]
CLAIMED = {
    ("00_data", "tiny", "Office"): OFFICE_00,
    ("01_embeddings", "tiny", "Office"): OFFICE_01,
    ("00_data", "tiny", "synthetic"): [
        ("popularity is long-tailed (measured: the top tenth of the items takes 28% of the interactions)",
         lambda v: v["top_tenth_interaction_share"] > 0.2),
        ("recommendations follow the planted bundles far above chance (measured 52% against 1.6%)",
         lambda v: v["transition_rate"] > 0.45 and v["transition_rate"] > 10 * v["chance_transition_rate"]
         and v["items_in_a_bundle"] == 1.0),
        ("strict histories never hold their own target", lambda v: v["strict_leaked_cases"] == 0),
        ("a candidate list is the positive, then n_negatives items the user never touched",
         lambda v: v["candidates_per_case"] == v["n_negatives"] + 1 and v["positive_first"] == 1.0
         and v["negatives_untouched"] == 1.0),
        ("the synthetic world has no review twins, so there the two protocols agree (no leak)",
         lambda v: v["search_test_twins"] == 0 and v["official_leaked_cases"] == 0),
        ("in most search lists BM25 scores a negative as high as the positive (measured 66%)",
         lambda v: v["search_lists_with_a_negative_as_good"] > 0.5),
    ],
    ("01_embeddings", "tiny", "synthetic"): [
        ("SASRec beats popularity on recommendation (sampled)",
         lambda v: v["SASRec_rec_sampled_ndcg10"] > v["popularity_rec_sampled_ndcg10"]),
        ("semantic neighbours share the leaf far above chance",
         lambda v: v["semantic_same_leaf"] > 5 * v["chance_same_leaf"]),
        ("SASRec neighbours find bundle-mates of another leaf, which text cannot",
         lambda v: v["SASRec_same_bundle_other_leaf"] > 2 * v["chance_same_bundle_other_leaf"]
         and v["semantic_same_bundle_other_leaf"] < v["SASRec_same_bundle_other_leaf"]),
        ("semantic neighbours are bundle-mates of another leaf almost never (measured 0.001)",
         lambda v: v["semantic_same_bundle_other_leaf"] < 0.01),
        ("SASRec's first loss is about the uniform guess, and the loss falls (measured 4.97 vs ln 144 = 4.97)",
         lambda v: abs(v["sasrec_first_loss"] - v["uniform_loss"]) < 0.05 * v["uniform_loss"]
         and v["sasrec_last_loss"] < v["sasrec_first_loss"] - 0.5),
        ("full ranking is harder than the sampled protocol",
         lambda v: all(v[f"{m}_rec_full_hr10"] <= v[f"{m}_rec_sampled_hr10"] for m in ("SASRec", "popularity"))),
        ("on the synthetic world, targets are as popular as their negatives or more, so popularity beats random",
         lambda v: v["target_train_count"] >= v["negative_train_count"] and v["popularity_rec_sampled_hr10"] > 0.15),
        ("SASRec beats popularity on both protocols (NDCG@10)", SASREC_BEATS_POPULARITY),
    ],
    ("02_residual_quantization", "tiny", "synthetic"): [
        ("the residual norm shrinks with every level, on both embeddings",
         lambda v: all(all(b < a for a, b in zip(n, n[1:])) for n in (v["semantic_residual_norms"],
                                                                       v["collaborative_residual_norms"]))),
        ("distinct code tuples grow by far with the levels (measured 16 -> 106 and 16 -> 143)",
         lambda v: all(t[-1] > 5 * t[0] for t in (v["semantic_distinct_tuples"], v["collaborative_distinct_tuples"]))),
        ("ResidualQuantizer is the by-hand quantiser, and input = sum of code vectors + residual",
         lambda v: v["library_codes_equal"] == 1.0 and v["library_identity_error"] < 1e-5
         and v["library_residual_error"] < 1e-5),
        ("one level names at most K items, and more levels never collide more",
         lambda v: v["sweep_one_level_bound"] and v["sweep_levels_help"]),
        ("reconstruction improves and the checkpoint kept is a late one (measured epoch 30 of 30)",
         lambda v: v["recon_kept"] < 0.8 * v["recon_first"] and v["kept_epoch"] > v["epochs"] / 2),
        ("the shared prefix alone collides on a large share; the full IDs far less (measured 29% and 2.4%)",
         lambda v: v["shared_prefix_collisions"] > 0.15 and v["full_id_collisions_kept"] < v["shared_prefix_collisions"] / 3),
        ("the suite's first semantic code carries the leaves better than the official training's (0.55 vs 0.40)",
         lambda v: v["this_suite_ami_semantic_leaf"] > v["official_ami_semantic_leaf"] + 0.05),
        ("gradient codebooks: the official VQ loss climbs (measured 3.3 times)",
         lambda v: v["official_vq_last"] > 2 * v["official_vq_first"]),
        ("raw semantic rows share a mean direction (measured norm 0.43)", lambda v: v["semantic_mean_norm"] > 0.3),
        ("a random codebook start uses fewer codes and collides more than k-means (usage 0.36 vs 1.0)",
         lambda v: v["random_init_usage"] < v["kmeans_init_usage"] - 0.3
         and v["random_init_semantic_collisions"] > v["kmeans_init_semantic_collisions"]),
        ("Sinkhorn spreads the items to about N / K per code (measured largest code 10 vs argmin's 16, N / K = 9)",
         lambda v: v["sinkhorn_max_items"] < v["argmin_max_items"] and v["sinkhorn_max_items"] <= 1.25 * v["balance"]),
    ],
    ("03_identifiers", "tiny", "synthetic"): [
        ("handling never adds collisions, and TIGER's extra token removes them all",
         lambda v: all(v[f"{t}_after_paper"] <= v[f"{t}_before"] and v[f"{t}_after_tiger"] == 0 for t in IDENTIFIERS)),
        ("paper-style handling leaves the GenSAR IDs (almost) collision-free (measured 0.7% and 0)",
         lambda v: max(v["GenSAR_semantic_ID_after_paper"], v["GenSAR_collaborative_ID_after_paper"]) <= 0.01),
        ("the first semantic code follows the leaves far above its shuffled baseline (AMI 0.55 vs 0.00)",
         lambda v: v["ami_leaf_first_semantic"] > 0.4 and v["ami_leaf_first_semantic"] > v["ami_leaf_shuffled"] + 0.3),
        ("the semantic-only ID follows the leaves, more than GenSAR's semantic ID (0.84 vs 0.55)",
         lambda v: v["ami_semantic_only_leaf"] > 0.7 and v["ami_semantic_only_leaf"] > v["ami_leaf_first_semantic"]),
        ("GenSAR's shared codes follow the bundles more than the leaves (AMI 0.40 vs 0.27)",
         lambda v: v["ami_gensar_shared_a_bundle"] > 0.3
         and v["ami_gensar_shared_a_bundle"] > v["ami_gensar_shared_a_leaf"]),
        ("pairs sharing a shared prefix share a bundle and a leaf far more often than random pairs (lift 7.5, 8.8)",
         lambda v: v["prefix_lift_bundle"] > 3 and v["prefix_lift_leaf"] > 3),
        ("the shared prefix alone collides on many items; each further token separates more (29% -> 0.7%)",
         lambda v: v["shared_prefix_collisions"] > 0.15 and v["prefix_collisions_by_depth"][-1] <= 0.01
         and all(b < a for a, b in zip(v["prefix_collisions_by_depth"], v["prefix_collisions_by_depth"][1:]))),
        ("one forward pass of the joint RQ-VAE by hand gives the library's codes on every level, its loss "
         "(difference < 1e-5), its gradients and its EMA codebook update",
         lambda v: v["rqvae_by_hand_codes_equal"] and v["rqvae_by_hand_loss_error"] < 1e-5
         and v["rqvae_by_hand_grad_error"] < 1e-6 and v["rqvae_by_hand_ema_error"] < 1e-5),
    ],
    ("04_instructions", "tiny", "synthetic"): [
        ("a prompt's history holds only strictly earlier events", lambda v: v["histories_strictly_earlier"]),
        ("five paraphrased templates per family, one compact one; evaluation uses the first",
         lambda v: v["paraphrases_per_family"] == [5] and v["compact_per_family"] == [1]
         and v["evaluation_uses_first_template"]),
        ("the task mix multiplies the available instances (the tiny profile trains all six families)",
         lambda v: v["mix_counts_match"] and v["families_in_training"] == 6),
        ("a target is a behaviour token, the identifier tokens and </s> (measured 6 tokens)",
         lambda v: v["target_tokens_min"] == v["target_tokens_max"] == v["id_length"] + 2),
    ],
    ("05_t5_training", "tiny", "synthetic"): [
        ("a small T5 from scratch: a few hundred thousand to a few million parameters (measured 287,808)",
         lambda v: 1e5 <= v["parameters"] <= 1e7),
        ("the loss is the response tokens' cross-entropy", lambda v: v["loss_by_hand_error"] < 1e-4),
        ("the readable beam search returns the fast engine's items", lambda v: v["readable_equals_fast"]),
        ("the tiny model beats a random ranking on both tasks (sampled HR@10 0.10)",
         lambda v: v["rec_sampled_hr10"] >= 0.15 and v["search_sampled_hr10"] >= 0.15),
        ("and under full ranking", lambda v: min(v["rec_full_hr10"], v["search_full_hr10"]) > 2 * v["random_full_hr10"]),
        ("the generator's law ranks above the model, on both tasks and protocols (a ceiling)", law_above_model),
        *ADAMW_BY_HAND,
    ],
    ("06_identifier_ablation", "tiny", "synthetic"): [
        ("dense retrieval minus SASRec is larger on search than on recommendation",
         lambda v: v["dense_minus_sasrec_search"] > v["dense_minus_sasrec_rec"] + 0.1),
        ("the single-task models are the ends of the trade-off",
         lambda v: v["gensar-rec-only_rec_ndcg10"] > v["gensar-search-only_rec_ndcg10"]
         and v["gensar-search-only_search_ndcg10"] > v["gensar-rec-only_search_ndcg10"]),
    ],
    # the slower tier: issue 10's targets, met by the values of README's "Measured" (the profile of 2026-12-06)
    ("05_t5_training", "small", "synthetic"): [
        ("the small model reaches issue 10's target, sampled HR@10 0.5 on both tasks (measured 0.528-0.554 / "
         "0.770-0.796 over four runs on three machines)",
         lambda v: v["rec_sampled_hr10"] >= 0.5 and v["search_sampled_hr10"] >= 0.5),
        ("the loss is the response tokens' cross-entropy", lambda v: v["loss_by_hand_error"] < 1e-4),
        ("the readable beam search returns the fast engine's items", lambda v: v["readable_equals_fast"]),
        ("the generator's law ranks above the model, on both tasks and protocols (a ceiling)", law_above_model),
        ("the world allows issue 10's target: the law's sampled HR@10 (measured 0.938 / 0.964) is far above 0.5",
         lambda v: min(v["law_rec_sampled_hr10"], v["law_search_sampled_hr10"]) >= 0.85),
        *ADAMW_BY_HAND,
    ],
    ("06_identifier_ablation", "small", "Office"): [
        ("counting each query's training targets beats BM25 on search (measured full HR@10 0.578 against 0.220)",
         lambda v: v["query_popularity_search_full_hr10"] > v["bm25_search_full_hr10"] + 0.2),
        ("every test search query was asked in training (measured 100%), which is why counting is a high floor",
         lambda v: v["protocol_test_queries_seen"] >= 0.95 and v["protocol_test_targets_seen_with_query"] >= 0.9),
        ("GenSAR trails the strongest baseline on both tasks beyond two standard errors (measured full HR@10 "
         "-0.034 rec against BM25 + SASRec, -0.081 search against the joint model)",
         lambda v: all(v[f"gensar_minus_best_baseline_{t}_full_hr10"]
                       < -2 * v[f"gensar_minus_best_baseline_{t}_full_hr10_se"] for t in ("rec", "search"))),
    ],
    ("06_identifier_ablation", "small", "synthetic"): [
        ("on the synthetic world BM25 beats counting queries on search (measured full HR@10 0.798 against 0.644)",
         lambda v: v["bm25_search_full_hr10"] > v["query_popularity_search_full_hr10"]),
        ("GenSAR is level with or above the strongest baseline on recommendation, and trails it on search beyond two "
         "standard errors (measured full HR@10 +0.035 ± 0.018 against the joint model, -0.176 ± 0.006 against "
         "BM25 + SASRec)",
         lambda v: v["gensar_minus_best_baseline_rec_full_hr10"] > -2 * v["gensar_minus_best_baseline_rec_full_hr10_se"]
         and v["gensar_minus_best_baseline_search_full_hr10"]
         < -2 * v["gensar_minus_best_baseline_search_full_hr10_se"]),
    ],
    ("05_t5_training", "small", "Office"): [
        ("the small model on Office reaches issue 10's targets (measured sampled 0.358-0.386 / 0.692-0.698, full "
         "0.076 / 0.584-0.604 over three runs on three machines; targets sampled 0.30 on both tasks, full 0.05 / 0.15)",
         lambda v: v["rec_sampled_hr10"] >= 0.30 and v["search_sampled_hr10"] >= 0.30
         and v["rec_full_hr10"] >= 0.05 and v["search_full_hr10"] >= 0.15),
        *ADAMW_BY_HAND,
    ],
}


def _as_on_tiny(notebook: str, leave_out: tuple[str, ...] = ()) -> list:
    """The tiny tier's claims of a notebook, less those (named) whose margins are tiny's only."""
    claims = CLAIMED[(notebook, "tiny", "synthetic")]
    assert set(leave_out) <= {c for c, _ in claims}, leave_out
    return [(c, holds) for c, holds in claims if c not in leave_out]


# the slower tier, small synthetic, notebooks 00-04: set on the values of one run (2026-12-01, 23:23-23:25
# UTC, notebooks 00-04 with GENSAR_PROFILE=small) and checked again on the wider latent (2026-12-02, 02:06 UTC;
# the measured values below are that run's). Each tiny claim holds there except the margins named here,
# which small replaces with its own.
CLAIMED |= {
    ("00_data", "small", "synthetic"): _as_on_tiny("00_data"),
    ("01_embeddings", "small", "synthetic"): _as_on_tiny("01_embeddings", (
        "on the synthetic world, targets are as popular as their negatives or more, so popularity beats random",)) + [
        ("targets are as popular as their negatives or more, so popularity beats random (HR@10 0.10; "
         "measured 0.142)",
         lambda v: v["target_train_count"] >= v["negative_train_count"] and v["popularity_rec_sampled_hr10"] > 0.12),
    ],
    ("02_residual_quantization", "small", "synthetic"): _as_on_tiny("02_residual_quantization", (
        "the suite's first semantic code carries the leaves better than the official training's (0.55 vs 0.40)",
        "a random codebook start uses fewer codes and collides more than k-means (usage 0.36 vs 1.0)")) + [
        ("a random codebook start uses fewer codes and collides more than k-means (measured usage 0.28 vs 0.82)",
         lambda v: v["random_init_usage"] < v["kmeans_init_usage"] - 0.1
         and v["random_init_semantic_collisions"] > v["kmeans_init_semantic_collisions"]),
        ("both rules keep a late epoch on small, and their first semantic codes carry the leaves alike "
         "(measured AMI 0.768 and 0.773)",
         lambda v: min(v["official_kept_epoch"], v["this_suite_kept_epoch"]) > v["epochs"] / 2
         and abs(v["official_ami_semantic_leaf"] - v["this_suite_ami_semantic_leaf"]) < 0.05),
    ],
    ("03_identifiers", "small", "synthetic"): _as_on_tiny("03_identifiers") + [
        ("on small, the semantic-only ID's leaf AMI is above its residual k-means floor (measured 0.902 vs 0.864)",
         lambda v: v["ami_semantic_only_leaf"] > v["ami_semantic_floor_leaf"]),
        ("on small, GenSAR's semantic ID is above residual k-means on the concatenation (measured 0.773 vs 0.765)",
         lambda v: v["ami_gensar_semantic_leaf"] > v["concatenated_floor_gensar_semantic_leaf"]),
    ],
    ("04_instructions", "small", "synthetic"): _as_on_tiny("04_instructions", (
        "the task mix multiplies the available instances (the tiny profile trains all six families)",)) + [
        ("the task mix multiplies the available instances, and the small profile trains only NRIP and NSIP",
         lambda v: v["mix_counts_match"] and v["families_in_training"] == 2),
    ],
}

# tiny on Amazon Office (GENSAR_PROFILE=tiny GENSAR_DATASET=../shared/data/amazon-office, then --claims-from):
# notebook 04's claims are tiny synthetic's; notebook 05's are those that hold whatever the training budget
# (the loss and the two AdamW steps by hand, the readable beam search), checked on a run of 600 steps.
CLAIMED |= {
    ("04_instructions", "tiny", "Office"): _as_on_tiny("04_instructions"),
    ("05_t5_training", "tiny", "Office"): [
        ("the loss is the response tokens' cross-entropy", lambda v: v["loss_by_hand_error"] < 1e-4),
        ("the readable beam search returns the fast engine's items", lambda v: v["readable_equals_fast"]),
        *ADAMW_BY_HAND,
    ],
}


# What the prose of 02 and 03 keeps typed on every dataset: exact arithmetic, or true by construction
# (everything measured that can go either way is printed by the notebooks from the run). Office, both tiers.
DATASET_FREE = {
    "02_residual_quantization": [
        ("the residual norm shrinks with every level, on both embeddings",
         lambda v: all(all(b < a for a, b in zip(n, n[1:])) for n in (v["semantic_residual_norms"],
                                                                       v["collaborative_residual_norms"]))),
        ("the number of distinct code tuples grows with the levels, on both embeddings",
         lambda v: all(all(b >= a for a, b in zip(t, t[1:])) and t[-1] > t[0]
                       for t in (v["semantic_distinct_tuples"], v["collaborative_distinct_tuples"]))),
        ("ResidualQuantizer is the by-hand quantiser, and input = sum of code vectors + residual (float32 rounding)",
         lambda v: v["library_codes_equal"] == 1.0 and v["library_identity_error"] < 1e-5
         and v["library_residual_error"] < 1e-5),
        ("one level names at most K items, and more levels never collide more",
         lambda v: v["sweep_one_level_bound"] and v["sweep_levels_help"]),
    ],
    "03_identifiers": [
        ("handling never adds collisions, and TIGER's extra token removes them all",
         lambda v: all(v[f"{t}_after_paper"] <= v[f"{t}_before"] and v[f"{t}_after_tiger"] == 0 for t in IDENTIFIERS)),
        ("one forward pass of the joint RQ-VAE by hand gives the library's codes on every level, its loss, its "
         "gradients (the codebooks take none) and its EMA codebook update",
         lambda v: v["rqvae_by_hand_codes_equal"] and v["rqvae_by_hand_loss_error"] < 1e-5
         and v["rqvae_by_hand_grad_error"] < 1e-6 and v["rqvae_by_hand_ema_error"] < 1e-5),
        ("shuffled codes score an AMI of about 0 with every label",
         lambda v: len(shuffled := [x for k, x in v.items() if k.startswith("ami_") and k.endswith("_shuffled")]) > 0
         and all(abs(x) < 0.05 for x in shuffled)),
    ],
}
CLAIMED |= {(notebook, tier, "Office"): claims for notebook, claims in DATASET_FREE.items() for tier in ("tiny", "small")}
CLAIMED |= {("00_data", "small", "Office"): OFFICE_00, ("01_embeddings", "small", "Office"): OFFICE_01,
            ("04_instructions", "small", "Office"): CLAIMED[("04_instructions", "small", "synthetic")]}


def _recorded(root: Path) -> list[tuple[str, str, str, dict]]:
    found = []
    for path in sorted(root.glob(f"*/{CLAIMS}")):
        report = json.loads(path.read_text())
        found.append((path.parent.name, report["profile"], report["dataset"], report))
    return found


# every notebook with a claim records it (today: all of them)
RECORDING = {notebook for notebook, _, _ in CLAIMED}


def test_every_notebook_run_recorded_its_claims(claims_root, request):
    """Each recording notebook of this session (all of them with --claims-from) wrote its claims,
    with today's code."""
    ran = RECORDING if request.config.getoption("--claims-from") else RECORDING & request.config.notebooks_run
    recorded = {name: report for name, _, _, report in _recorded(claims_root)}
    missing = sorted(ran - set(recorded))
    assert not missing, f"{claims_root}: no claims from {missing}; run those notebooks first"
    code = code_fingerprint(PACKAGE)
    stale = sorted(name for name in ran if recorded[name]["code"] != code)
    assert not stale, f"{claims_root}: {stale} recorded with other code; run them again"


def test_recorded_claims_hold(claims_root):
    checked, failed = 0, []
    for name, profile, dataset, report in _recorded(claims_root):
        for claim, holds in CLAIMED.get((name, profile, dataset), []):
            checked += 1
            try:
                ok = bool(holds(report["values"]))
            except KeyError as missing:
                ok, claim = False, f"{claim} (no recorded value {missing})"
            if not ok:
                failed.append(f"{name} [{profile}, {dataset}]: {claim}: {report['values']}")
    assert checked, f"{claims_root}: no claim of a known tier was recorded"
    assert not failed, "\n".join(failed)
