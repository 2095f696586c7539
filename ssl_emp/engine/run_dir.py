"""The run directory: resolved config, per-epoch metrics, checkpoints and results.

:class:`RunDirectory` owns every artefact's path; nothing else spells a file name. Layout::

    RUN_DIR/config.yaml       resolved configuration
    RUN_DIR/metrics.jsonl     one JSON object per epoch
    RUN_DIR/checkpoints/      the last two epoch checkpoints (and mid-epoch ones)
    RUN_DIR/scores.npz        per-sample score, memory, train_count, loss, last_seen, labels
    RUN_DIR/label_noise.npz   supervised runs with data.label_noise: which labels flipped
    RUN_DIR/junk.npz          runs with data.junk_fraction: which images are junk
    RUN_DIR/eval.json         supervised runs: test top-1
    RUN_DIR/probe.json        linear-probe result (``top1``)
    RUN_DIR/knn.json          weighted-kNN result (``top1``)
    RUN_DIR/demo.json         ``ssl-emp demo``: pretrained vs random-init probe
    RUN_DIR/preempted.json    present while the run is stopped by a signal and not resumed
    RUN_DIR/platform.json     the platforms (torch, CPU capability, device) it trained on
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ssl_emp.config import Config, config_from_dict, read_yaml
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.engine.lock import RunLock
from ssl_emp.errors import UserInputError
from ssl_emp.io import append_jsonl, read_jsonl, write_json, write_jsonl, write_yaml

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
SCORES_FILE = "scores.npz"
LABEL_NOISE_FILE = "label_noise.npz"
JUNK_FILE = "junk.npz"
EVAL_FILE = "eval.json"
DEMO_FILE = "demo.json"
PREEMPTED_FILE = "preempted.json"
PLATFORM_FILE = "platform.json"
# Keys that may differ between a run and its resumption.
RESUME_FREE_KEYS = {
    "run.resume",
    "run.overwrite",
    "run.dir",
    "train.progress",
    "train.progress_interval_s",
    "train.threads",
    "train.device",
    "train.stop_check_every",
    "logging.tensorboard",
    "logging.wandb",
    "logging.wandb_project",
    "logging.wandb_mode",
}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_command(method: str, config_path: Path) -> str:
    """The command that resumes a run from its saved config."""
    verb = "train-supervised" if method == "supervised" else "pretrain"
    return f"ssl-emp {verb} -c {config_path} --resume"


def changed_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts (ignoring resume-free keys)."""
    old, new = _flatten(saved), _flatten(current)
    keys = (set(old) | set(new)) - RESUME_FREE_KEYS
    return sorted(key for key in keys if old.get(key) != new.get(key))


