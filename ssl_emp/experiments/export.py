"""``ssl-emp export``: a run's trained backbone (optionally with its head) as a portable file
that :func:`ssl_emp.load_backbone` or torchvision can load (see :mod:`ssl_emp.models.portable`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_emp.config import Config
from ssl_emp.data import ImageData, build_datasets
from ssl_emp.engine.checkpoint import load_latest_checkpoint
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.errors import UserInputError
from ssl_emp.io import WriteError
from ssl_emp.methods import build_method
from ssl_emp.models.portable import check_export_path, save_backbone


def export_run(run_dir: str, out: str, head: bool = False) -> dict[str, Any]:
    """Write the backbone of the newest checkpoint of ``run_dir`` to ``out``.

    Args:
        run_dir: a pretraining or supervised run directory.
        out: the file; ``.safetensors`` gives safetensors, ``.pt`` and ``.pth``
            ``torch.save``.
        head: also store the projection head (SSL) or the classifier (supervised).

    Returns:
        The metadata written into the file.

    Raises:
        UserInputError: not a run directory, no checkpoint yet, ``out`` a directory or of
            another extension, or ``out`` not writable (read-only or full disk); a failed
            write leaves whatever was at ``out`` as it was.
    """
    out_path = Path(out)
    check_export_path(out_path)  # before the checkpoint is read: fail fast
    run = RunDirectory(run_dir)
    config: Config = run.load_config()
    found = load_latest_checkpoint(run.checkpoint_dir)
    if found is None:
        raise UserInputError(
            f"run directory {run.path} has no checkpoint yet, so there is nothing to export; "
            "train it first (or wait for its first epoch to finish)"
        )
    path, payload = found
    facts = payload.get("data")
    if facts is None:  # checkpoints written before data facts were kept: read the data
        train, _ = build_datasets(
            config.data, seed=config.seed, image_size=config.augment.image_size
        )
        facts = train.facts()
    model = build_method(config, ImageData.placeholder(facts))
    model.load_state_dict(payload["model"])
    state = payload["state"]
    metadata: dict[str, Any] = {
        "backbone": config.model.backbone,
        "in_channels": facts["channels"],
        "cifar_stem": config.model.cifar_stem,
        "width": config.model.width,
        "feature_dim": model.backbone.feature_dim,
        "image_size": config.augment.image_size or facts["image_size"],
        "mean": facts["mean"],
        "std": facts["std"],
        "method": config.method.name,
        "data": facts["name"],
        "epoch": state["epoch"],
        "epochs": config.train.epochs,
        "checkpoint": path.name,
        "head": None,
    }
    head_module = None
    if head:
        exported = model.export_head()
        if exported is None:
            raise UserInputError(f"method {config.method.name} has no head to export; drop --head")
        head_module, metadata["head"] = exported
    try:
        save_backbone(out_path, model.backbone, metadata, head=head_module)
    except WriteError as problem:
        raise WriteError(out_path, problem.error, option="--out") from None
    return metadata
