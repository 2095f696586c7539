"""The bank's neighbour search at scale: exact vs approximate (faiss IVF), on learned features.

1. Features: the trained backbone of RUN embeds every training image twice (two augmented
   views, eval mode, no grad), exactly what the bank holds after a refresh; cached in
   ``--cache`` (.npz) because embedding 60k images takes minutes on a CPU.
2. Faithfulness at the largest real N: memory terms from the IVF search against exact search
   (Spearman rank correlation), recall@k of the neighbours, and the share of the EMP-selected
   set at rate 0.7 that changes (score = z(loss) + beta z(memory), with the run's last losses
   from scores.npz when it has them, else the memory term alone).
3. Cost, measured side by side in one run: the bank pass (frame, search, entropy) exact and IVF
   at several N (subsets of the real rows, and beyond them replicated rows with jitter), as a
   share of a full-data epoch at that N (epoch time = N / the training images/s measured here).

    python tools/bench_bank.py RUN                          # N = 15k, 30k, 60k (what RUN has)
    python tools/bench_bank.py RUN --sizes 15000,60000,240000,1280000 --exact-max 60000
    python tools/bench_bank.py RUN --quick                  # small N, for a smoke test

Among the output, the lines ``bank pass at N=...: P % of a full epoch``,
``memory-term rank correlation with exact search: R``, ``per-sample pass cost at N=...: Rx that
at N=...`` (sizes beyond the real rows against the real N), the compact-vs-views agreement and,
beyond ``--exact-max``, a recall@k on sampled rows against exact search.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ssl_emp.config import Config, config_from_dict
from ssl_emp.data import ImageData, build_datasets, index_batches
from ssl_emp.engine.checkpoint import load_latest_checkpoint
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.experiments.train import build_trainer
from ssl_emp.methods import build_method
from ssl_emp.neighbours import IvfSearch, search
from ssl_emp.pruning.memory_bank import BankMemory, choose_bank_layout

EXACT_BELOW = 20000  # memory.exact_below's default: where auto switches search and layout


def embed_two_views(config: Config, train: ImageData, batch_size: int = 512) -> np.ndarray:
    """(N, 2, D) features of two augmented views of every training image (float16)."""
    run = RunDirectory(config.run.dir)
    found = load_latest_checkpoint(run.checkpoint_dir)
    if found is None:
        raise SystemExit(f"{run.path} has no checkpoint")
    model = build_method(config, train)
    model.load_state_dict(found[1]["model"])
    model.eval()
    torch.manual_seed(0)
    chunks = []
    with torch.no_grad():
        for indices in index_batches(torch.arange(len(train)), batch_size):
            views = model.embed(train.images[indices], layer=config.memory.layer)
            chunks.append(views.transpose(0, 1).half().numpy())
    return np.concatenate(chunks)


def replicate(views: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """``size`` rows: the real ones, then copies with small Gaussian jitter (so no duplicates)."""
    if size <= len(views):
        return views[:size]
    generator = np.random.default_rng(seed)
    extra = views[generator.integers(0, len(views), size - len(views))].astype(np.float32)
    scale = 0.05 * float(np.std(views.astype(np.float32)))
    extra += generator.normal(scale=scale, size=extra.shape).astype(np.float32)
    return np.concatenate([views, extra.astype(np.float16)])


def bank_pass(
    views: np.ndarray, mode: str, probe: int, cell_size: int, k: int, layout: str
) -> tuple[np.ndarray, np.ndarray, float, BankMemory]:
    """(memory, neighbours, seconds, bank) of one bank pass over ``views`` (N, 2, D).

    The rows are written in shuffled batches of 256, as training writes them (the compact
    layout centres each write by its running mean view); only the pass is timed.
    """
    bank = BankMemory(
        len(views),
        views.shape[-1],
        tau=0.1,
        k=k,
        search_mode=mode,
        ivf=IvfSearch(cell_size=cell_size, probe=probe),
        layout=choose_bank_layout(layout, len(views), EXACT_BELOW),
    )
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(views)))
    for indices in index_batches(order, 256):
        bank.write(indices, torch.from_numpy(views[indices.numpy()]).transpose(0, 1))
    started = time.perf_counter()
    memory, _ = bank.compute()
    elapsed = time.perf_counter() - started
    assert bank.last_neighbours is not None
    return memory.numpy(), bank.last_neighbours.cpu().numpy(), elapsed, bank


def sampled_recall(bank: BankMemory, neighbours: np.ndarray, k: int, queries: int = 2000) -> float:
    """Recall@k of a pass's neighbours against exact search, for ``queries`` sampled rows
    (exact search of every row is what a large N cannot afford)."""
    rows = torch.arange(len(neighbours))
    _, representatives = bank.frame(rows)
    chosen = np.sort(np.random.default_rng(1).choice(len(rows), queries, replace=False))
    _, exact = search(representatives, representatives[chosen], k + 1)
    exact_without_self = [
        [n for n in row if n != query][:k]
        for query, row in zip(chosen.tolist(), exact.tolist(), strict=True)
    ]
    return recall_at_k(np.array(exact_without_self), neighbours[chosen])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by position; the terms are continuous)."""
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def recall_at_k(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Mean share of each row's exact neighbours (self excluded) that the approximate search
    found."""
    hits = [
        len(set(e.tolist()) & set(a.tolist())) / len(e)
        for e, a in zip(exact, approximate, strict=True)
    ]
    return float(np.mean(hits))


def zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / max(float(values.std()), 1e-12)


def selection_change(memory_a: np.ndarray, memory_b: np.ndarray, loss: np.ndarray | None) -> float:
    """Share of the top-30 % EMP selection (rate 0.7) that differs between two memory terms."""
    keep = int(0.3 * len(memory_a))
    base = zscore(loss) if loss is not None else 0.0
    chosen_a = set(np.argsort(-(base + zscore(memory_a)))[:keep].tolist())
    chosen_b = set(np.argsort(-(base + zscore(memory_b)))[:keep].tolist())
    return 1.0 - len(chosen_a & chosen_b) / keep


def images_per_second(config: Config, train: ImageData, steps: int) -> float:
    """Training throughput of a full-data SimCLR step of RUN's model, measured here."""
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        probe_config = config_from_dict(
            config.to_dict(),
            [f"run.dir={workdir}/r", "run.overwrite=true", "pruning.policy=full", "train.epochs=1"],
        )
        trainer = build_trainer(probe_config, train_data=train)
        batch = probe_config.train.batch_size
        from ssl_emp.data import GlobalBatch

        batches = index_batches(torch.arange(min(len(train), batch * (steps + 1))), batch)
        trainer.train_step(GlobalBatch.shard(batches[0], 0, 1), progress=0.0)  # warm-up
        started = time.perf_counter()
        for indices in batches[1 : steps + 1]:
            trainer.train_step(GlobalBatch.shard(indices, 0, 1), progress=0.0)
        trainer.run.release()
        return batch * steps / (time.perf_counter() - started)


def plot_curve(curve: list[tuple[int, float, float]], path: Path) -> None:
    """The bank pass as a share of a full epoch against N, exact and IVF (log x axis)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.6))
    axis = figure.subplots()
    sizes = [size for size, _, _ in curve]
    exact = [(size, value) for size, value, _ in curve if np.isfinite(value)]
    axis.plot(*zip(*exact, strict=True), "o-", label="exact (faiss flat)")
    axis.plot(sizes, [value for _, _, value in curve], "s-", label="IVF, 8 of N/256 cells")
    axis.axhline(2.0, color="gray", linestyle=":", label="target at 60k: 2 %")
    axis.set_xscale("log")
    axis.set_xlabel("samples in the bank (N)")
    axis.set_ylabel("bank pass, % of a full epoch")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished SSL run (its backbone gives the features)")
    parser.add_argument("--sizes", default="15000,30000,60000")
    parser.add_argument("--exact-max", type=int, default=60000, help="largest N searched exactly")
    parser.add_argument("--probe", type=int, default=8)
    parser.add_argument("--cell-size", type=int, default=256)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="training steps for images/s")
    parser.add_argument("--cache", default=None, help=".npz to keep the embedded features in")
    parser.add_argument("--plot", default=None, help="PNG of the pass cost against N")
    parser.add_argument(
        "--quick", action="store_true", help="N = 500, 1000 (exact too), 2000; 3 steps"
    )
    parser.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "views", "compact"],
        help="bank layout (auto: views below 20,000 rows, compact from there, as in training)",
    )
    parser.add_argument(
        "--whole-split",
        action="store_true",
        help="embed every training image (e.g. all 60,000 of Fashion-MNIST) with the run's "
        "backbone, not only the subset it trained on",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.steps, args.cell_size, args.exact_max = "500,1000,2000", 3, 32, 1000
    run = RunDirectory(args.run)
    config = run.load_config()
    if args.whole_split:  # every training image, not just the run's subset
        config = config_from_dict(config.to_dict(), ["data.subset=null"])
    train, _ = build_datasets(config.data, seed=config.seed, image_size=config.augment.image_size)
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        views = np.load(cache)["views"]
    else:
        started = time.perf_counter()
        views = embed_two_views(config, train)
        print(f"embedded {len(views)} images x 2 views in {time.perf_counter() - started:.1f} s")
        if cache:
            np.savez(cache, views=views)
    loss = None
    if run.scores_path.is_file():
        loss = np.load(run.scores_path)["loss"]
        loss = np.where(np.isfinite(loss), loss, np.nanmedian(loss))
    speed = images_per_second(config, train, args.steps)
    print(f"training throughput (full-data step, {config.model.backbone}): {speed:.0f} img/s")
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"{'N':>9} {'epoch s':>9} {'exact s':>9} {'ivf s':>8} {'exact %':>8} {'ivf %':>7} "
        f"{'speed-up':>9} {'cells':>6} {'us/sample':>10} {'layout':>8} {'bank MB':>8}"
    )
    results = {}
    per_sample: dict[int, float] = {}
    curve: list[tuple[int, float, float]] = []
    largest: tuple[int, BankMemory, np.ndarray] | None = None
    for size in sizes:
        rows = replicate(views, size)
        epoch_s = size / speed
        ivf_memory, ivf_neighbours, ivf_s, bank = bank_pass(
            rows, "ivf", args.probe, args.cell_size, args.k, args.layout
        )
        largest = (size, bank, ivf_neighbours)
        exact_s = float("nan")
        if size <= args.exact_max:
            exact_memory, exact_neighbours, exact_s, _ = bank_pass(
                rows, "exact", args.probe, args.cell_size, args.k, args.layout
            )
            results[size] = (exact_memory, exact_neighbours, ivf_memory, ivf_neighbours)
        cells = IvfSearch(cell_size=args.cell_size).cells_for(size)
        per_sample[size] = 1e6 * ivf_s / size
        print(
            f"{size:>9} {epoch_s:>9.1f} {exact_s:>9.2f} {ivf_s:>8.2f} "
            f"{100 * exact_s / epoch_s:>7.2f}% {100 * ivf_s / epoch_s:>6.2f}% "
            f"{exact_s / ivf_s:>8.2f}x {cells:>6} {per_sample[size]:>10.1f} {bank.layout:>8} "
            f"{bank.nbytes() / 1e6:>8.1f}",
            flush=True,
        )
        curve.append((size, 100 * exact_s / epoch_s, 100 * ivf_s / epoch_s))
        print(
            f"bank pass at N={size}: {100 * ivf_s / epoch_s:.2f} % of a full epoch "
            f"(approximate; exact {100 * exact_s / epoch_s:.2f} %)"
        )
    if args.plot:
        plot_curve(curve, Path(args.plot))
    if len(views) in per_sample:
        for size, cost in per_sample.items():
            if size > len(views):
                print(
                    f"per-sample pass cost at N={size}: {cost / per_sample[len(views)]:.2f}x "
                    f"that at N={len(views)}"
                )
    if results:
        real = max(results)
        exact_memory, exact_neighbours, ivf_memory, ivf_neighbours = results[real]
        kind = "real features" if real <= len(views) else "partly replicated features"
        print(f"faithfulness at N={real} ({kind}, probe {args.probe}, {args.cell_size} per cell):")
        correlation = spearman(exact_memory, ivf_memory)
        print(f"memory-term rank correlation with exact search: {correlation:.4f}")
        recall = recall_at_k(exact_neighbours, ivf_neighbours)
        print(f"recall@{args.k} of the neighbours: {recall:.4f}")
        selection_loss = loss[:real] if loss is not None and len(loss) >= real else None
        changed = selection_change(exact_memory, ivf_memory, selection_loss)
        print(f"EMP selection at rate 0.7 that changes: {100 * changed:.2f} %")
        rows = replicate(views, real)
        layouts = {
            layout: bank_pass(rows, "exact", args.probe, args.cell_size, args.k, layout)[0]
            for layout in ("views", "compact")
        }
        print(
            f"compact vs views layout (exact search, N={real}): rank correlation "
            f"{spearman(layouts['views'], layouts['compact']):.4f}, EMP selection change "
            f"{100 * selection_change(layouts['views'], layouts['compact'], selection_loss):.2f} %"
        )
    if largest is not None and largest[0] > args.exact_max:
        size, bank, neighbours = largest
        queries = min(2000, size)
        recall = sampled_recall(bank, neighbours, args.k, queries)
        print(f"recall@{args.k} at N={size} ({queries} sampled rows vs exact search): {recall:.4f}")


if __name__ == "__main__":
    main()
