"""Golden runs: small deterministic CPU runs whose every number a refactor must keep.

``record`` trains each run through the command line (so it exercises the same path a user
does, whatever the package's internal layout) and writes what came out, timing fields aside,
to ``tests/golden/golden_runs.json``: every ``metrics.jsonl`` value, a SHA-256 of every array in
``scores.npz`` and ``label_noise.npz``, ``eval.json``, and a SHA-256 of the final model
weights. ``check`` trains them again and lists every difference (exit 1 if any).

Floating-point results depend on the CPU's vector unit, so the file records the torch
version and CPU capability it was made with; ``check`` refuses to compare across them, except
that runs recorded on an AVX2 CPU are checked on an AVX-512 one with the libraries pinned to
AVX2 (``AVX2_PINS`` in ``ssl_emp/engine/platform.py``), which computes the same numbers.

    python tools/golden_runs.py record        # before a refactor
    python tools/golden_runs.py check         # after it: must print "identical"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ssl_emp.engine.checkpoint import list_checkpoints  # noqa: E402
from ssl_emp.engine.platform import AVX2_PINS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_FILE = ROOT / "tests" / "golden" / "golden_runs.json"
TIMING_FIELDS = {"wall_time_s", "images_per_s", "bank_pass_s"}

TINY = [
    "data.source=synthetic",
    "data.synthetic_size=64",
    "data.synthetic_classes=4",
    "data.subset=null",
    "model.width=4",
    "model.proj_dim=16",
    "train.epochs=4",
    "train.batch_size=16",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
]
SIMCLR = ["pretrain", "-c", "configs/simclr_fashion_mnist.yaml"]
MOCO = ["pretrain", "-c", "configs/moco_fashion_mnist.yaml", "method.queue_size=48"]
SUPERVISED = ["train-supervised", "-c", "configs/supervised_fashion_mnist.yaml"]
PRUNED = ["pruning.rate=0.5", "pruning.warmup_epochs=1"]

# name -> (command line after ``ssl-emp``, processes)
GOLDEN_RUNS: dict[str, tuple[list[str], int]] = {
    "simclr_emp": ([*SIMCLR, *TINY, *PRUNED, "pruning.policy=emp", "eval.knn_every=2"], 1),
    "simclr_ucb": ([*SIMCLR, *TINY, *PRUNED, "pruning.policy=ucb"], 1),
    "simclr_infobatch": ([*SIMCLR, *TINY, "pruning.policy=infobatch", "pruning.rate=0.5"], 1),
    "simclr_emp_bank": (
        [*SIMCLR, *TINY, *PRUNED, "pruning.policy=emp", "memory.estimator=bank", "memory.k=4"],
        1,
    ),
    "simclr_emp_projection_checkpoint_every": (
        [
            *SIMCLR,
            *TINY,
            *PRUNED,
            "pruning.policy=emp",
            "memory.layer=projection",
            "train.checkpoint_every=1",
        ],
        1,
    ),
    "supervised_emp_noise": (
        [*SUPERVISED, *TINY, *PRUNED, "pruning.policy=emp", "data.label_noise=0.25"],
        1,
    ),
    "moco_emp": ([*MOCO, *TINY, *PRUNED, "pruning.policy=emp"], 1),
    "simclr_emp_torchrun": (
        [
            *SIMCLR,
            *TINY,
            *PRUNED,
            "pruning.policy=emp",
            "train.batch_size=8",
            "memory.estimator=bank",
            "memory.k=4",
        ],
        2,
    ),
    "moco_eps_greedy_torchrun": (
        [*MOCO, *TINY, *PRUNED, "pruning.policy=eps_greedy", "train.batch_size=8"],
        2,
    ),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sha256(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _model_digest(checkpoint: Path) -> str:
    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    digest = hashlib.sha256()
    for name, tensor in sorted(payload["model"].items()):
        digest.update(name.encode())
        digest.update(_sha256(tensor.detach().cpu().numpy()).encode())
    return digest.hexdigest()


def _summarise(run_dir: Path) -> dict[str, Any]:
    metrics = [
        {key: value for key, value in json.loads(line).items() if key not in TIMING_FIELDS}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    summary: dict[str, Any] = {"metrics": metrics}
    for name in ("scores.npz", "label_noise.npz"):
        if (run_dir / name).is_file():
            with np.load(run_dir / name) as arrays:
                summary[name] = {key: _sha256(arrays[key]) for key in sorted(arrays.files)}
    if (run_dir / "eval.json").is_file():
        summary["eval.json"] = json.loads((run_dir / "eval.json").read_text())
    final = list_checkpoints(run_dir / "checkpoints")[-1]  # the newest, in training order
    summary["final_checkpoint"] = final.name
    summary["model_sha256"] = _model_digest(final)
    return summary


def train_one(name: str, workdir: Path, pins: dict[str, str] | None = None) -> dict[str, Any]:
    """Train golden run ``name`` into ``workdir/name`` (with the environment variables
    ``pins`` set); returns its summary."""
    arguments, processes = GOLDEN_RUNS[name]
    run_dir = workdir / name
    command = [sys.executable]
    if processes > 1:
        command += [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            f"--master_port={_free_port()}",
        ]
    command += ["-m", "ssl_emp", *arguments, f"run.dir={run_dir}"]
    environment = {**os.environ, **(pins or {})}
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment
    )
    if result.returncode != 0:
        raise RuntimeError(f"golden run {name} failed:\n{result.stderr[-3000:]}")
    return _summarise(run_dir)


def train_all(
    names: list[str], jobs: int, pins: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Summaries of the golden runs ``names`` (``jobs`` at a time, ``pins`` set)."""
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(jobs) as pool:
        summaries = pool.map(lambda name: train_one(name, Path(workdir), pins), names)
        return dict(zip(names, summaries, strict=True))


