"""Command line: ``python -m gensar_lib <command> --dataset <folder | synthetic> --profile <name>``."""
from __future__ import annotations

import argparse
import sys

from gensar_lib.config import ConfigError, load_profile
from gensar_lib.data.schema import DataError


def _stats(args: argparse.Namespace) -> None:
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.data.stats import dataset_stats, format_stats

    prepared = prepare_data(args.dataset, load_profile(args.profile))
    print(format_stats(dataset_stats(prepared.dataset, prepared.split)))


def _identifiers(args: argparse.Namespace) -> None:
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.pipeline import all_identifiers, collision_table, write_identifier_files

    profile = load_profile(args.profile)
    results = all_identifiers(prepare_data(args.dataset, profile), profile)
    for path in write_identifier_files(args.out, results):
        print(f"wrote {path}")
    for row in collision_table(results):
        print(f"{row['identifier']:<28} collisions {row['before']:.2%} -> {row['after']:.2%} ({row['strategy']})")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gensar_lib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="print dataset statistics and split sizes")
    stats.set_defaults(run=_stats)
    idents = sub.add_parser("identifiers", help="write identifiers.json and identifier_stats.json")
    idents.set_defaults(run=_identifiers)
    idents.add_argument("--out", required=True, help="output folder")
    for command in (stats, idents):
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