class RunDirectory:
    """Access to one run's files.

    Args:
        path: the run directory.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = RunLock(self.path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def scores_path(self) -> Path:
        return self.path / SCORES_FILE

    @property
    def label_noise_path(self) -> Path:
        return self.path / LABEL_NOISE_FILE

    @property
    def junk_path(self) -> Path:
        return self.path / JUNK_FILE

    @property
    def eval_path(self) -> Path:
        return self.path / EVAL_FILE

    @property
    def demo_path(self) -> Path:
        return self.path / DEMO_FILE

    @property
    def preempted_path(self) -> Path:
        """Written when a signal stopped the run; removed when it resumes (requeue on it)."""
        return self.path / PREEMPTED_FILE

    def mark_preempted(self, details: dict[str, Any]) -> None:
        """Leave ``preempted.json``: the machine-readable sign for a scheduler to requeue."""
        write_json(self.preempted_path, details)

    def clear_preempted(self) -> None:
        """Remove ``preempted.json`` (the run is training again)."""
        self.preempted_path.unlink(missing_ok=True)

    @property
    def platform_path(self) -> Path:
        """Where the run's platforms are listed (see :mod:`ssl_emp.engine.platform`)."""
        return self.path / PLATFORM_FILE

    def platforms(self) -> list[dict[str, Any]]:
        """The platforms the run trained on, in the order they first trained it (empty for a
        run from before they were recorded, or when the file is unreadable: it only
        describes, so it never stops a run)."""
        if not self.platform_path.is_file():
            return []
        try:
            return list(json.loads(self.platform_path.read_text())["platforms"])
        except (ValueError, KeyError, TypeError):
            return []

    def record_platform(self, platform: dict[str, str]) -> None:
        """Add ``platform`` to ``platform.json`` unless it is there (a run resumed on another
        machine lists both)."""
        known = self.platforms()
        if platform not in known:
            write_json(self.platform_path, {"platforms": [*known, platform]})

    def started(self) -> bool:
        """Whether training wrote anything to resume or keep: a checkpoint or an epoch's
        metrics. A directory with neither (a run that failed before its first checkpoint,
        e.g. on its data) holds nothing to lose and is started over."""
        return bool(list_checkpoints(self.checkpoint_dir)) or bool(self.metrics())

    def result_path(self, evaluator: str) -> Path:
        """Where an evaluator's result goes: ``probe.json``, ``knn.json``."""
        return self.path / f"{evaluator}.json"

    @classmethod
    def prepare(cls, config: Config) -> RunDirectory:
        """Create (or reopen for ``run.resume``) the run directory of ``config``.

        The returned directory is locked (:class:`~ssl_emp.engine.lock.RunLock`) until
        :meth:`release` or the end of the process: a second process on the same directory
        is refused before it touches anything.

        Raises:
            UserInputError: the directory exists without resume/overwrite, another process
                trains into it, the saved config differs on resume, or the directory is not
                writable.
        """
        run = cls(config.run.dir)
        exists = run.path.exists() and any(run.path.iterdir())
        if config.run.resume and config.run.overwrite:
            raise UserInputError("--resume and --overwrite exclude each other; pick one")
        unstarted = exists and not config.run.resume and not run.started()
        if exists and not unstarted and not (config.run.resume or config.run.overwrite):
            raise UserInputError(
                f"run directory {run.path} already exists; pass --resume to continue it "
                f"({resume_command(config.method.name, run.config_path)}) or --overwrite to "
                "delete it and start over (or choose another run.dir)"
            )
        if config.run.resume and not exists:
            raise UserInputError(
                f"--resume: run directory {run.path} does not exist; drop --resume to start it"
            )
        longer: dict[str, Any] | None = None
        if config.run.resume:
            longer = run._check_resumed_config(config)
        # every check above only read; from here on the directory changes, under the lock
        if exists:
            run._lock_or_refuse()
        if exists and config.run.overwrite:
            shutil.rmtree(run.path)
            run.lock.release()
            run.lock = RunLock(run.path)
        try:
            run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            run.lock.acquire()
            probe = run.path / ".write_test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise run._not_writable(error) from None
        if not config.run.resume:
            write_yaml(run.config_path, config.to_dict())
        elif longer is not None:  # trained longer: later resumes read the new length
            write_yaml(run.config_path, longer)
        return run

    def _check_resumed_config(self, config: Config) -> dict[str, Any] | None:
        """Refuse a resume whose config differs from the saved one, but for keys that may
        change (devices, threads, loggers) and a longer ``train.epochs`` (training a finished
        or running run longer). Returns the saved config with the new length when
        ``train.epochs`` grew, else None."""
        # keys added since the run started take their defaults
        saved = config_from_dict(read_yaml(self.config_path), saved=True).to_dict()
        changed = changed_keys(saved, config.to_dict())
        longer = None
        if "train.epochs" in changed:
            done = len(self.metrics())
            wanted = config.train.epochs
            if wanted < max(done, 1) or wanted < saved["train"]["epochs"]:
                raise UserInputError(
                    f"--resume with train.epochs={wanted}: the run was configured for "
                    f"{saved['train']['epochs']} epochs and has trained {done}; a run can be "
                    "trained longer, not shorter (evaluate an earlier checkpoint instead)"
                )
            changed.remove("train.epochs")
            longer = {**saved, "train": {**saved["train"], "epochs": wanted}}
        if changed:
            command = resume_command(saved["method"]["name"], self.config_path)
            raise UserInputError(
                f"--resume with a changed config: {', '.join(changed)} differ from "
                f"{self.config_path}; resume with the saved config ({command}) or start a new "
                "run.dir"
            )
        return longer

    def _not_writable(self, error: OSError) -> UserInputError:
        return UserInputError(
            f"run directory {self.path} is not writable ({error.strerror}); choose another run.dir"
        )

    def _lock_or_refuse(self) -> None:
        try:
            self.lock.acquire()
        except OSError as error:
            raise self._not_writable(error) from None

    def release(self) -> None:
        """Give up the lock taken by :meth:`prepare` (when training ends)."""
        self.lock.release()

    def load_config(self) -> Config:
        """The resolved config saved in the run directory."""
        if not self.config_path.is_file():
            raise UserInputError(
                f"{self.path} is not a run directory (no {CONFIG_FILE}); pass the run.dir of a "
                "pretraining run"
            )
        return config_from_dict(read_yaml(self.config_path), saved=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one epoch's metrics."""
        append_jsonl(self.metrics_path, record)

    def metrics(self) -> list[dict[str, Any]]:
        """All metrics records written so far."""
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, epochs: int) -> None:
        """Keep only the records of the first ``epochs`` epochs (after a resume)."""
        kept = [record for record in self.metrics() if record.get("epoch", 0) <= epochs]
        write_jsonl(self.metrics_path, kept)
