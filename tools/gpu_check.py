"""GPU figures in one short run (at most ~12 minutes on one H200-class GPU).

Prints, each measured side by side in this process:

1. SimCLR ResNet-50 (CIFAR stem) at 32 px: images/s and peak GPU memory of a full-data epoch
   and of an EMP epoch at 70 % pruning (batch memory term), and the EMP step overhead;
2. kornia augmentation throughput on the device (two SimCLR views of 32 px images);
3. kNN neighbour search, faiss (GPU index when faiss-gpu is installed) vs torch matmul + top-k,
   on 60,000 x 512 features, k = 200;
4. our SimCLR step vs the lightly-style reference loop (PIL ``SimCLRTransform`` in a
   ``DataLoader`` with workers), same model and batch: the images/s ratio;
5. host-device waits per training step and the roofline: the step's and the bare model's
   FLOP/s against the GPU's float32 GEMM rate (``tools/roofline.py``);
6. ``train.compile`` against eager: time to first step, images/s, loss difference (skipped
   with ``--reduced``, where compiling on the CPU alone would take a minute).

Data is synthetic CIFAR-shaped uint8 (no download needed). ``--reduced`` runs the same code
with tiny sizes on the CPU in seconds (the test suite does that so the script cannot rot).

    bash tools/gpu_check.sh                 # on a GPU machine
    python tools/gpu_check.py --reduced     # anywhere
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightly.transforms import SimCLRTransform
from reference_loop import PilImages, ReferenceLoop
from roofline import (
    bare_model_images_per_s,
    compare_compile,
    gemm_flops_per_s,
    host_syncs_per_step,
    model_flops_per_image,
    roofline_lines,
)

from ssl_emp.config import load_config
from ssl_emp.data import GlobalBatch, ImageData, index_batches
from ssl_emp.data.sources import DATASET_STATS
from ssl_emp.engine.optim import build_optimizer
from ssl_emp.engine.trainer import Trainer
from ssl_emp.experiments.train import build_trainer
from ssl_emp.methods import build_method
from ssl_emp.neighbours import faiss_available, search

SIZES = {
    "full": {
        "samples": 20000,
        "backbone": "resnet50",
        "width": 16,
        "batch": 512,
        "steps": 20,
        "knn": (60000, 10000, 512, 200),
        "workers": 8,
        "device": "cuda",
    },
    "reduced": {
        "samples": 256,
        "backbone": "resnet_small",
        "width": 4,
        "batch": 32,
        "steps": 2,
        "knn": (2000, 200, 32, 20),
        "workers": 0,
        "device": "cpu",
    },
}


def synthetic_cifar(samples: int, seed: int = 0) -> ImageData:
    """CIFAR-shaped uint8 data (3 x 32 x 32, 10 classes) with CIFAR-10 statistics."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (samples, 3, 32, 32), dtype=torch.uint8, generator=generator)
    mean, std = DATASET_STATS["cifar10"]
    return ImageData(images, torch.arange(samples) % 10, 10, mean, std, "synthetic_cifar")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def make_trainer(
    workdir: Path, name: str, size: dict, data: ImageData, extra: list[str]
) -> Trainer:
    overrides = [
        f"model.backbone={size['backbone']}",
        f"model.width={size['width']}",
        "model.cifar_stem=true",
        f"train.batch_size={size['batch']}",
        f"train.device={size['device']}",
        "train.progress=false",
        "train.epochs=100",
        "pruning.warmup_epochs=0",
        "augment.blur=false",
        f"run.dir={workdir / name}",
        *extra,
    ]
    trainer = build_trainer(load_config(None, overrides), train_data=data)
    scores = torch.rand(len(data), generator=torch.Generator().manual_seed(1))
    trainer.pruner.step(torch.arange(len(data)), scores * 5, scores, epoch=0)
    return trainer


def section_training(workdir: Path, size: dict, data: ImageData) -> Trainer:
    device = torch.device(size["device"])
    results = {}
    for name, extra in (
        ("full", ["pruning.policy=full"]),
        ("emp70", ["pruning.policy=emp", "pruning.rate=0.7"]),
    ):
        trainer = make_trainer(workdir, name, size, data, extra)
        warmup = torch.arange(size["batch"], device=trainer.device)
        trainer.train_step(
            GlobalBatch.single(warmup), progress=0.0
        )  # kernels, allocator and autotuning
        trainer.pruner.table.train_count.zero_()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = timed(trainer.train_epoch, device)
        images = trainer.state.visits
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
        results[name] = (seconds, images, peak, trainer)
    full, emp = results["full"], results["emp70"]
    print(f"1. SimCLR {size['backbone']} 32 px, batch {size['batch']}, {len(data)} images")
    for name, (seconds, images, peak, _) in results.items():
        print(
            f"   {name:6s}: epoch {seconds:7.2f} s, {images / seconds:9.0f} images/s, "
            f"peak GPU memory {peak:.2f} GiB"
        )
    print(f"   EMP-70 epoch / full epoch: {emp[0] / full[0]:.3f} (hard-rate target <= 0.35)")
    return full[3]


