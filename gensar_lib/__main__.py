"""Command line: ``python -m gensar_lib <command> --dataset <folder | synthetic> --profile <name>``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gensar_lib.config import ConfigError, load_profile
from gensar_lib.data.schema import DataError


def _stats(args: argparse.Namespace) -> None:
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.data.stats import dataset_stats, format_stats

    prepared = prepare_data(args.dataset, load_profile(args.profile))
    print(format_stats(dataset_stats(prepared.dataset, prepared.split)))


def _identifiers(args: argparse.Namespace) -> None:
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.pipeline import (all_identifiers, collision_table, identifier_structure, item_embeddings,
                                     prefix_structure, structure_targets, write_identifier_files)

    profile = load_profile(args.profile)
    prepared = prepare_data(args.dataset, profile)
    results = all_identifiers(prepared, profile)
    emb = item_embeddings(prepared, profile, progress=False)
    structure = identifier_structure(prepared, emb, results, profile)
    prefixes = prefix_structure(prepared, emb, results, profile)
    for path in write_identifier_files(args.out, results, structure, prefixes):
        print(f"wrote {path}")
    for row in collision_table(results):
        print(f"{row['identifier']:<28} collisions {row['before']:.2%} -> {row['after']:.2%} ({row['strategy']})")
    for row in structure_targets(structure):
        concat = "" if row["floor_concatenated"] is None else f", on the concatenation {row['floor_concatenated']:.3f}"
        print(f"AMI {row['target']:<48} {row['ami']:.3f} (residual k-means floor {row['floor']:.3f}{concat})")
    for kind in results:
        for depth in ("first_code", "shared_prefix"):
            for label, agree in prefixes[kind][depth].items():
                print(f"{kind:<14} {depth:<13} pairs sharing it with the same {label}: "
                      f"{agree['share_same_label']:.1%} vs {agree['random_share_same_label']:.1%} of random pairs "
                      f"(lift {agree['lift']:.1f})")
        nxt = prefixes[kind]["next_item"]
        print(f"{kind:<14} rec. test targets sharing the shared prefix of the last item: {nxt['share']:.1%} "
              f"(chance {nxt['chance']:.1%})")


def _train(args: argparse.Namespace) -> None:
    from gensar_lib.artifacts import write_json
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.pipeline import all_identifiers, eval_subset, evaluate_generative, train_generative

    profile = load_profile(args.profile)
    prepared = prepare_data(args.dataset, profile)
    ids = all_identifiers(prepared, profile, kinds=("gensar",))["gensar"].ids
    gen = train_generative(prepared, ids, profile)
    cases, candidates = eval_subset(prepared.split.test, prepared.candidates["test"],
                                    profile.eval.max_eval_users, profile.seed)
    metrics = evaluate_generative(gen, cases, candidates, profile)
    report = {"dataset": prepared.dataset.name, "profile": profile.name, "test_cases": len(cases),
              "metrics": metrics, "training": gen.history}
    print(f"wrote {write_json(Path(args.out) / 'metrics.json', report)}")
    for task, by_protocol in metrics.items():
        for protocol, row in by_protocol.items():
            print(f"{task:<6} {protocol:<8} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))


def _ablation(args: argparse.Namespace) -> None:
    from gensar_lib.ablation import paper_table, run_ablation, write_ablation
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.plots import use_style

    use_style()  # the notebooks' plotting style for the figure files

    profile = load_profile(args.profile)
    prepared = prepare_data(args.dataset, profile)
    methods = tuple(args.methods.split(",")) if args.methods else None
    result = run_ablation(prepared, profile, args.seeds, methods, all_seeds=args.all_seeds)
    for path in write_ablation(args.out, result):
        print(f"wrote {path}")
    print(paper_table(result.runs).to_string())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gensar_lib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="print dataset statistics and split sizes")
    stats.set_defaults(run=_stats)
    idents = sub.add_parser("identifiers", help="write identifiers.json and identifier_stats.json")
    idents.set_defaults(run=_identifiers)
    idents.add_argument("--out", required=True, help="output folder")
    trainer = sub.add_parser("train", help="identifiers, instructions, T5 training and evaluation -> metrics.json")
    trainer.set_defaults(run=_train)
    trainer.add_argument("--out", required=True, help="output folder")
    ablation = sub.add_parser("ablation", help="identifier variants, single-task models and baselines "
                                               "-> ablation.json and the figures")
    ablation.set_defaults(run=_ablation)
    ablation.add_argument("--out", required=True, help="output folder")
    ablation.add_argument("--seeds", type=int, default=1,
                          help="seeds of the headline methods (the others run profile.ablation.other_seeds)")
    ablation.add_argument("--all-seeds", action="store_true", help="run every method for every seed")
    ablation.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    for command in (stats, idents, trainer, ablation):
        command.add_argument("--dataset", default=None, help="'synthetic' (default) or a dataset folder")
        command.add_argument("--profile", default=None, help="tiny | small | paper (default: small)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
