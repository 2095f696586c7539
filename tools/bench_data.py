"""The data path from prepared stores, measured side by side in one run (machines are noisy).

1. ``raw store vs in-memory``: images/s of a SimCLR epoch (``resnet_small``, Fashion-MNIST
   subset) trained from a raw store (worker processes reading each batch ahead) against the
   same data held in memory. Each is timed on its second epoch (the first starts the workers),
   twice, alternating; the ratio of the means is printed. Target >= 0.9.
2. ``jpeg store vs PIL ImageFolder loader``: our jpeg store (batched decode in workers, kornia
   views) against the usual way: the same images as JPEG files in a torchvision
   ``ImageFolder`` with lightly's PIL ``SimCLRTransform`` in a ``DataLoader`` with the same
   number of workers, the same model and optimizer. Target >= 1.5 on CPU.
3. Bytes read from the raw store per epoch at pruning rates 0, 0.5 and 0.7 (read in the
   training process so they can be counted): they scale with the kept fraction.

    python tools/bench_data.py                 # 10,000 images, 2 workers
    python tools/bench_data.py --quick         # 1,000 images (a smoke test)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from PIL import Image
from reference_loop import ReferenceLoop, fashion_mnist_transform

from ssl_emp.config import load_config
from ssl_emp.data import build_datasets
from ssl_emp.data.prepare import prepare_store
from ssl_emp.data.store import StoredImages
from ssl_emp.engine.optim import build_optimizer
from ssl_emp.experiments.train import build_trainer
from ssl_emp.io import read_jsonl
from ssl_emp.methods import build_method


def epoch_rate(overrides: list[str], run_dir: Path) -> float:
    """Training images/s of the second of two full-data epochs."""
    config = load_config(
        None, [*overrides, "train.epochs=2", f"run.dir={run_dir}", "run.overwrite=true"]
    )
    trainer = build_trainer(config)
    trainer.fit()
    return float(read_jsonl(trainer.run.metrics_path)[-1]["images_per_s"])


def write_jpeg_folder(images: torch.Tensor, labels: torch.Tensor, root: Path) -> None:
    """The images as JPEG files in an ``ImageFolder`` layout (``root/CLASS/i.jpg``)."""
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
            folder / f"{index}.jpg", quality=90
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="reference loop steps per block")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurements")
    parser.add_argument("--quick", action="store_true", help="512 images, one round")
    args = parser.parse_args()
    if args.quick:
        args.subset, args.steps, args.rounds, args.batch_size = 512, 2, 1, 128
    workdir = Path(tempfile.mkdtemp(prefix="bench_data_"))
    common = [
        f"data.subset={args.subset}",
        f"data.workers={args.workers}",
        f"train.batch_size={args.batch_size}",
        "train.progress=false",
        "augment.blur=false",
        "pruning.policy=full",
    ]
    config = load_config(None, common)
    started = time.perf_counter()
    stores = {}
    for fmt in ("raw", "jpeg"):
        stores[fmt] = workdir / fmt
        prepare_store(config.data, seed=0, out=str(stores[fmt]), fmt=fmt, log=lambda _: None)
    print(f"prepared raw and jpeg stores of Fashion-MNIST in {time.perf_counter() - started:.1f} s")

    # 1. raw store vs in memory
    rates: dict[str, list[float]] = {"memory": [], "raw": [], "jpeg": []}
    for round_ in range(args.rounds):
        rates["memory"].append(epoch_rate(common, workdir / f"m{round_}"))
        raw = [*common, "data.source=store", f"data.root={stores['raw']}"]
        rates["raw"].append(epoch_rate(raw, workdir / f"r{round_}"))
    # 2. jpeg store vs PIL ImageFolder
    jpeg = [*common, "data.source=store", f"data.root={stores['jpeg']}"]
    rates["jpeg"].append(epoch_rate(jpeg, workdir / "j0"))
    train, _ = build_datasets(config.data, seed=0)
    write_jpeg_folder(train.images, train.labels, workdir / "folder")
    transform = fashion_mnist_transform(mean=list(train.mean), std=list(train.std))
    folder = torchvision.datasets.ImageFolder(
        str(workdir / "folder"), transform=transform, loader=lambda p: Image.open(p).convert("L")
    )
    model = build_method(config, train)
    reference = ReferenceLoop(
        folder,
        model,
        build_optimizer(model, config.train),
        temperature=config.method.temperature,
        batch_size=args.batch_size,
        workers=args.workers,
        device=torch.device("cpu"),
    )
    for _ in range(2):
        reference.step()  # workers start
    reference_s = 0.0
    for _ in range(args.rounds):
        begun = time.perf_counter()
        for _ in range(args.steps):
            reference.step()
        reference_s += time.perf_counter() - begun
        rates["jpeg"].append(epoch_rate(jpeg, workdir / "j1"))
    reference_rate = args.rounds * args.steps * args.batch_size / reference_s
    mean = {name: sum(values) / len(values) for name, values in rates.items()}
    print(
        f"{args.subset} Fashion-MNIST images, resnet_small, batch {args.batch_size}, "
        f"{args.workers} workers, {torch.get_num_threads()} threads, {args.rounds} rounds"
    )
    print(f"in memory            : {mean['memory']:8.1f} images/s")
    print(f"raw store            : {mean['raw']:8.1f} images/s")
    print(f"jpeg store           : {mean['jpeg']:8.1f} images/s")
    print(f"PIL ImageFolder loop : {reference_rate:8.1f} images/s")
    print(f"raw store vs in-memory: {mean['raw'] / mean['memory']:.2f}x")
    print(f"jpeg store vs PIL ImageFolder loader: {mean['jpeg'] / reference_rate:.2f}x")

    # 3. bytes read per epoch at rates 0, 0.5, 0.7
    for rate in (0.0, 0.5, 0.7):
        policy = "full" if rate == 0 else "random"
        overrides = [
            *common,
            "data.source=store",
            f"data.root={stores['raw']}",
            "data.workers=0",
            f"pruning.policy={policy}",
            f"pruning.rate={rate}",
            "pruning.warmup_epochs=0",
            "train.epochs=1",
            f"run.dir={workdir / f'b{rate}'}",
        ]
        trainer = build_trainer(load_config(None, overrides))
        images = trainer.data.images
        assert isinstance(images, StoredImages)
        trainer.fit()
        full = len(images) * images.shape[1] * images.shape[2] * images.shape[3]
        print(
            f"bytes read per epoch at rate {rate}: {images.bytes_read / 2**20:.2f} MiB "
            f"({images.bytes_read / full:.2f} of the store)"
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
