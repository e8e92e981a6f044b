"""Command line: ``python -m gensar_lib <command> --dataset <folder | synthetic> --profile <name>``;
``python -m gensar_lib fetch office`` downloads the Amazon Office data."""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import warnings
from pathlib import Path

from gensar_lib.artifacts import CacheWarning, DamagedEntry, check_out_dir, sigterm_as_exit
from gensar_lib.config import ConfigError, Profile, load_profile, parse_override, with_overrides
from gensar_lib.data.schema import DataError, DataWarning


def _profile(args: argparse.Namespace) -> Profile:
    """``--profile`` with its ``--set section.field=value`` overrides (recorded in run provenance as the command)."""
    return with_overrides(load_profile(args.profile), dict(parse_override(text) for text in args.set))


def _stats(args: argparse.Namespace) -> None:
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.data.stats import dataset_stats, format_stats

    prepared = prepare_data(args.dataset, _profile(args))
    print(format_stats(dataset_stats(prepared.dataset, prepared.split)))


def _identifiers(args: argparse.Namespace) -> None:
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.rqvae import all_identifiers, collision_table, item_embeddings, write_identifier_files
    from gensar_lib.structure import identifier_structure, prefix_structure, structure_targets

    profile = _profile(args)
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
    """metrics.json (the same for the same seed and profile) and run.json (timings and provenance).

    Under ``torchrun --nproc_per_node N`` or ``accelerate launch`` the T5 trains data-parallel and
    evaluation is sharded over the N processes; only the main one writes and prints the results."""
    from gensar_lib.artifacts import write_json
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.devices import processes, resolve_device
    from gensar_lib.evaluation import evaluate_generative, held_out
    from gensar_lib.rqvae import all_identifiers
    from gensar_lib.t5.stage import train_generative
    from gensar_lib.t5.train import TIMING_KEYS

    profile = _profile(args)
    prepared = prepare_data(args.dataset, profile)
    gensar = all_identifiers(prepared, profile, kinds=("gensar",))["gensar"]
    gen = train_generative(prepared, gensar.ids, profile, vectors=gensar.vectors)
    cases, candidates = held_out(prepared, profile)
    metrics = evaluate_generative(gen, cases, candidates, profile)
    device, state = resolve_device(profile.device), processes()
    if state is not None and not state.is_main_process:
        return
    ranks = 1 if state is None else state.num_processes
    print(f"ran with {ranks} rank(s) on {device}"
          + ("" if state is None else f" ({state.distributed_type.value}, backend {state.backend}): data-parallel "
                                      "T5 training (unless the stage was cached) and sharded evaluation"))
    report = {"dataset": prepared.dataset.name, "profile": profile.name, **({"set": args.set} if args.set else {}),
              "test_cases": len(cases),
              "metrics": metrics, "training": [{k: v for k, v in h.items() if k not in TIMING_KEYS}
                                               for h in gen.history]}
    print(f"wrote {write_json(Path(args.out) / 'metrics.json', report)}")
    seconds = gen.history[-1]["train_seconds"] if gen.history else 0.0
    run = provenance(args.argv) | {"train_seconds": seconds, "t5_folder": str(gen.folder), "ranks": ranks,
                                  "device": str(device),
                                  "timings": [{k: h.get(k) for k in ("round", "step", *TIMING_KEYS)}
                                              for h in gen.history]}
    print(f"wrote {write_json(Path(args.out) / 'run.json', run)} (training took {seconds / 60:.1f} min)")
    for task, by_protocol in metrics.items():
        for protocol, row in by_protocol.items():
            print(f"{task:<6} {protocol:<8} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))


def provenance(argv: list[str]) -> dict:
    """Command (``argv``: the arguments after the program name), date, machine, load and code
    fingerprint of a run (the results JSON keep them)."""
    import os
    import platform
    from datetime import datetime, timezone

    import torch

    from gensar_lib.artifacts import code_fingerprint
    from gensar_lib.devices import machine_kind

    return {"command": "python -m gensar_lib " + " ".join(argv),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M %Z"),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
            "cpu": machine_kind()["cpu"],
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
            "code": code_fingerprint(Path(__file__).parent)}


def _ablation(args: argparse.Namespace) -> None:
    from gensar_lib.ablation import run_ablation
    from gensar_lib.results import AblationResult, committed_path, extend, read_results, write_ablation
    from gensar_lib.tables import paper_table
    from gensar_lib.artifacts import write_json
    from gensar_lib.config import fingerprint
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.plots import use_style

    use_style()  # the notebooks' plotting style for the figure files

    profile = _profile(args)
    prepared = prepare_data(args.dataset, profile)
    earlier = (read_results(args.extend, profile, prepared.dataset.name)
               if args.extend and args.extend.exists() else None)
    from gensar_lib.devices import is_main_process

    def write_extended(made: AblationResult) -> AblationResult:  # --extend FILE: FILE's runs and those made now
        merged = extend(earlier, made)
        write_json(args.extend, merged.as_dict())
        return merged

    def save(runs: list[dict]) -> None:  # the file holds every finished run, even if this command stops
        if args.extend and is_main_process():
            write_extended(AblationResult(prepared.dataset.name, profile.name, runs, profile_key=fingerprint(profile),
                                          provenance=provenance(args.argv)))

    result = run_ablation(prepared, profile, args.seeds, _methods(args), all_seeds=args.all_seeds, done=earlier,
                          on_run=save)
    if not is_main_process():  # under a launcher every process trained; the main one writes
        return
    result.provenance = provenance(args.argv)
    if args.extend:
        result = write_extended(result)
        print(f"wrote {args.extend} ({len(result.runs)} runs)")
    for path in write_ablation(args.out, result):
        print(f"wrote {path}")
    if args.commit:
        print(f"wrote {write_json(committed_path(result.dataset, profile.name), result.as_dict())} "
              "(the committed results notebook 06 loads)")
    print(paper_table(result.runs).to_string())


def _predict(args: argparse.Namespace) -> None:
    """The trained model's top items for one user: recommendations, or search results for ``--query``."""
    from gensar_lib.data.pipeline import prepare_data
    from gensar_lib.evaluation import prompt_for, recommend, search
    from gensar_lib.rqvae import all_identifiers
    from gensar_lib.t5.stage import train_generative

    profile = _profile(args)
    prepared = prepare_data(args.dataset, profile)
    ds = prepared.dataset
    if args.user not in ds.users:
        raise ConfigError(f"--user {args.user!r}: no such user in dataset {ds.name!r} "
                          f"({len(ds.users)} users, e.g. {ds.users[0]!r})")
    history = ds.sequences[ds.users.index(args.user)]
    gensar = all_identifiers(prepared, profile, kinds=("gensar",))["gensar"]
    gen = train_generative(prepared, gensar.ids, profile, vectors=gensar.vectors)
    query = None if args.query is None else args.query.strip()
    prompt = prompt_for(gen, history, profile, query)
    items = (recommend(gen, history, profile, args.k) if query is None
             else search(gen, history, query, profile, args.k))
    what = "recommendations" if query is None else f"search {query!r}"
    print(f"user {args.user} ({len(history)} events), {what}:")
    if prompt.truncated:
        print(f"(the prompt has {prompt.tokens} tokens: its first {prompt.tokens - prompt.kept} were cut to fit "
              f"train.max_source_length = {profile.train.max_source_length}, as in training)")
    for rank, item in enumerate(items, 1):
        print(f"{rank:>3}. {ds.items[item].id}  {ds.items[item].title[:80]}")


def _fetch(args: argparse.Namespace) -> None:
    """A pinned dataset, or the file at ``--url`` with its ``--sha256``, downloaded into ``--out`` and verified."""
    from gensar_lib.fetch import Remote, check_url, fetch_dataset, fetch_file

    if args.url is None:
        fetched = fetch_dataset(args.name, args.out, progress=None)
    else:
        fetched = [fetch_file(Remote(check_url(args.url), args.url, args.sha256), args.out, progress=None)]
    for item in fetched:
        print(f"{item.path}: {'downloaded' if item.downloaded else 'already there'}, sha256 ok")
    if args.url is None:
        print("Use it with:")
        print(f"GENSAR_DATASET={shlex.quote(str(Path(args.out).resolve()))}")


def _check_fetch(args: argparse.Namespace) -> None:
    """``fetch``: a dataset name, or ``--url`` with ``--sha256`` and ``--out``; ``--out`` is created."""
    from gensar_lib.fetch import check_sha256, check_url, default_folder, pinned

    if args.url is None:
        if args.name is None:
            raise ConfigError("fetch needs a dataset name (office) or --url URL --sha256 SUM --out FOLDER")
        pinned(args.name)
        if args.sha256 is not None:
            raise ConfigError("--sha256 goes with --url; a named dataset's sums are pinned")
        if args.out is None:
            args.out = default_folder(args.name)
    else:
        if args.name is not None:
            raise ConfigError(f"give either a dataset name ({args.name!r}) or --url, not both")
        if args.sha256 is None:
            raise ConfigError(f"--url {args.url!r} needs --sha256 SUM: the file's SHA-256 is what makes the "
                              "download safe")
        if args.out is None:
            raise ConfigError("--url needs --out FOLDER")
        check_url(args.url)
        args.sha256 = check_sha256(args.sha256)
    try:
        check_out_dir(args.out)
    except OSError as err:
        raise ConfigError(f"--out {_os_message(err)}") from None


def _cache(args: argparse.Namespace) -> int:
    """``cache verify``: every entry against its manifest, and the orphans; exit 1 when something is damaged
    or orphaned. ``cache clean``: remove the damaged entries and the orphans."""
    from gensar_lib.artifacts import clean_cache, verify_cache
    from gensar_lib.config import cache_dir

    root = Path(args.cache).expanduser() if args.cache else cache_dir()
    if not root.is_dir():
        raise ConfigError(f"--cache {root}: no such cache folder")
    if args.action == "clean":
        removed, skipped = clean_cache(root)
        for path in removed:
            print(f"removed {path}")
        for path in skipped:
            print(f"skipped {path} (in use by another process)")
        print(f"{root}: removed {len(removed)}, skipped {len(skipped)}")
        return 0
    checked, damaged, orphans = verify_cache(root)
    for _, problem in damaged:
        print(f"damaged {problem}")
    for path in orphans:
        print(f"orphan {path}")
    print(f"{root}: {checked} entries checked, {len(damaged)} damaged, {len(orphans)} orphaned"
          + (" (python -m gensar_lib cache clean removes them)" if damaged or orphans else ""))
    return 1 if damaged or orphans else 0


def _results(args: argparse.Namespace) -> None:
    """The committed ablation results as Markdown tables; ``--readme`` writes them into README.md."""
    from gensar_lib import results

    tables = results.results_markdown()
    if args.readme:
        print(f"wrote {results.write_readme(tables, results.README)}")
    else:
        print(tables, end="")


def _methods(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The ``--methods`` names (None: the profile's), each a known ablation method."""
    if args.methods is None:
        return None
    from gensar_lib.ablation_run import check_methods

    names = tuple(m.strip() for m in args.methods.split(","))
    if not any(names):
        raise ConfigError("--methods is empty; leave it out for every method, or name some")
    return check_methods(names)


def check_arguments(args: argparse.Namespace) -> None:
    """Everything about the arguments that can fail, checked before any work; ``--out`` is created."""
    if args.command == "fetch":
        _check_fetch(args)
        return
    if args.command == "cache":
        return
    if args.command == "results":
        if args.readme:  # a README without its markers fails before any work
            from gensar_lib import results

            results.readme_block(results.README.read_text(encoding="utf-8"), results.README)
        return
    for flag in ("profile", "dataset"):
        if getattr(args, flag) == "":
            raise ConfigError(f"--{flag} is empty; leave it out for the default, or name one")
    from gensar_lib.devices import resolve_device

    profile = _profile(args)  # every profile value is checked here (config.check_profile)
    resolve_device(profile.device)  # an unusable device fails before any work
    if getattr(args, "seeds", 1) < 1:
        raise ConfigError(f"--seeds {args.seeds} is impossible: need at least 1")
    if getattr(args, "k", 1) < 1:
        raise ConfigError(f"--k {args.k} is impossible: need at least 1")
    if getattr(args, "k", 1) > profile.eval.beam_size:
        raise ConfigError(f"--k {args.k} is more than the beam keeps (eval.beam_size = {profile.eval.beam_size}); "
                          f"ask for fewer items, or widen the beam with --set eval.beam_size={args.k}")
    if getattr(args, "query", None) is not None and not args.query.strip():
        raise ConfigError(f"--query {args.query!r} is empty; leave it out to recommend, or give search words")
    if getattr(args, "methods", None) is not None:
        _methods(args)
    if getattr(args, "extend", None) is not None and args.extend.exists():  # another recipe's results fail now
        from gensar_lib.results import read_results

        read_results(args.extend, _profile(args))
    if getattr(args, "out", None) is not None:
        try:
            check_out_dir(args.out)
        except OSError as err:
            raise ConfigError(f"--out {_os_message(err)}") from None


def _os_message(err: OSError) -> str:
    """``<path>: <reason>`` of an operating-system error, or its text when it names no path."""
    if err.filename is None:
        return str(err)
    where = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
    return f"{where}: {err.strerror or err}"


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """Data warnings as one ``warning: ...`` line on stderr; the others as Python prints them."""
    if issubclass(category, (DataWarning, CacheWarning)):
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


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
    ablation.add_argument("--commit", action="store_true",
                          help="also write the results to figures/06_identifier_ablation/"
                               "ablation_<dataset>_<profile>.json, which notebook 06 loads")
    ablation.add_argument("--extend", type=Path, default=None,
                          help="a results JSON of this dataset and profile (and --set values) to complete: its "
                               "runs are kept, only the missing (method, seed) runs are trained, and the "
                               "merged results are written back to it (created when absent)")
    predict = sub.add_parser("predict", help="the trained model's recommendations (or search results) for a user")
    predict.set_defaults(run=_predict)
    predict.add_argument("--user", required=True, help="a user id of the dataset")
    predict.add_argument("--query", default=None, help="a search query (default: recommend)")
    predict.add_argument("--k", type=int, default=10, help="how many items (at most eval.beam_size)")
    fetch = sub.add_parser("fetch", help="download a public dataset and verify its pinned SHA-256 sums")
    fetch.set_defaults(run=_fetch)
    fetch.add_argument("name", nargs="?", default=None, help="the dataset: office (Amazon Office, LC-Rec layout)")
    fetch.add_argument("--out", type=Path, default=None,
                       help="output folder (default for office: data/amazon-office in the repository)")
    fetch.add_argument("--url", default=None, help="instead of a dataset: one file's http(s) address")
    fetch.add_argument("--sha256", default=None, help="the SHA-256 sum the file at --url must have")
    cache = sub.add_parser("cache", help="check every cache entry against its manifest (verify), or remove the "
                                         "damaged and orphaned ones (clean)")
    cache.set_defaults(run=_cache)
    cache.add_argument("action", choices=("verify", "clean"),
                       help="verify: report, exit 1 when something is damaged or orphaned; clean: remove those")
    cache.add_argument("--cache", default=None, help="the cache folder (default: $GENSAR_CACHE or data/cache)")
    results = sub.add_parser("results", help="the committed ablation results as Markdown tables, one per dataset")
    results.set_defaults(run=_results)
    results.add_argument("--readme", action="store_true",
                         help="write them into README.md between its results markers instead of printing them")
    for command in (stats, idents, trainer, ablation, predict):
        command.add_argument("--dataset", default=None, help="'synthetic' (default) or a dataset folder")
        command.add_argument("--profile", default=None, help="tiny | small | paper (default: small)")
        command.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                             help="override one profile value (JSON, e.g. train.lr=6e-3); repeatable")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv  # provenance records the command as given
    try:
        with sigterm_as_exit(), warnings.catch_warnings():
            warnings.showwarning = _show_warning  # SIGTERM ends like Ctrl-C: finally blocks remove temporary folders
            check_arguments(args)
            code = args.run(args)
    except (DataError, ConfigError, DamagedEntry) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {_os_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
