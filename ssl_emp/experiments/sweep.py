"""``ssl-emp sweep``: a grid of policies x pruning rates x seeds (x beta, x memory estimator,
x direction) from one config, each run in its own directory, then linear probe and kNN on
each.

Re-running the same command continues where it stopped: finished runs are skipped (their
evaluation is completed if missing), a run with a checkpoint is resumed, a run that died
before its first checkpoint is started over. ``sweep.json`` records the base config, the
shared overrides and the settings they resolve to; a re-run whose shared settings differ is
refused (naming them), so one sweep directory never mixes two settings. Every cell's config is
checked before the first one trains, and the sweep ends with a table of its results.

With ``share`` several processes run one sweep: each takes the next run no other process
holds, by the run directory's lock (:func:`claim`), and all add their runs to ``sweep.json``
(:func:`record_status`).
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ssl_emp.config import Config, load_config
from ssl_emp.data.sources import build_datasets
from ssl_emp.engine.builder import check_batch_size, check_method_options
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.engine.lock import RunLock
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.errors import RunDirectoryBusyError, UserInputError
from ssl_emp.eval import LinearProbe, WeightedKnn
from ssl_emp.experiments.evaluate import evaluate_run
from ssl_emp.experiments.grid import SweepRun
from ssl_emp.experiments.train import train
from ssl_emp.experiments.variants import flatten
from ssl_emp.io import write_json
from ssl_emp.methods import method_class
from ssl_emp.pruning import Pruner
from ssl_emp.pruning.options import check_pruning_options

MANIFEST = "sweep.json"
MANIFEST_LOCK = ".sweep.lock"  # serialises updates of sweep.json by processes sharing a sweep


def training_finished(run_dir: Path) -> bool:
    """A run is finished once its trainer wrote ``scores.npz`` (after the last epoch)."""
    return RunDirectory(run_dir).scores_path.is_file()


def shared_settings(config: Config) -> dict[str, object]:
    """What every cell of a sweep shares: the resolved config without the run's own keys."""
    return {
        key: value for key, value in flatten(config.to_dict()).items() if not key.startswith("run.")
    }


def check_same_sweep(root: Path, config_path: str, shared: dict[str, object]) -> dict:
    """The existing ``sweep.json`` of ``root`` (empty when new), after refusing a re-run whose
    shared settings differ from the ones it was made with."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return {}
    manifest = json.loads(manifest_path.read_text())
    recorded = manifest.get("shared")
    if recorded is None:  # written before sweeps recorded their settings
        return manifest
    differing = sorted(
        key for key in set(recorded) | set(shared) if recorded.get(key) != shared.get(key)
    )
    if differing:
        shown = ", ".join(
            f"{key}={shared.get(key)!r} (sweep: {recorded.get(key)!r})" for key in differing[:4]
        )
        more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
        raise UserInputError(
            f"{root} is a sweep made with other shared settings: {shown}{more}; re-run it with "
            f"the overrides recorded in {manifest_path}, or use another --dir"
        )
    return manifest


def check_cells(
    config_path: str, runs: Sequence[SweepRun], overrides: Sequence[str], root: Path
) -> None:
    """Load and check every cell's config before the first one trains, so a bad value stops
    the sweep at once instead of after the cells before it; that includes a batch larger
    than the samples a cell keeps (rate 0.9 of a small subset), which needs the size of the
    training set (``data.subset``, else the data loaded once per data section)."""
    sizes: dict[str, int] = {}
    for run in runs:
        config = load_config(
            config_path, [*overrides, *run.overrides, f"run.dir={root / run.name}"]
        )
        try:
            check_pruning_options(config.pruning)
            check_method_options(config)
            data = json.dumps(config.to_dict()["data"], sort_keys=True)
            if data not in sizes:
                sizes[data] = config.data.subset or len(
                    build_datasets(
                        config.data, seed=config.seed, image_size=config.augment.image_size
                    )[0]
                )
            pruner = Pruner(
                config.pruning,
                num_samples=sizes[data],
                epochs=config.train.epochs,
                seed=config.seed,
            )
            check_batch_size(config, sizes[data], pruner, world_size=1)
        except UserInputError as problem:
            raise UserInputError(f"sweep cell {run.name}: {problem}") from None


def results_table(root: Path, runs: Sequence[SweepRun]) -> list[str]:
    """The sweep's results, one line per variant and rate: mean ± std over seeds."""
    # compare imports this module
    from ssl_emp.experiments.compare import aggregate, collect, partial_note

    present = [
        root / run.name for run in runs if RunDirectory(root / run.name).config_path.is_file()
    ]
    if not present:
        return []
    summary = aggregate(collect(present))
    metrics = [
        (key, label)
        for key, label in (("probe_top1", "probe"), ("knn_top1", "kNN"), ("test_top1", "test"))
        if any(entry[key] is not None for entry in summary)
    ]
    header = f"{'variant':<32} {'rate':>5} {'seeds':>5} {'eff.rate':>8}" + "".join(
        f" {label:>15}" for _, label in metrics
    )
    lines = [header]
    for entry in summary:
        values = "".join(
            f" {'-':>15}"
            if entry[key] is None
            else f" {100 * entry[key]:>7.2f} ± {100 * (entry[f'{key}_std'] or 0):>5.2f}"
            + partial_note(entry, key)
            for key, _ in metrics
        )
        effective = "-" if entry["effective_rate"] is None else f"{entry['effective_rate']:.3f}"
        lines.append(
            f"{entry['variant']:<32} {entry['rate']:>5g} {entry['seeds']:>5} {effective:>8}{values}"
        )
    return lines


