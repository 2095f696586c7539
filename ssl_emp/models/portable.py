"""Encoders as plain files that travel without this package's run directories.

An exported file is an ordinary ``state_dict`` of the backbone's network (for torchvision
ResNets, exactly the keys of ``torchvision.models.resnet18()`` with ``fc = nn.Identity()``),
saved with ``torch.save`` or as ``safetensors``. A small metadata entry names the
architecture and the preprocessing, so :func:`load_backbone` can rebuild any backbone,
``resnet_small`` included, from the file alone:

- ``torch.save`` files keep it in the state dict's ``_metadata`` (the attribute PyTorch
  itself uses for module versions) under the key ``ssl_emp``, which ``load_state_dict``
  ignores, so ``strict=True`` loading into torchvision is unaffected;
- ``safetensors`` files keep it as JSON in the header's metadata under ``ssl_emp``.

An optional projection head (or the supervised classifier) is stored under the ``head.``
prefix; such a file no longer loads strictly into a bare torchvision ResNet, by design.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ssl_emp.errors import UserInputError
from ssl_emp.io import atomic_write
from ssl_emp.models.backbones import Backbone, build_backbone

EXPORT_FORMAT = 1
METADATA_KEY = "ssl_emp"
HEAD_PREFIX = "head."
FileFormat = Literal["torch", "safetensors"]
# the names an export may have, by the format written under them
SUFFIXES: dict[str, FileFormat] = {".pt": "torch", ".pth": "torch", ".safetensors": "safetensors"}


def file_format(path: Path) -> FileFormat:
    """``safetensors`` for a ``.safetensors`` file, else ``torch`` (so files of any name that
    ``torch.save`` wrote still load)."""
    return "safetensors" if path.suffix == ".safetensors" else "torch"


def check_export_path(path: Path) -> None:
    """Refuse a target that :func:`save_backbone` cannot write as named.

    A directory would fail only at the final rename, and a name such as ``encoder.onnx``
    would get a torch pickle that other tools then misread, so both are refused up front.

    Raises:
        UserInputError: ``path`` is a directory or its extension is not one of ``SUFFIXES``.
    """
    if path.is_dir():
        raise UserInputError(
            f"{path} is a directory; name a file in it, e.g. {path / 'encoder.pt'}"
        )
    if path.suffix not in SUFFIXES:
        supported = ", ".join(SUFFIXES)
        raise UserInputError(
            f"cannot export to {path}: export writes only {supported} files (torch.save for "
            f".pt and .pth, safetensors for .safetensors); use e.g. {path.with_suffix('.pt')}"
        )


def build_head(description: dict[str, Any]) -> nn.Module:
    """The head a metadata entry describes: ``{"class": NAME, "kwargs": {...}}`` with NAME a
    module of ``lightly.models.modules`` or ``torch.nn`` (what each method's
    ``export_head`` writes); files of older versions give ``kind`` (simclr, moco, linear) and
    the dimensions instead."""
    import lightly.models.modules as heads  # the heads' library, loaded with a head only

    if "kind" in description:  # written before methods described their own heads
        dims = (description["input_dim"], description["hidden_dim"], description["output_dim"])
        legacy = {"simclr": "SimCLRProjectionHead", "moco": "MoCoProjectionHead"}
        if description["kind"] == "linear":
            description = {
                "class": "Linear",
                "kwargs": {"in_features": dims[0], "out_features": dims[2]},
            }
        elif description["kind"] in legacy:
            kwargs = {"input_dim": dims[0], "hidden_dim": dims[1], "output_dim": dims[2]}
            description = {"class": legacy[description["kind"]], "kwargs": kwargs}
    name = description.get("class", "")
    module = getattr(heads, name, None) or getattr(nn, name, None)
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise UserInputError(f"unknown head '{name}' in the export's metadata; export it again")
    return module(**description.get("kwargs", {}))


def save_backbone(
    path: Path,
    backbone: Backbone,
    metadata: dict[str, Any],
    head: nn.Module | None = None,
) -> None:
    """Write ``backbone`` (and ``head``) as a plain state dict with ``metadata``, atomically.

    Args:
        path: the file; ``.safetensors`` gives a safetensors file, ``.pt`` and ``.pth``
            ``torch.save``.
        backbone: the trained backbone; its network (``backbone.body``) is what is saved.
        metadata: architecture and preprocessing (see :func:`load_backbone`), JSON-serialisable.
        head: the projection head or classifier to store under ``head.``, if wanted.

    Raises:
        UserInputError: ``path`` is a directory or has another extension
            (:func:`check_export_path`).
        OSError: the file could not be written; whatever was at ``path`` is left as it was.
    """
    check_export_path(path)
    state = backbone.body.state_dict()
    if head is not None:
        for key, value in head.state_dict().items():
            state[HEAD_PREFIX + key] = value
    tensors = OrderedDict((key, value.detach().cpu().contiguous()) for key, value in state.items())
    entry = {"format": EXPORT_FORMAT, **metadata}
    if file_format(path) == "safetensors":
        from safetensors.torch import save as safetensors_bytes

        data = safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(entry)})
        atomic_write(path, lambda stream: stream.write(data))
        return
    versions = getattr(state, "_metadata", None)
    tensors._metadata = OrderedDict(versions or {})  # type: ignore[attr-defined]
    tensors._metadata[METADATA_KEY] = entry  # type: ignore[attr-defined]
    atomic_write(path, lambda stream: torch.save(tensors, stream))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the metadata entry of an exported file."""
    if not path.is_file():
        raise UserInputError(f"no exported backbone at {path}; write one with `ssl-emp export`")
    try:
        if file_format(path) == "safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            entry = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else None
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
            entry = getattr(tensors, "_metadata", {}).get(METADATA_KEY)
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise UserInputError(
            f"{path} is not a readable backbone file ({type(error).__name__}); export it again"
        ) from None
    if not isinstance(entry, dict) or entry.get("format") != EXPORT_FORMAT:
        raise UserInputError(
            f"{path} has no ssl_emp metadata; it was not written by `ssl-emp export` "
            "(load a plain state dict with torch.load and your own model instead)"
        )
    return dict(tensors), entry