def machine() -> dict[str, str]:
    """What floating-point results depend on."""
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def pins_for(recorded: dict[str, str]) -> dict[str, str] | None:
    """The environment that makes this machine compute what ``recorded`` computed: none
    needed on the same machine, :data:`AVX2_PINS` for AVX2 runs on an AVX-512 CPU of the same
    torch; None when no setting is known to make them agree."""
    here = machine()
    if recorded == here:
        return {}
    same_torch = recorded.get("torch") == here["torch"]
    if (
        same_torch
        and recorded.get("cpu_capability") == "AVX2"
        and here["cpu_capability"] == "AVX512"
    ):
        return dict(AVX2_PINS)
    return None


def differences(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Every path at which two JSON-like values differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual or key not in expected:
                found.append(f"{where}/{key}: only in {'recorded' if key in expected else 'new'}")
            else:
                found += differences(expected[key], actual[key], f"{where}/{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} entries recorded, {len(actual)} now"]
        return [
            diff
            for index, (old, new) in enumerate(zip(expected, actual, strict=True))
            for diff in differences(old, new, f"{where}[{index}]")
        ]
    return [] if expected == actual else [f"{where}: recorded {expected!r}, now {actual!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("record", "check"))
    parser.add_argument("--runs", default=",".join(GOLDEN_RUNS), help="comma-separated names")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    args = parser.parse_args()
    names = [name for name in args.runs.split(",") if name]
    if args.action == "record":
        runs = train_all(names, args.jobs)
        if GOLDEN_FILE.is_file() and set(names) != set(GOLDEN_RUNS):
            # re-recording some runs keeps the others (recorded on this machine)
            kept = json.loads(GOLDEN_FILE.read_text())
            if kept["machine"] == machine():
                runs = {**kept["runs"], **runs}
        golden = {"machine": machine(), "runs": runs}
        GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(names)} golden runs in {GOLDEN_FILE}")
        return 0
    golden = json.loads(GOLDEN_FILE.read_text())
    pins = pins_for(golden["machine"])
    if pins is None:
        print(f"cannot compare: recorded on {golden['machine']}, this is {machine()}")
        return 2
    if pins:
        print(f"recorded on {golden['machine']}, this is {machine()}: checking pinned to AVX2")
    found = differences({n: golden["runs"][n] for n in names}, train_all(names, args.jobs, pins))
    for line in found:
        print(line)
    print("identical" if not found else f"{len(found)} differences")
    return 0 if not found else 1


if __name__ == "__main__":
    raise SystemExit(main())
