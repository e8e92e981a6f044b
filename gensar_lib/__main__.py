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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gensar_lib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="print dataset statistics and split sizes")
    stats.set_defaults(run=_stats)
    for command in (stats,):
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