def export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file: ``backbone``, ``in_channels``, ``cifar_stem``,
    ``width``, ``feature_dim``, ``image_size``, ``mean``, ``std`` (inputs are float images in
    [0, 1], resized to ``image_size`` and normalised with ``mean``/``std``), ``method``,
    ``epoch`` and ``head`` (None or its description)."""
    return _read(Path(path))[1]


def load_backbone(path: str | Path, head: bool = False) -> nn.Module:
    """Rebuild the backbone of an exported file, in eval mode, ready for feature extraction.

    Args:
        path: a file written by ``ssl-emp export``.
        head: also rebuild the stored head and return ``nn.Sequential(backbone, head)``.

    Returns:
        The backbone (an ``nn.Module`` mapping normalised (N, C, H, W) float images to
        (N, feature_dim) features), or backbone and head in sequence.

    Raises:
        UserInputError: a missing or foreign file, or ``head=True`` for a file without head.

    Example:
        >>> import ssl_emp
        >>> encoder = ssl_emp.load_backbone("encoder.pt")  # doctest: +SKIP
        >>> features = encoder(images)  # doctest: +SKIP
    """
    tensors, entry = _read(Path(path))
    backbone = build_backbone(
        entry["backbone"],
        in_channels=entry["in_channels"],
        cifar_stem=entry["cifar_stem"],
        width=entry["width"],
        image_size=entry.get("image_size"),
    )
    body_state = {k: v for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)}
    backbone.body.load_state_dict(body_state, strict=True)
    backbone.eval()
    if not head:
        return backbone
    if entry.get("head") is None:
        raise UserInputError(f"{path} holds no head; export it with `ssl-emp export --head`")
    module = build_head(entry["head"])
    head_state = {k[len(HEAD_PREFIX) :]: v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)}
    module.load_state_dict(head_state, strict=True)
    return nn.Sequential(backbone, module).eval()
