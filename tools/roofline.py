"""How close a training step comes to the machine's limit, measured in the same process.

Shared by ``tools/bench_throughput.py`` (CPU) and ``tools/gpu_check.py`` (GPU):

- :func:`gemm_flops_per_s`: the machine's float32 matrix-multiply rate (the roofline's top);
- :func:`model_flops_per_image`: the floating-point operations of the model's forward and
  backward for one image (both views), counted once with torch's ``FlopCounterMode``;
- :func:`bare_model_images_per_s`: the same forward and backward on ready float tensors,
  without views, loss, scores or optimizer, so the overhead of everything else is visible;
- :func:`host_syncs_per_step`: host-device waits per training step;
- :func:`compare_compile`: ``train.compile`` against eager, side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssl_emp.data import GlobalBatch
from ssl_emp.engine.syncs import HostSyncCounter
from ssl_emp.engine.trainer import Trainer
from ssl_emp.methods.base import Method


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds per call of ``step`` after one warm-up call."""
    step()
    synchronise(device)
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronise(device)
    return (time.perf_counter() - started) / repeats


def gemm_flops_per_s(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """float32 FLOP/s of an n x n matrix product (2 n^3 operations), TF32 off on CUDA so it is
    the float32 rate the model's convolutions run at."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.randn(size, size, device=device, generator=generator)
    right = torch.randn(size, size, device=device, generator=generator)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = timed(lambda: left @ right, device, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * size**3 / seconds


def _ready_views(
    method: Method, batch: int, channels: int, size: int, device: torch.device
) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(0)
    return torch.randn(2 * batch, channels, size, size, device=device, generator=generator)


def _forward_backward(method: Method, views: torch.Tensor) -> None:
    features = method.backbone(views)
    head = getattr(method, "projection_head", None) or getattr(method, "classifier", None)
    outputs = head(features) if head is not None else features
    outputs.float().square().mean().backward()


def model_flops_per_image(method: Method, channels: int, size: int, device: torch.device) -> float:
    """FLOPs of backbone and head, forward and backward, per image (its two views), counted
    on a batch of 2 images; the optimizer and the loss are not counted (they are small)."""
    views = _ready_views(method, 2, channels, size, device)
    counter = FlopCounterMode(display=False)
    with counter:
        _forward_backward(method, views)
    method.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def bare_model_images_per_s(
    method: Method, batch: int, channels: int, size: int, device: torch.device, repeats: int
) -> float:
    """Images/s (two views each) of backbone and head forward and backward alone."""
    views = _ready_views(method, batch, channels, size, device)

    def step() -> None:
        _forward_backward(method, views)
        method.zero_grad(set_to_none=True)

    return batch / timed(step, device, repeats)


def host_syncs_per_step(step: Callable[[], object], steps: int = 3) -> tuple[float, dict[str, int]]:
    """Host-device waits per call of ``step`` (after one warm-up call) and where they are."""
    step()
    counter = HostSyncCounter()
    with counter:
        for _ in range(steps):
            step()
    return counter.count / steps, dict(counter.sites)


def roofline_lines(
    flops_per_image: float, step_rate: float, bare_rate: float, gemm_rate: float
) -> list[str]:
    """The benchmark's report: achieved FLOP/s of the step and of the bare model, each as a
    share of the GEMM rate, and the step's share of the bare model's speed."""
    step_flops, bare_flops = flops_per_image * step_rate, flops_per_image * bare_rate
    return [
        f"model fwd+bwd per image (2 views)  : {flops_per_image / 1e6:8.1f} MFLOP "
        "(FlopCounterMode)",
        f"float32 GEMM rate of this machine  : {gemm_rate / 1e9:8.1f} GFLOP/s",
        f"training step                      : {step_flops / 1e9:8.1f} GFLOP/s = "
        f"{step_flops / gemm_rate:6.1%} of GEMM",
        f"bare model fwd+bwd (ready tensors) : {bare_flops / 1e9:8.1f} GFLOP/s = "
        f"{bare_flops / gemm_rate:6.1%} of GEMM ({bare_rate:.1f} images/s)",
        f"step / bare model                  : {step_rate / bare_rate:8.2f}x "
        "(the rest: views, loss, scores, optimizer)",
    ]


def compare_compile(
    make_trainer: Callable[[bool], Trainer], batches: list[torch.Tensor], steps: int, rounds: int
) -> list[str]:
    """Our step with and without ``train.compile`` (``make_trainer(compiled)``), from the same
    weights, in alternating blocks of ``steps``: time to the first step (compilation),
    images/s after it, and the largest difference of the per-sample losses of that first
    step (same weights, same views; later steps drift apart as after any change in the
    order of float sums)."""
    trainers = {compiled: make_trainer(compiled) for compiled in (False, True)}
    trainers[True].model.load_state_dict(trainers[False].model.state_dict())
    device = trainers[False].device
    first, losses, timings = {}, {}, {False: 0.0, True: 0.0}
    for compiled, trainer in trainers.items():
        torch.manual_seed(1)  # the same views for both
        synchronise(device)
        started = time.perf_counter()
        outcome = trainer.train_step(GlobalBatch.single(batches[0]), progress=0.5)
        synchronise(device)
        first[compiled] = time.perf_counter() - started
        assert outcome is not None
        losses[compiled] = outcome.losses
    images = 0
    for _ in range(rounds):
        for compiled, trainer in trainers.items():
            synchronise(device)
            started = time.perf_counter()
            for position in range(steps):
                batch = batches[(1 + position) % len(batches)]
                trainer.train_step(GlobalBatch.single(batch), progress=0.5)
                images += len(batch) if compiled else 0
            synchronise(device)
            timings[compiled] += time.perf_counter() - started
    eager, compiled_rate = images / timings[False], images / timings[True]
    difference = float((losses[False] - losses[True]).abs().max())
    return [
        f"eager        : first step {first[False]:6.1f} s, then {eager:8.1f} images/s",
        f"train.compile: first step {first[True]:6.1f} s, then {compiled_rate:8.1f} images/s",
        f"compiled / eager                   : {compiled_rate / eager:8.2f}x",
        f"largest per-sample loss difference : {difference:.2e} (first step, same weights)",
    ]
