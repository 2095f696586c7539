"""``ssl-emp inspect``: see what the pruner saw. Grids of the real training images a finished
run trained most and least often and of those with the highest and lowest score and memory
term, the training-count histogram, a CSV of every sample for audits (with its class name and
image file where the data has them), and, on runs with flipped labels or junk images, how well
each signal finds them (precision at k).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ssl_emp.config import Config
from ssl_emp.data import ImageData, build_datasets
from ssl_emp.engine.builder import contaminate
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.errors import UserInputError
from ssl_emp.io import WriteError, write_bytes

GRID_SAMPLES = 32
GRID_COLUMNS = 8
NAME_CHARACTERS = 14  # of a class name in a caption, so captions fit their cell
TIE_STREAM = 0x7E5  # the tie-breaking generator's stream, apart from the run's own
# grid name -> (array of scores.npz, largest first)
GRIDS = {
    "most_trained": ("train_count", True),
    "least_trained": ("train_count", False),
    "highest_score": ("score", True),
    "lowest_score": ("score", False),
    "highest_memory": ("memory", True),
    "lowest_memory": ("memory", False),
}
SIGNALS = ("score", "loss", "memory")
# array of scores.npz -> (caption key, what the grid title says it is sorted by)
SORT_KEYS = {
    "train_count": ("v", "visits"),
    "score": ("s", "score"),
    "memory": ("m", "memory term"),
}


def extreme_indices(values: np.ndarray, count: int, largest: bool, seed: int) -> np.ndarray:
    """Indices of the ``count`` largest (or smallest) finite ``values``, most extreme first.

    Ties are broken in a random order drawn from ``seed``: where many samples share a value
    (the visit counts of a short run) the grid shows a random draw of them, not always the
    lowest indices, which would stand for the start of the dataset only. Samples never
    scored (NaN) are left out.
    """
    finite = np.flatnonzero(np.isfinite(values))
    keys = -values[finite].astype(np.float64) if largest else values[finite]
    shuffle = np.random.default_rng([seed, TIE_STREAM]).permutation(len(finite))
    order = np.lexsort((shuffle, keys))  # by value, then by the random rank
    return finite[order[:count]]


def precision_at_k(
    values: np.ndarray, flagged: np.ndarray, k: int, largest: bool, seed: int
) -> float:
    """Share of the ``k`` most extreme samples (ties drawn from ``seed``) in ``flagged``."""
    chosen = extreme_indices(values, k, largest, seed=seed)
    return float(np.isin(chosen, flagged).mean()) if len(chosen) else float("nan")


@dataclass
class Inspection:
    """What ``inspect`` found and wrote.

    Attributes:
        grids: grid name -> the sample indices shown, in order.
        captions: grid name -> the caption of each sample shown, in order.
        files: the files written.
        precision: rows of (kind, signal, direction, k, precision, chance) for runs with
            flipped labels (kind ``flipped``) or junk images (kind ``junk``).
    """

    grids: dict[str, np.ndarray] = field(default_factory=dict)
    captions: dict[str, list[str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    precision: list[tuple[str, str, str, int, float, float]] = field(default_factory=list)


def _read_scores(run: RunDirectory) -> dict[str, np.ndarray]:
    if not run.scores_path.is_file():
        raise UserInputError(
            f"{run.path} has no scores.npz yet (it is written when training finishes); "
            f"finish the run first (ssl-emp pretrain ... run.dir={run.path} --resume)"
        )
    with np.load(run.scores_path) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _flagged(run: RunDirectory) -> dict[str, np.ndarray]:
    """Known-bad samples of the run: flipped labels and junk images, where it has them."""
    found = {}
    for kind, path, key in (
        ("flipped", run.label_noise_path, "flipped"),
        ("junk", run.junk_path, "junk"),
    ):
        if path.is_file():
            with np.load(path) as arrays:
                found[kind] = arrays[key]
    return found


def training_images(config: Config) -> ImageData:
    """The run's training data as it trained (label noise and junk applied), on the CPU."""
    train, _ = build_datasets(config.data, seed=config.seed, image_size=config.augment.image_size)
    return contaminate(config, train)[0]


