"""Images/s of our SimCLR step against the usual lightly loop, measured side by side.

Ours: the dataset as one uint8 tensor on the device, kornia views on the device, backbone,
lightly projection head, per-sample NT-Xent, optimizer step (``Trainer.train_step``).

Reference (the usual lightly way): torchvision's ``FashionMNIST`` dataset with
``lightly.transforms.SimCLRTransform`` (PIL) in a ``DataLoader`` with worker processes, the
same backbone and head, ``lightly.loss.NTXentLoss``, the same optimizer.

Both run the same number of steps in alternating blocks within one process, so machine noise
hits both; the ratio of their images/s is printed. Then, in the same process: the host-device
waits per step of ours (``aten._local_scalar_dense`` calls), the roofline (the step's achieved
FLOP/s and that of the bare model's forward and backward on ready tensors, each against this
machine's float32 GEMM rate; ``tools/roofline.py``), and with ``--compile`` our step with
``train.compile`` against without, side by side (time to first step, images/s, the largest
loss difference).

    python tools/bench_throughput.py                     # CPU defaults
    python tools/bench_throughput.py --compile           # also torch.compile, side by side
    python tools/bench_throughput.py --device cuda --backbone resnet18 --batch-size 512
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from reference_loop import ReferenceLoop, fashion_mnist_transform
from roofline import (
    bare_model_images_per_s,
    compare_compile,
    gemm_flops_per_s,
    host_syncs_per_step,
    model_flops_per_image,
    roofline_lines,
    synchronise,
)

from ssl_emp.config import load_config
from ssl_emp.data import GlobalBatch, build_datasets, index_batches
from ssl_emp.data.sources import FASHION_MNIST_DEFAULT_ROOT
from ssl_emp.engine.optim import build_optimizer
from ssl_emp.engine.trainer import Trainer
from ssl_emp.experiments.train import build_trainer
from ssl_emp.methods import build_method


def torchvision_fashion_mnist(workdir: Path, source: Path) -> torchvision.datasets.FashionMNIST:
    """torchvision's FashionMNIST over the Debian package's files (unpacked into workdir)."""
    raw = workdir / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for packed in source.glob("*-ubyte.gz"):
        with gzip.open(packed, "rb") as src, open(raw / packed.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    transform = fashion_mnist_transform(mean=[0.2860], std=[0.3530])
    return torchvision.datasets.FashionMNIST(str(workdir), train=True, transform=transform)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet_small")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8, help="steps per block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating blocks per loop")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--compile", action="store_true", help="also measure train.compile side by side"
    )
    args = parser.parse_args()
    torch.manual_seed(0)

    workdir = Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    overrides = [
        f"model.backbone={args.backbone}",
        f"model.width={args.width}",
        f"train.batch_size={args.batch_size}",
        f"train.device={args.device}",
        "train.progress=false",
        f"run.dir={workdir / 'run'}",
        "augment.blur=false",
    ]
    config = load_config(None, overrides)
    train, _ = build_datasets(config.data, seed=0)
    ours = build_trainer(config, train_data=train)
    device = ours.device

    reference_model = build_method(config, train).to(device)
    reference = ReferenceLoop(
        torchvision_fashion_mnist(workdir / "tv", FASHION_MNIST_DEFAULT_ROOT),
        reference_model,
        build_optimizer(reference_model, config.train),
        temperature=config.method.temperature,
        batch_size=args.batch_size,
        workers=args.workers,
        device=device,
    )
    reference_step = reference.step

    batches = index_batches(
        torch.arange(len(train), device=device),
        args.batch_size,
        generator=torch.Generator().manual_seed(0),
    )
    position = 0

    def our_step() -> None:
        nonlocal position
        ours.train_step(GlobalBatch.single(batches[position % len(batches)]), progress=0.5)
        position += 1

    for step in (our_step, reference_step):  # warm-up (workers start, allocator)
        for _ in range(2):
            step()
    timings = {"ours": 0.0, "reference": 0.0}
    for _ in range(args.rounds):
        for name, step in (("ours", our_step), ("reference", reference_step)):
            synchronise(device)
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            synchronise(device)
            timings[name] += time.perf_counter() - started
    images = args.steps * args.rounds * args.batch_size
    ours_rate, reference_rate = images / timings["ours"], images / timings["reference"]
    print(
        f"device {device}, {torch.get_num_threads()} threads, backbone {args.backbone} "
        f"(width {args.width}), batch {args.batch_size} x 2 views, "
        f"{args.rounds} x {args.steps} steps each, reference workers {args.workers}"
    )
    print(f"ours (device data + kornia)        : {ours_rate:8.1f} images/s")
    print(f"reference (torchvision+lightly PIL): {reference_rate:8.1f} images/s")
    print(f"ratio ours / reference             : {ours_rate / reference_rate:8.2f}x")

    syncs, sites = host_syncs_per_step(our_step)
    print(f"host-device waits per step (ours)  : {syncs:8.1f}  {sites}")
    channels, size = train.channels, train.image_size
    flops = model_flops_per_image(ours.model, channels, size, device)
    repeats = args.steps * args.rounds
    bare_rate = bare_model_images_per_s(
        ours.model, args.batch_size, channels, size, device, repeats=repeats
    )
    for line in roofline_lines(flops, ours_rate, bare_rate, gemm_flops_per_s(device)):
        print(line)
    if args.compile:

        def make_trainer(compiled: bool) -> Trainer:
            overrides = [f"train.compile={compiled}", f"run.dir={workdir / f'compile_{compiled}'}"]
            variant = load_config(None, [*config_overrides(config), *overrides])
            return build_trainer(variant, train_data=train)

        for line in compare_compile(make_trainer, batches, args.steps, args.rounds):
            print(line)
    shutil.rmtree(workdir, ignore_errors=True)


def config_overrides(config) -> list[str]:
    """The benchmark's overrides, read back from its config (so the compile variants match)."""
    model, train = config.model, config.train
    return [
        f"model.backbone={model.backbone}",
        f"model.width={model.width}",
        f"train.batch_size={train.batch_size}",
        f"train.device={train.device}",
        "train.progress=false",
        "augment.blur=false",
    ]


if __name__ == "__main__":
    main()
