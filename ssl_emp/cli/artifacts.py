"""The ``ssl-emp`` sub-commands that make and read artefacts around runs: ``prepare`` (a
store of the data), ``export`` (the encoder as a portable file) and ``inspect`` (what the
pruner kept)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_emp.config import load_config
from ssl_emp.errors import UserInputError


def add_commands(
    commands: argparse._SubParsersAction,
    formatter: type[argparse.HelpFormatter],
    config_help: str,
) -> None:
    """Add the ``prepare``, ``export`` and ``inspect`` parsers, each with its handler."""
    prepare = commands.add_parser(
        "prepare",
        help="write a store (raw or jpeg) that training streams from, for large datasets",
        description="Write the train and test splits of the config's data source (any source; "
        "subsets, label noise and junk are applied later, at training) into a store directory: "
        "raw = fixed-size uint8 images in one memory-mapped array, jpeg = encoded bytes in one "
        "file plus offsets. Image folders are read streaming and decoded in parallel. The store "
        "appears only when complete. Train from it with data.source=store data.root=DIR.",
        epilog=config_help,
        formatter_class=formatter,
    )
    prepare.add_argument("-c", "--config", required=True, help="YAML config whose data to store")
    prepare.add_argument("--out", required=True, metavar="DIR", help="the store directory")
    prepare.add_argument("--format", choices=("raw", "jpeg"), default="raw", dest="store_format")
    prepare.add_argument(
        "--image-size", type=int, default=None, help="side length to store (default: the source's)"
    )
    prepare.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    prepare.add_argument("--threads", type=int, default=4, help="parallel decoders for folders")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing store")
    prepare.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")

    export = commands.add_parser(
        "export",
        help="write a run's trained backbone as a plain state_dict file",
        description="Write the backbone of a run's newest checkpoint as a plain state_dict "
        "(torch.save for a .pt or .pth name, safetensors for a .safetensors name; other names "
        "are refused), with a small metadata entry "
        "naming its architecture and preprocessing. torchvision's resnet18()/resnet50() with "
        "fc = nn.Identity() load it with strict=True (standard stem, 3 channels); "
        "ssl_emp.load_backbone(FILE) rebuilds any backbone from the file alone.",
        formatter_class=formatter,
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a pretraining or supervised run")
    export.add_argument(
        "--out", required=True, metavar="FILE", help="the file to write: .pt, .pth or .safetensors"
    )
    export.add_argument(
        "--head",
        action="store_true",
        help="also store the projection head (the classifier for supervised runs) under head.",
    )

    inspect = commands.add_parser(
        "inspect",
        help="PNG grids of the samples a run trained most/least and scored highest/lowest",
        description="For a finished run, write PNG grids of its real training images: the "
        "samples trained most and least often and those with the highest and lowest score and "
        "memory term at the end (captions: index, label and class name, the value the grid is "
        "sorted by, visits; ties in random order, --seed; flipped-label and junk samples in "
        "red), plus the training-count histogram, into RUN_DIR/inspect/. On runs "
        "with data.label_noise or data.junk_fraction it prints the precision at k of each "
        "signal (score, loss, memory): the share of the k most extreme samples that are the "
        "flipped (junk) ones, next to chance.",
        formatter_class=formatter,
    )
    inspect.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    inspect.add_argument("--out", default=None, help="output directory (default RUN_DIR/inspect)")
    inspect.add_argument(
        "--csv",
        action="store_true",
        help="also write samples.csv: every sample's index, label, class name, visits, score, "
        "memory term and loss (and flipped/junk flags) and image file (image folders and "
        "stores prepared from them), highest score first",
    )
    inspect.add_argument(
        "--k", type=int, default=None, help="k of precision at k (default: the flagged count)"
    )
    inspect.add_argument(
        "--samples", type=int, default=32, help="images per grid (default: %(default)s)"
    )
    inspect.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random order of samples that tie (default: the run's seed)",
    )
    prepare.set_defaults(handler=run_prepare)
    export.set_defaults(handler=run_export)
    inspect.set_defaults(handler=run_inspect)


def run_prepare(args: argparse.Namespace) -> None:
    """``ssl-emp prepare``: write a store of the config's data."""
    import time

    from ssl_emp.data.prepare import prepare_store

    config = load_config(args.config, args.overrides)
    if args.image_size is not None and args.image_size < 8:
        raise UserInputError(f"--image-size must be at least 8, got {args.image_size}")
    started = time.perf_counter()
    manifest = prepare_store(
        config.data,
        seed=config.seed,
        out=args.out,
        fmt=args.store_format,
        image_size=args.image_size,
        quality=args.quality,
        threads=max(1, args.threads),
        overwrite=args.overwrite,
    )
    size = sum(path.stat().st_size for path in Path(args.out).iterdir())
    print(
        f"wrote a {manifest.format} store of {config.data.source} to {args.out}: "
        f"{manifest.counts['train']} train + {manifest.counts['test']} test images, "
        f"{manifest.channels}x{manifest.image_size}x{manifest.image_size}, "
        f"{size / 2**20:.1f} MiB, {time.perf_counter() - started:.1f} s; train from it with "
        f"data.source=store data.root={args.out}"
    )


def run_export(args: argparse.Namespace) -> None:
    """``ssl-emp export``: a run's backbone as a portable file."""
    from ssl_emp.experiments.export import export_run

    written = export_run(args.run_dir, args.out, head=args.head)
    head = " and its head" if written["head"] else ""
    print(
        f"exported the {written['backbone']} backbone{head} of {args.run_dir} (epoch "
        f"{written['epoch']}/{written['epochs']}, {written['feature_dim']}-d features) "
        f"-> {args.out}; load it with ssl_emp.load_backbone('{args.out}')"
    )


def run_inspect(args: argparse.Namespace) -> None:
    """``ssl-emp inspect``: image grids (and samples.csv) of what the pruner kept."""
    from ssl_emp.experiments.inspect_run import inspect_run, precision_table

    if args.samples < 1 or (args.k is not None and args.k < 1):
        raise UserInputError("--samples and --k must be at least 1")
    found = inspect_run(
        args.run_dir,
        out=args.out,
        write_csv=args.csv,
        k=args.k,
        samples=args.samples,
        seed=args.seed,
    )
    folder = found.files[0].parent
    print(f"wrote {len(found.files)} files to {folder}: {', '.join(p.name for p in found.files)}")
    if found.precision:
        print("how well each signal finds the known-bad samples:")
        print("\n".join(precision_table(found.precision)))