def label_text(label: int, class_names: tuple[str, ...] | None) -> str:
    """``y=3`` or, where the data names its classes, ``y=3 Dress`` (long names shortened)."""
    if class_names is None:
        return f"y={label}"
    name = class_names[label]
    if len(name) > NAME_CHARACTERS:
        name = name[: NAME_CHARACTERS - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return f"y={label} {name}"


def caption(
    index: int,
    label: int,
    scores: dict[str, np.ndarray],
    sorted_by: str,
    class_names: tuple[str, ...] | None,
) -> str:
    """A sample's caption: index and label, then the value the grid is sorted by first
    (visits, score or memory term) and next to it the visits (or, in the visit grids, the
    score)."""
    visits = f"v={int(scores['train_count'][index])}"
    if sorted_by == "train_count":
        values = f"{visits} s={scores['score'][index]:.2f}"
    else:
        values = f"{SORT_KEYS[sorted_by][0]}={scores[sorted_by][index]:.2f} {visits}"
    return f"#{index} {label_text(label, class_names)}\n{values}"


def _draw_grid(
    data: ImageData,
    indices: np.ndarray,
    captions: list[str],
    flagged: dict[str, np.ndarray],
    title: str,
) -> bytes:
    """A PNG of the samples at ``indices`` under their ``captions``; flagged samples
    (flipped label, junk) captioned in red."""
    rows = max(1, -(-len(indices) // GRID_COLUMNS))
    figure = Figure(figsize=(1.6 * GRID_COLUMNS, 1.9 * rows))
    axes = figure.subplots(rows, GRID_COLUMNS)
    bad = set(np.concatenate(list(flagged.values())).tolist()) if flagged else set()
    for position, axis in enumerate(np.atleast_1d(axes).ravel()):
        axis.axis("off")
        if position >= len(indices):
            continue
        index = int(indices[position])
        image = data.images[index].permute(1, 2, 0).numpy()
        axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
        color = "red" if index in bad else "black"
        axis.set_title(captions[position], fontsize=7, color=color)
    legend = f"   (red: {' / '.join(flagged)})" if flagged else ""
    figure.suptitle(title + legend, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _histogram(counts: np.ndarray, title: str) -> bytes:
    figure = Figure(figsize=(6, 3.5))
    axis = figure.subplots()
    axis.hist(counts, bins=[edge - 0.5 for edge in range(int(counts.max()) + 2)], color="tab:blue")
    axis.set_xlabel("times trained (visits)")
    axis.set_ylabel("samples")
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _csv(
    scores: dict[str, np.ndarray],
    flagged: dict[str, np.ndarray],
    class_names: tuple[str, ...] | None,
    files: list[str] | None,
) -> bytes:
    """Every sample, highest score first (ties by index; unscored samples last), with its
    class name and image file where the data has them (empty otherwise, and empty for junk
    images, which replaced their file's picture)."""
    score = scores["score"]
    order = np.lexsort((np.arange(len(score)), -np.nan_to_num(score, nan=-np.inf)))
    columns = ["index", "label", "class", "visits", "score", "memory", "loss", *flagged, "path"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    marks = {kind: set(values.tolist()) for kind, values in flagged.items()}
    junk = marks.get("junk", set())
    for index in (int(i) for i in order):
        label = int(scores["labels"][index])
        writer.writerow(
            [
                index,
                label,
                class_names[label] if class_names else "",
                int(scores["train_count"][index]),
                f"{score[index]:.6g}",
                f"{scores['memory'][index]:.6g}",
                f"{scores['loss'][index]:.6g}",
                *(int(index in marks[kind]) for kind in flagged),
                files[index] if files and index not in junk else "",
            ]
        )
    return buffer.getvalue().encode()


def _write(path: Path, data: bytes, result: Inspection) -> None:
    """Write one output file atomically (whole or not at all) and record it; a failed write
    is one line naming the path and the fix."""
    try:
        write_bytes(path, data)
    except WriteError as problem:
        raise WriteError(path, problem.error, option="--out") from None
    result.files.append(path)


def inspect_run(
    run_dir: str,
    out: str | None = None,
    write_csv: bool = False,
    k: int | None = None,
    samples: int = GRID_SAMPLES,
    seed: int | None = None,
) -> Inspection:
    """Write the grids (and the CSV) of a finished run into ``out`` (default ``RUN/inspect``).

    Args:
        run_dir: a finished run (with ``scores.npz``).
        out: output directory.
        write_csv: also write ``samples.csv``, every sample sorted by score.
        k: samples per precision-at-k check (default: as many as are flagged).
        samples: images per grid.
        seed: seed of the random order of tied samples (default: the run's seed).

    Raises:
        UserInputError: not a run directory, the run has not finished, or an output file
            cannot be written (each file is written whole or not at all).
    """
    run = RunDirectory(run_dir)
    config = run.load_config()
    tie_seed = config.seed if seed is None else seed
    scores = _read_scores(run)
    flagged = _flagged(run)
    data = training_images(config)
    if len(data) != len(scores["score"]):
        raise UserInputError(
            f"{run.path}: scores.npz has {len(scores['score'])} samples but the data now has "
            f"{len(data)}; was the dataset at data.root changed since the run?"
        )
    target = Path(out) if out else run.path / "inspect"
    result = Inspection()
    for name, (array, largest) in GRIDS.items():
        indices = extreme_indices(scores[array], samples, largest, seed=tie_seed)
        result.grids[name] = indices
        result.captions[name] = [
            caption(
                index=int(index),
                label=int(data.labels[int(index)]),
                scores=scores,
                sorted_by=array,
                class_names=data.class_names,
            )
            for index in indices
        ]
        title = f"{run.path.name}: {name.replace('_', ' ')} (sorted by {SORT_KEYS[array][1]})"
        grid = _draw_grid(data, indices, result.captions[name], flagged, title)
        _write(target / f"{name}.png", grid, result)
    histogram = _histogram(scores["train_count"], f"{run.path.name}: visits")
    _write(target / "train_count_hist.png", histogram, result)
    if write_csv:
        table = _csv(scores, flagged, class_names=data.class_names, files=data.source_files())
        _write(target / "samples.csv", table, result)
    for kind, bad in flagged.items():
        chosen_k = k or len(bad)
        chance = len(bad) / len(scores["score"])
        for signal in SIGNALS:
            for largest in (True, False):
                value = precision_at_k(scores[signal], bad, chosen_k, largest, seed=tie_seed)
                direction = "highest" if largest else "lowest"
                result.precision.append((kind, signal, direction, chosen_k, value, chance))
    if config.logging.tensorboard:
        _log_to_tensorboard(run, data, result)
    return result


def _log_to_tensorboard(run: RunDirectory, data: ImageData, result: Inspection) -> None:
    """The grids as images under ``inspect/`` in the run's TensorBoard events."""
    import torchvision
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run.path / "tensorboard"))
    for name, indices in result.grids.items():
        images = data.images[torch.as_tensor(indices, dtype=torch.long)].float() / 255
        grid = torchvision.utils.make_grid(images, nrow=GRID_COLUMNS, padding=2)
        writer.add_image(f"inspect/{name}", grid, global_step=0)
    writer.close()


def precision_table(rows: list[tuple[str, str, str, int, float, float]]) -> list[str]:
    """Console lines for :attr:`Inspection.precision`."""
    lines = []
    for kind, signal, direction, k, value, chance in rows:
        lines.append(
            f"  {kind:<8} {direction:>7} {signal:<7} precision@{k} {100 * value:6.1f} %"
            f"  (chance {100 * chance:.1f} %)"
        )
    return lines