def section_augmentation(size: dict, data: ImageData, trainer: Trainer) -> None:
    device = torch.device(size["device"])
    images = data.images[: size["batch"]].to(device)
    augmentation = trainer.model.augmentation
    augmentation.two_views(images)
    rounds = size["steps"]
    seconds = timed(lambda: [augmentation.two_views(images) for _ in range(rounds)], device)
    views = 2 * rounds * len(images)
    print(
        f"2. kornia SimCLR views on {device.type}: {views / seconds:,.0f} views/s "
        f"(batch {len(images)}, 32 px)"
    )


def section_knn(size: dict) -> None:
    database_size, queries_size, dim, k = size["knn"]
    device = torch.device(size["device"])
    generator = torch.Generator().manual_seed(0)
    database = F.normalize(torch.randn(database_size, dim, generator=generator), dim=1).to(device)
    queries = F.normalize(torch.randn(queries_size, dim, generator=generator), dim=1).to(device)
    backend = "faiss" if faiss_available() else "torch (faiss missing)"
    faiss_s = timed(lambda: search(database, queries, k, use_faiss=True), device)
    torch_s = timed(lambda: search(database, queries, k, use_faiss=False), device)
    print(
        f"3. kNN {database_size} x {dim}, {queries_size} queries, k={k}: {backend} "
        f"{faiss_s:.3f} s, torch {torch_s:.3f} s, torch/faiss {torch_s / faiss_s:.2f}x"
    )


def section_reference(size: dict, data: ImageData, trainer: Trainer) -> None:
    device = torch.device(size["device"])
    config = trainer.config
    model = build_method(config, data).to(device)
    transform = SimCLRTransform(
        input_size=32,
        min_scale=0.2,
        cj_strength=0.5,
        gaussian_blur=0.0,
        normalize={"mean": list(data.mean), "std": list(data.std)},
    )
    reference = ReferenceLoop(
        PilImages(data.images, data.labels, transform),
        model,
        build_optimizer(model, config.train),
        config.method.temperature,
        size["batch"],
        size["workers"],
        device,
    )
    batches = index_batches(
        torch.arange(len(data), device=trainer.device),
        size["batch"],
        generator=torch.Generator().manual_seed(0),
    )

    def ours() -> None:
        for batch in batches[: size["steps"]]:
            trainer.train_step(GlobalBatch.single(batch), progress=0.5)

    def theirs() -> None:
        for _ in range(size["steps"]):
            reference.step()

    ours()
    theirs()
    ours_s, theirs_s = timed(ours, device), timed(theirs, device)
    images = size["steps"] * size["batch"]
    print(
        f"4. ours {images / ours_s:,.0f} images/s vs lightly-style loop {images / theirs_s:,.0f}"
        f" images/s ({size['workers']} workers): ratio {theirs_s / ours_s:.2f}x"
    )


def section_roofline(size: dict, data: ImageData, trainer: Trainer) -> None:
    device = trainer.device
    batches = index_batches(
        torch.arange(len(data), device=device),
        size["batch"],
        generator=torch.Generator().manual_seed(0),
    )
    position = 0

    def step() -> None:
        nonlocal position
        trainer.train_step(GlobalBatch.single(batches[position % len(batches)]), progress=0.5)
        position += 1

    syncs, sites = host_syncs_per_step(step)
    print(f"5. host-device waits per step: {syncs:.1f} {sites}")
    step_rate = (
        size["steps"]
        * size["batch"]
        / timed(lambda: [step() for _ in range(size["steps"])], device)
    )
    flops = model_flops_per_image(trainer.model, data.channels, data.image_size, device)
    bare = bare_model_images_per_s(
        trainer.model, size["batch"], data.channels, data.image_size, device, size["steps"]
    )
    for line in roofline_lines(flops, step_rate, bare, gemm_flops_per_s(device)):
        print(f"   {line}")


def section_compile(workdir: Path, size: dict, data: ImageData, reduced: bool) -> None:
    if reduced:
        print("6. train.compile: skipped with --reduced")
        return
    batches = index_batches(
        torch.arange(len(data)), size["batch"], generator=torch.Generator().manual_seed(0)
    )

    def make(compiled: bool) -> Trainer:
        extra = ["pruning.policy=full", f"train.compile={compiled}"]
        return make_trainer(workdir, f"compile_{compiled}", size, data, extra)

    print("6. train.compile")
    for line in compare_compile(make, [b.to(size["device"]) for b in batches], size["steps"], 2):
        print(f"   {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reduced", action="store_true", help="tiny CPU run (for tests)")
    args = parser.parse_args()
    size = SIZES["reduced" if args.reduced else "full"]
    if size["device"] == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; use --reduced for a CPU check")
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        if size["device"] == "cuda":
            print(f"device: {torch.cuda.get_device_name()}")
        data = synthetic_cifar(size["samples"])
        trainer = section_training(workdir, size, data)
        section_augmentation(size, data, trainer)
        section_knn(size)
        section_reference(size, data, trainer)
        section_roofline(size, data, trainer)
        section_compile(workdir, size, data, args.reduced)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
