"""Streaming a store does not pull it into memory: anonymous memory (workers included) grows
by at most 100 MB from a 4,000-image store to a ~300 MB one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_emp.config import load_config
from ssl_emp.data.prepare import prepare_store

MEASURE = r"""
import json, os, sys, threading, time
from ssl_emp.config import load_config
from ssl_emp.experiments.train import build_trainer

def anon_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(c) for c in listing.read().split()]
    except OSError:
        return []

peak = [0]
done = threading.Event()
def sample():
    me = os.getpid()
    while not done.is_set():
        total = anon_kib(me) + sum(anon_kib(child) for child in children(me))
        peak[0] = max(peak[0], total)
        time.sleep(0.02)

config = load_config(None, sys.argv[2:])
trainer = build_trainer(config)
threading.Thread(target=sample, daemon=True).start()
trainer.fit()
done.set()
print(json.dumps({"peak_anon_kib": peak[0]}))
"""


def _peak_anon_kib(store: Path, run_dir: Path) -> int:
    overrides = [
        "data.source=store",
        f"data.root={store}",
        "data.workers=2",
        "model.width=4",
        "model.proj_dim=16",
        "train.batch_size=256",
        "train.epochs=1",
        "train.threads=1",
        "train.progress=false",
        "pruning.policy=random",
        "pruning.rate=0.9",
        "pruning.warmup_epochs=0",
        "memory.estimator=batch",
        f"run.dir={run_dir}",
    ]
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, "--", *overrides],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_anon_kib"]


@pytest.mark.slow
def test_streaming_a_300_mb_store_grows_anonymous_memory_by_at_most_100_mb(tmp_path: Path) -> None:
    stores = {}
    for size in (4000, 400_000):
        config = load_config(None, ["data.source=synthetic", f"data.synthetic_size={size}"])
        stores[size] = tmp_path / f"store_{size}"
        prepare_store(config.data, seed=0, out=str(stores[size]), log=lambda _: None)
    assert (stores[400_000] / "train_images.u8").stat().st_size == 400_000 * 3 * 16 * 16
    small = _peak_anon_kib(stores[4000], tmp_path / "small")
    large = _peak_anon_kib(stores[400_000], tmp_path / "large")
    growth_mb = (large - small) / 1024
    print(f"peak anonymous memory: {small / 1024:.0f} MB (4k store), {large / 1024:.0f} MB (400k)")
    assert growth_mb <= 100, f"grew by {growth_mb:.0f} MB"