def run_action(run_dir: Path) -> str:
    """What a sweep does with a run: ``done`` (trained), ``resume`` (has a checkpoint) or
    ``start``."""
    if training_finished(run_dir):
        return "done"
    if list_checkpoints(RunDirectory(run_dir).checkpoint_dir):
        return "resume"
    return "start"


def claim(run_dir: Path) -> RunLock | None:
    """The run directory's lock, or None while another process holds it (trains or
    evaluates the run). A shared sweep decides what to do with a run under this lock, so two
    processes never both take a run that only one of them may train."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except RunDirectoryBusyError:
        return None
    return lock


def record_status(root: Path, header: dict[str, object], status: dict[str, object]) -> None:
    """Add one run's status to ``root/sweep.json``, read afresh under a lock: processes that
    share a sweep (``share``, or ``tools/study.py --shard``) each add their own runs without
    dropping the ones the others recorded since they started. Runs keep their first order; a
    later status replaces an earlier one of the same name."""
    with open(root / MANIFEST_LOCK, "a", encoding="utf-8") as stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX)  # released when the file closes
        path = root / MANIFEST
        existing = json.loads(path.read_text()).get("runs", []) if path.is_file() else []
        recorded = {str(entry["name"]): entry for entry in existing}
        recorded[str(status["name"])] = status
        write_json(path, {**header, "runs": list(recorded.values())})


def evaluate_missing(run_dir: Path) -> None:
    """The linear probe and kNN results a finished SSL run does not have yet."""
    for evaluator in (LinearProbe(), WeightedKnn()):
        if not RunDirectory(run_dir).result_path(evaluator.name).is_file():
            evaluate_run(evaluator, str(run_dir))


def sweep(
    config_path: str,
    sweep_dir: str,
    runs: Sequence[SweepRun],
    overrides: Sequence[str] = (),
    evaluate: bool = True,
    share: bool = False,
) -> list[dict[str, object]]:
    """Train and evaluate every run of the grid that is not done yet.

    Args:
        config_path: the base YAML config.
        sweep_dir: parent directory of the runs.
        runs: the grid (see :func:`~ssl_emp.experiments.grid.plan_runs`).
        overrides: overrides applied to every run (before the run's own).
        evaluate: run the linear probe and kNN on SSL runs.
        share: other processes run the same sweep: a run another process holds (trains or
            evaluates) is skipped as ``busy`` instead of stopping the sweep, so N copies of
            one command share its runs, each taking the next free one. Without it a held run
            stops the sweep with an error naming the process.

    Returns:
        One status record per run (also written to ``sweep.json``).
    """
    root = Path(sweep_dir)
    shared = shared_settings(load_config(config_path, overrides))
    check_same_sweep(root, config_path, shared)
    check_cells(config_path, runs, overrides, root)
    root.mkdir(parents=True, exist_ok=True)
    header: dict[str, object] = {
        "config": config_path,
        "overrides": list(overrides),
        "shared": shared,
    }
    statuses: list[dict[str, object]] = []
    busy: list[str] = []
    for position, run in enumerate(runs, start=1):
        run_dir = root / run.name
        held = claim(run_dir) if share else None
        if share and held is None:
            print(f"[{position}/{len(runs)}] {run.name}: busy (another process has it)", flush=True)
            busy.append(run.name)
            continue
        action = run_action(run_dir)
        print(f"[{position}/{len(runs)}] {run.name}: {action}", flush=True)
        started = time.perf_counter()
        flags = {"done": [], "resume": ["run.resume=true"], "start": ["run.overwrite=true"]}
        config = load_config(
            config_path, [*overrides, *run.overrides, f"run.dir={run_dir}", *flags[action]]
        )
        if action != "done":
            if held is not None:
                held.release()  # the trainer takes the directory's lock itself
            try:
                train(config)
            except RunDirectoryBusyError:
                if not share:
                    raise
                # another process took the run between our check and the trainer's lock
                print(f"[{position}/{len(runs)}] {run.name}: busy (taken meanwhile)", flush=True)
                busy.append(run.name)
                continue
            held = claim(run_dir) if share else None
        if evaluate and not method_class(config.method.name).supervised:
            if share and held is None:
                busy.append(run.name)  # another process evaluates it
            else:
                evaluate_missing(run_dir)
        if held is not None:
            held.release()
        status = {**asdict(run), "action": action, "seconds": time.perf_counter() - started}
        statuses.append(status)
        record_status(root, header, status)
    if busy:
        print(
            f"{len(busy)} runs were held by other processes ({', '.join(busy[:4])}"
            f"{', ...' if len(busy) > 4 else ''}); their results appear when those finish",
            flush=True,
        )
    table = results_table(root, runs)
    if table:
        print("\n".join(["", f"results of {root}:", *table]), flush=True)
    return statuses


def find_run_dirs(paths: Sequence[str]) -> list[Path]:
    """Run directories among ``paths``: each path is a run (has config.yaml) or holds runs."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if RunDirectory(path).config_path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise UserInputError(f"{path} does not exist; pass run or sweep directories")
        children = sorted(p for p in path.iterdir() if RunDirectory(p).config_path.is_file())
        if not children:
            raise UserInputError(
                f"{path} holds no run directories (no */config.yaml); pass a sweep directory"
            )
        found.extend(children)
    return found
