"""Sweeps (restartable) and comparison reports (numbers equal the runs' files)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ssl_emp.cli import main
from ssl_emp.config import load_config
from ssl_emp.engine.lock import RunLock
from ssl_emp.errors import RunDirectoryBusyError, UserInputError
from ssl_emp.experiments.compare import aggregate, collect, compare
from ssl_emp.experiments.grid import plan_runs
from ssl_emp.experiments.paired import budget_gap, paired_interval, paired_results
from ssl_emp.experiments.sweep import find_run_dirs, results_table, sweep
from ssl_emp.experiments.train import build_trainer
from tests.conftest import ROOT, TINY_OVERRIDES, metrics_records


def test_plan_runs_grid() -> None:
    runs = plan_runs(
        ["full", "random", "emp"], [0.5, 0.7], [0, 1], betas=[0.0, 1.0], estimators=["batch"]
    )
    names = [run.name for run in runs]
    assert names[:2] == ["full_s0", "full_s1"]
    assert "random_r0.7_s1" in names and "emp_r0.5_s0_b1_batch" in names
    assert len(runs) == 2 + 4 + 8
    with pytest.raises(UserInputError, match="unknown policy 'greedy'"):
        plan_runs(["greedy"], [0.5], [0])


def test_plan_runs_direction_axis_and_the_bank_for_prototypes() -> None:
    runs = plan_runs(
        ["random", "eps_greedy", "prototypical", "scan"], [0.7], [0], directions=["hard", "easy"]
    )
    by_name = {run.name: run.overrides for run in runs}
    assert list(by_name) == [
        "random_r0.7_s0",  # ranks nothing: no direction axis
        "eps_greedy_r0.7_s0",
        "eps_greedy_r0.7_s0_easy",
        "prototypical_r0.7_s0_hard",  # easy is its default
        "prototypical_r0.7_s0",
        "scan_r0.7_s0",
    ]
    assert "pruning.direction=easy" in by_name["eps_greedy_r0.7_s0_easy"]
    assert "memory.estimator=bank" in by_name["prototypical_r0.7_s0"]
    assert not any("direction" in item for item in by_name["scan_r0.7_s0"])
    with pytest.raises(UserInputError, match="unknown direction 'up'"):
        plan_runs(["topk"], [0.5], [0], directions=["up"])
    with pytest.raises(UserInputError, match="outside"):
        plan_runs(["topk"], [0.5, 1.5], [0])


def _fabricate_run(
    root: Path,
    name: str,
    policy: str,
    rate: float,
    seed: int,
    probe: float,
    knn: float,
    visits: int,
    overrides: tuple[str, ...] = (),
    effective_rate: float | None = None,
) -> None:
    """A finished run directory (2 epochs of 100 samples unless ``effective_rate`` says
    another full budget) with the given results."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    config = load_config(
        None,
        [
            f"pruning.policy={policy}",
            f"pruning.rate={rate}",
            f"seed={seed}",
            f"run.dir={run}",
            *overrides,
        ],
    )
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    records = [
        {
            "epoch": e,
            "loss": 1.0,
            "kept": 10,
            "visits": visits * e // 2,
            "effective_rate": 1 - visits / 200 if effective_rate is None else effective_rate,
            "wall_time_s": 1.5,
            "train_count_gini": 0.2,
            "memory_mean": 0.5,
            "memory_std": 0.1,
            "memory_q10": 0.4,
            "memory_q50": 0.5,
            "memory_q90": 0.6,
        }
        for e in (1, 2)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "probe.json").write_text(json.dumps({"top1": probe}))
    (run / "knn.json").write_text(json.dumps({"top1": knn}))
    np.savez(
        run / "scores.npz",
        train_count=np.array([0, 1, 2, 2, 5]),
        score=np.zeros(5),
        memory=np.zeros(5),
    )


def test_compare_csv_equals_run_files_and_plots_exist(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    _fabricate_run(sweep_dir, "full_s0", "full", 0.5, 0, probe=0.84, knn=0.80, visits=200)
    _fabricate_run(sweep_dir, "emp_r0.7_s0", "emp", 0.7, 0, probe=0.83, knn=0.79, visits=80)
    _fabricate_run(sweep_dir, "emp_r0.7_s1", "emp", 0.7, 1, probe=0.81, knn=0.77, visits=80)
    out = compare([str(sweep_dir)], str(tmp_path / "out"))
    with open(out / "results.csv") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"full_s0", "emp_r0.7_s0", "emp_r0.7_s1"}
    for name, row in rows.items():
        run = sweep_dir / name
        assert float(row["probe_top1"]) == json.loads((run / "probe.json").read_text())["top1"]
        assert float(row["knn_top1"]) == json.loads((run / "knn.json").read_text())["top1"]
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        assert float(row["effective_rate"]) == last["effective_rate"]
        assert int(row["visits"]) == last["visits"]
        assert float(row["wall_time_s"]) == 3.0
    assert rows["full_s0"]["rate"] == "0.0"
    for name in (
        "accuracy_vs_effective_rate.png",
        "memory_by_rate.png",
        "train_count_hist.png",
        "cost.png",
        "report.md",
    ):
        assert (out / name).stat().st_size > 1000 or name == "report.md"
    report = (out / "report.md").read_text()
    assert "| emp (batch) | 0.7 | 2 |" in report
    assert "82.00 ± 1.00" in report  # probe mean ± std of 0.83 and 0.81


def test_a_mean_over_fewer_seeds_than_the_variant_has_says_so(tmp_path: Path) -> None:
    """Three EMP seeds, one not evaluated yet (no probe.json, as while another process
    evaluates it): the probe mean is the other two runs' (82.00) and is marked as such in
    report.md and in the sweep's table; kNN, known for all three (77.00), is not marked."""
    sweep_dir = tmp_path / "sweep"
    for seed, (probe, knn) in enumerate(((0.83, 0.78), (0.81, 0.76), (0.50, 0.77))):
        _fabricate_run(sweep_dir, f"emp_r0.7_s{seed}", "emp", 0.7, seed, probe, knn, visits=80)
    (sweep_dir / "emp_r0.7_s2" / "probe.json").unlink()
    out = compare([str(sweep_dir)], str(tmp_path / "out"))
    row = next(line for line in (out / "report.md").read_text().splitlines() if "| emp" in line)
    assert "| 82.00 ± 1.00 (2 of 3 seeds) | 77.00 ± 0.82 |" in row
    table = results_table(sweep_dir, plan_runs(["emp"], [0.7], [0, 1, 2]))
    assert " 82.00 ±  1.00 (2 of 3 seeds)   77.00 ±  0.82" in table[1]


def test_compare_rejects_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="holds no run directories"):
        compare([str(tmp_path)], str(tmp_path / "out"))


def test_restarted_sweep_does_not_rerun_finished_runs(tmp_path: Path, capsys) -> None:
    config = ROOT / "configs" / "simclr_fashion_mnist.yaml"
    overrides = [*TINY_OVERRIDES, "data.subset=null", "train.batch_size=8"]
    runs = plan_runs(["full", "topk"], [0.5], [0])
    sweep_dir = tmp_path / "sweep"
    # a run killed after its first epoch: a checkpoint but no scores.npz
    partial = load_config(
        config, [*overrides, *runs[1].overrides, f"run.dir={sweep_dir / runs[1].name}"]
    )
    build_trainer(partial).fit(until_epoch=1)
    first_epoch = (sweep_dir / runs[1].name / "metrics.jsonl").read_text().splitlines()[0]
    sweep(str(config), str(sweep_dir), runs, overrides)
    out = capsys.readouterr().out
    assert "full_s0: start" in out and "topk_r0.5_s0: resume" in out
    metrics = (sweep_dir / runs[1].name / "metrics.jsonl").read_text().splitlines()
    assert metrics[0] == first_epoch and len(metrics) == 2
    stamps = {run.name: (sweep_dir / run.name / "metrics.jsonl").stat().st_mtime_ns for run in runs}
    sweep(str(config), str(sweep_dir), runs, overrides)
    assert "full_s0: done" in capsys.readouterr().out
    for run in runs:
        assert (sweep_dir / run.name / "metrics.jsonl").stat().st_mtime_ns == stamps[run.name]
        assert (sweep_dir / run.name / "probe.json").is_file()
        assert (sweep_dir / run.name / "knn.json").is_file()
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert [r["action"] for r in manifest["runs"]] == ["done", "done"]
    assert manifest["overrides"] == overrides  # the sweep can be rebuilt from its manifest
    assert manifest["shared"]["train.batch_size"] == 8
    # a re-run with other shared settings would mix them into these runs: refused
    with pytest.raises(UserInputError, match=r"other shared settings: train.epochs=3"):
        sweep(str(config), str(sweep_dir), runs, [*overrides, "train.epochs=3"])
    # a later invocation with more cells keeps the earlier ones in the manifest
    more = plan_runs(["random"], [0.5], [0])
    sweep(str(config), str(sweep_dir), more, overrides, evaluate=False)
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == ["full_s0", "topk_r0.5_s0", "random_r0.5_s0"]


def test_sweep_checks_every_cell_before_training_and_ends_with_its_results(
    tmp_path: Path, capsys
) -> None:
    config = str(ROOT / "configs" / "simclr_fashion_mnist.yaml")
    base = ["sweep", "-c", config, "--dir", str(tmp_path / "s"), *TINY_OVERRIDES]
    base += ["data.subset=null", "train.batch_size=8", "eval.knn_k=5", "eval.probe_epochs=2"]
    for bad, message in (
        (["--rates", "0.5,1.5"], "outside"),
        (["--estimators", "bank,bogus"], "unknown memory estimator 'bogus'"),
        (["--seeds", "0,-1"], "negative"),
        (["--policies", "random", "--directions", "easy,up"], "unknown direction"),
        (["--policies", "random,topk", "pruning.direction=easy"], "applies to the policies"),
    ):
        assert main([*base, *bad]) == 2, bad
        assert message in capsys.readouterr().err
        assert not (tmp_path / "s").exists()  # nothing trained, nothing created
    assert main([*base, "--policies", "random,topk", "--rates", "0.5", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("results of") :].splitlines()
    assert table[1].split() == ["variant", "rate", "seeds", "eff.rate", "probe", "kNN"]
    rows = collect(find_run_dirs([str(tmp_path / "s")]))
    random_probe = [100 * row["probe_top1"] for row in rows if row["policy"] == "random"]
    random_line = next(line for line in table if line.startswith("random"))
    assert f"{np.mean(random_probe):.2f} ± {np.std(random_probe):5.2f}" in random_line
    assert random_line.split()[1:3] == ["0.5", "2"]


def test_sweep_and_compare_cli(tmp_path: Path) -> None:
    config = ROOT / "configs" / "simclr_fashion_mnist.yaml"
    sweep_dir = tmp_path / "s"
    code = main(
        [
            "sweep",
            "-c",
            str(config),
            "--dir",
            str(sweep_dir),
            "--policies",
            "full,emp",
            "--rates",
            "0.5",
            "--seeds",
            "0",
            *TINY_OVERRIDES,
            "data.subset=null",
            "train.batch_size=8",
            "eval.knn_k=5",
        ]
    )
    assert code == 0
    assert main(["compare", str(sweep_dir)]) == 0
    with open(sweep_dir / "results.csv", newline="") as stream:
        rows = {row["run"]: row for row in csv.DictReader(stream)}
    assert sorted(rows) == ["emp_r0.5_s0", "full_s0"]
    for name, row in rows.items():
        last = metrics_records(sweep_dir / name)[-1]
        assert float(row["effective_rate"]) == pytest.approx(last["effective_rate"])
        probe = json.loads((sweep_dir / name / "probe.json").read_text())
        assert float(row["probe_top1"]) == pytest.approx(probe["top1"])
    assert float(rows["full_s0"]["effective_rate"]) == 0.0
    assert float(rows["emp_r0.5_s0"]["effective_rate"]) == pytest.approx(0.25)  # 1 of 2 pruned
    report = (sweep_dir / "report.md").read_text()
    assert "emp_r0.5_s0" in report and "full_s0" in report
    assert main(["sweep", "-c", str(config), "--dir", str(sweep_dir), "--rates", "x"]) == 2


def test_paired_comparison_against_the_baseline(tmp_path: Path, capsys) -> None:
    sweep_dir = tmp_path / "sweep"
    random_probe = [0.80, 0.78, 0.83]
    emp_probe = [0.81, 0.80, 0.86]  # +1, +2, +3 points: paired, much tighter than the spread
    for seed in range(3):
        _fabricate_run(
            sweep_dir, f"random_r0.7_s{seed}", "random", 0.7, seed, random_probe[seed], 0.7, 80
        )
        _fabricate_run(sweep_dir, f"emp_r0.7_s{seed}", "emp", 0.7, seed, emp_probe[seed], 0.7, 80)
    # infobatch spent another budget (effective rate 0.35 vs 0.6): flagged, no verdict
    for seed in range(3):
        _fabricate_run(sweep_dir, f"infobatch_r0.7_s{seed}", "infobatch", 0.7, seed, 0.9, 0.7, 130)
    assert main(["compare", str(sweep_dir), "--baseline", "random"]) == 0
    with open(sweep_dir / "paired.csv") as handle:
        paired = {(r["variant"], r["metric"]): r for r in csv.DictReader(handle)}
    emp = paired[("emp (batch)", "probe_top1")]
    # by hand: differences 0.01, 0.02, 0.03 -> mean 0.02, s = 0.01, t(2) = 4.303
    half = 4.303 * 0.01 / 3**0.5
    assert float(emp["mean_difference"]) == pytest.approx(0.02)
    assert float(emp["ci_low"]) == pytest.approx(0.02 - half)
    assert float(emp["ci_high"]) == pytest.approx(0.02 + half)
    assert (emp["n"], emp["wins"], emp["ties"], emp["losses"]) == ("3", "3", "0", "0")
    assert emp["verdict"] == "tie"  # the interval [-0.48, +4.48] points includes zero
    knn = paired[("emp (batch)", "knn_top1")]
    assert float(knn["mean_difference"]) == 0.0 and knn["ties"] == "3"
    flagged = paired[("infobatch", "probe_top1")]
    assert flagged["verdict"] == "not comparable (other effective rate)"
    with open(sweep_dir / "results.csv") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert float(rows["emp_r0.7_s2"]["probe_top1_vs_baseline"]) == pytest.approx(0.03)
    assert rows["random_r0.7_s0"]["probe_top1_vs_baseline"] == "0.0"
    report = (sweep_dir / "report.md").read_text()
    assert "## Paired differences vs random" in report
    assert "| emp (batch) | 0.7 | 0.7 | probe_top1 | 3 | +2.00 | [-0.48, +4.48] | 3/0/0 |" in report
    assert (sweep_dir / "paired_differences.png").stat().st_size > 1000
    assert main(["compare", str(sweep_dir), "--baseline", "ucb"]) == 2
    assert "--baseline ucb: no run of that policy" in capsys.readouterr().err


def test_emp_runs_on_two_memory_layers_are_two_variants(tmp_path: Path) -> None:
    """A layer sweep (backbone vs projection) must not pool both layers into one EMP row."""
    headline, projection = tmp_path / "headline", tmp_path / "projection"
    for seed in range(2):
        _fabricate_run(headline, f"random_r0.7_s{seed}", "random", 0.7, seed, 0.80, 0.7, 80)
        _fabricate_run(headline, f"emp_r0.7_s{seed}", "emp", 0.7, seed, 0.81, 0.7, 80)
        _fabricate_run(
            projection,
            f"emp_r0.7_s{seed}",
            "emp",
            0.7,
            seed,
            0.79,
            0.7,
            80,
            overrides=("memory.layer=projection",),
        )
    out = compare([str(headline), str(projection)], str(tmp_path / "out"), baseline="random")
    with open(out / "paired.csv") as handle:
        paired = {(r["variant"], r["metric"]): r for r in csv.DictReader(handle)}
    assert float(paired[("emp (batch)", "probe_top1")]["mean_difference"]) == (pytest.approx(0.01))
    assert float(paired[("emp (batch, projection)", "probe_top1")]["mean_difference"]) == (
        pytest.approx(-0.01)
    )
    # one layer only: the label stays short
    single = compare([str(headline)], str(tmp_path / "single"))
    assert "| emp (batch) | 0.7 | 2 |" in (single / "report.md").read_text()


def test_supervised_emp_runs_are_labelled_by_their_memory_term(tmp_path: Path) -> None:
    """Supervised EMP scores with the prediction entropy whatever memory.estimator says."""
    runs = tmp_path / "runs"
    supervised = ("method.name=supervised",)
    _fabricate_run(runs, "emp_r0.7_s0", "emp", 0.7, 0, 0.8, 0.7, 80, overrides=supervised)
    _fabricate_run(runs, "emp_ssl_r0.7_s0", "emp", 0.7, 0, 0.8, 0.7, 80)
    variants = {row["run"]: row["variant"] for row in collect(find_run_dirs([str(runs)]))}
    assert variants == {
        "emp_r0.7_s0": "emp (prediction)",
        "emp_ssl_r0.7_s0": "emp (batch, method simclr)",  # not pooled with the supervised run
    }


def test_paired_interval_with_more_seeds_shrinks_like_the_t_quantile() -> None:
    differences = [0.004, 0.006, 0.001, 0.009, 0.005, 0.007, 0.003, 0.005]
    mean, low, high = paired_interval(differences)
    sd = float(np.std(differences, ddof=1))
    assert mean == pytest.approx(0.005)
    assert high - mean == pytest.approx(2.365 * sd / 8**0.5)  # t(7)
    assert low > 0  # eight consistent wins: the interval excludes zero
    assert paired_interval([0.01]) == (0.01, None, None)


def test_runs_whose_configs_differ_are_never_pooled(tmp_path: Path, capsys) -> None:
    """Two seed-0 runs with 2 and 3 epochs (and batch 64 against 32) used to become one row
    "seeds 2"; every setting that differs now names its own variant."""
    runs = tmp_path / "runs"
    _fabricate_run(runs, "a", "random", 0.7, 0, 0.8, 0.7, 80, ("train.epochs=2",))
    _fabricate_run(runs, "b", "random", 0.7, 1, 0.8, 0.7, 80, ("train.epochs=2",))
    _fabricate_run(runs, "c", "random", 0.7, 0, 0.7, 0.7, 80, ("train.epochs=3",))
    _fabricate_run(
        runs, "d", "random", 0.7, 0, 0.7, 0.7, 80, ("train.epochs=2", "train.batch_size=32")
    )
    # beta is a setting random does not read: it does not split random's runs
    _fabricate_run(runs, "e", "random", 0.7, 2, 0.8, 0.7, 80, ("train.epochs=2", "pruning.beta=3"))
    rows = collect(find_run_dirs([str(runs)]))
    variants = {row["run"]: row["variant"] for row in rows}
    assert variants == {
        "a": "random",
        "b": "random",
        "c": "random (epochs 3)",
        "d": "random (batch_size 32)",
        "e": "random",
    }
    summary = {entry["variant"]: entry["seeds"] for entry in aggregate(rows)}
    assert summary == {"random": 3, "random (epochs 3)": 1, "random (batch_size 32)": 1}


def test_a_repeated_seed_is_counted_once(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "sweep_a", tmp_path / "sweep_b"
    _fabricate_run(first, "random_r0.7_s0", "random", 0.7, 0, 0.80, 0.7, 80)
    _fabricate_run(second, "random_r0.7_s0", "random", 0.7, 0, 0.82, 0.7, 80)
    _fabricate_run(second, "random_r0.7_s1", "random", 0.7, 1, 0.84, 0.7, 80)
    rows = collect(find_run_dirs([str(first), str(second)]))
    assert [entry["seeds"] for entry in aggregate(rows)] == [2]
    assert [row["probe_top1"] for row in rows] == [0.80, 0.84]  # the first of the repeats
    assert "repeats" in capsys.readouterr().err


def test_budget_matched_pairs_infobatch_and_shorter_full_runs(tmp_path: Path) -> None:
    """InfoBatch pairs with random at the effective rate it reached, full data for fewer
    epochs with random at the same number of sample-visits; each with its verdict."""
    runs = tmp_path / "runs"
    for seed in range(3):
        # 100 samples x 2 epochs: random at 0.7 trains 80 visits (eff. 0.6), at 0.3 130
        _fabricate_run(runs, f"r7_{seed}", "random", 0.7, seed, 0.80, 0.7, 80)
        _fabricate_run(runs, f"r3_{seed}", "random", 0.3, seed, 0.81 + seed / 100, 0.7, 130)
        _fabricate_run(runs, f"ib_{seed}", "infobatch", 0.7, seed, 0.85, 0.7, 131)
        # full data on 83 samples for 1 epoch: 83 visits, the budget of random at 0.7
        _fabricate_run(
            runs, f"full1_{seed}", "full", 0.0, seed, 0.79, 0.7, 83, ("train.epochs=1",), 0.0
        )
        # full data for 2 epochs (200 visits): no random run spent that
        _fabricate_run(runs, f"full2_{seed}", "full", 0.0, seed, 0.9, 0.7, 200)
    rows = collect(find_run_dirs([str(runs)]))
    results = {(r.variant, r.metric): r for r in paired_results(rows, "random", ["probe_top1"])}
    infobatch = results[("infobatch", "probe_top1")]
    assert infobatch.baseline_rates == (0.3,) and not infobatch.flagged
    assert infobatch.differences == pytest.approx([0.04, 0.03, 0.02])
    assert infobatch.verdict == "better"
    short = results[("full (epochs 1)", "probe_top1")]
    assert short.baseline_rates == (0.7,) and not short.flagged
    assert short.differences == pytest.approx([-0.01] * 3) and short.verdict == "worse"
    assert ("full", "probe_top1") not in results  # no random run spent its budget


def test_budget_gap_is_the_effective_rate_gap_for_runs_of_one_length() -> None:
    base = {"visits": 80, "effective_rate": 0.6}  # 200 = N x E
    assert budget_gap({"visits": 130, "effective_rate": 0.35}, base) == pytest.approx(0.25)
    # a run of half the length: 100 visits of N x E' = 100, against the same 200
    assert budget_gap({"visits": 84, "effective_rate": 0.0}, base) == pytest.approx(0.02)


def _shared_sweep_setup(tmp_path: Path) -> tuple[str, list[str], list, Path]:
    config = str(ROOT / "configs" / "simclr_fashion_mnist.yaml")
    overrides = [*TINY_OVERRIDES, "data.subset=null", "train.batch_size=8", "eval.knn_k=5"]
    return config, overrides, plan_runs(["full", "random"], [0.5], [0]), tmp_path / "sweep"


def test_a_shared_sweep_skips_the_runs_another_process_holds(tmp_path: Path, capsys) -> None:
    config, overrides, runs, sweep_dir = _shared_sweep_setup(tmp_path)
    held_dir = sweep_dir / runs[0].name
    held_dir.mkdir(parents=True)
    (held_dir / "notes.txt").write_text("the other process's file")
    other_process = RunLock(held_dir)  # a second open file: flock refuses it like a process
    other_process.acquire()
    # an ordinary sweep stops at the held run, naming its holder, and changes nothing in it
    with pytest.raises(RunDirectoryBusyError, match=r"is in use by process \d+"):
        sweep(config, str(sweep_dir), runs, overrides, evaluate=False)
    statuses = sweep(config, str(sweep_dir), runs, overrides, evaluate=False, share=True)
    assert [status["name"] for status in statuses] == [runs[1].name]
    assert f"{runs[0].name}: busy" in capsys.readouterr().out
    assert sorted(path.name for path in held_dir.iterdir()) == [".lock", "notes.txt"]
    assert (sweep_dir / runs[1].name / "scores.npz").is_file()
    other_process.release()
    statuses = sweep(config, str(sweep_dir), runs, overrides, evaluate=False, share=True)
    assert [status["action"] for status in statuses] == ["start", "done"]
    # a finished run another process evaluates is not evaluated twice
    other_process.acquire()
    sweep(config, str(sweep_dir), runs, overrides, share=True)
    assert not (held_dir / "probe.json").exists()
    assert (sweep_dir / runs[1].name / "probe.json").is_file()
    assert (sweep_dir / runs[1].name / "knn.json").is_file()
    other_process.release()


def test_sweep_json_keeps_the_runs_other_processes_recorded_meanwhile(
    tmp_path: Path, monkeypatch
) -> None:
    from ssl_emp.experiments import sweep as sweep_module

    config, overrides, runs, sweep_dir = _shared_sweep_setup(tmp_path)
    trained = sweep_module.train

    def train_while_another_process_records(run_config):  # noqa: ANN001, ANN202
        header = {"config": config, "overrides": overrides, "shared": {}}
        other = {"name": f"other_{Path(run_config.run.dir).name}", "action": "start"}
        sweep_module.record_status(sweep_dir, header, other)
        return trained(run_config)

    monkeypatch.setattr(sweep_module, "train", train_while_another_process_records)
    sweep(config, str(sweep_dir), runs, overrides, evaluate=False)
    names = [entry["name"] for entry in json.loads((sweep_dir / "sweep.json").read_text())["runs"]]
    assert names == ["other_full_s0", "full_s0", "other_random_r0.5_s0", "random_r0.5_s0"]


def test_a_run_taken_between_the_check_and_the_trainer_is_skipped(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from ssl_emp.experiments import sweep as sweep_module

    config, overrides, runs, sweep_dir = _shared_sweep_setup(tmp_path)
    trained, other_process = sweep_module.train, RunLock(sweep_dir / runs[0].name)

    def taken_just_before_training(run_config):  # noqa: ANN001, ANN202
        if Path(run_config.run.dir).name == runs[0].name:
            other_process.acquire()  # after the sweep's check let the directory go
        return trained(run_config)

    monkeypatch.setattr(sweep_module, "train", taken_just_before_training)
    statuses = sweep(config, str(sweep_dir), runs, overrides, evaluate=False, share=True)
    assert [status["name"] for status in statuses] == [runs[1].name]
    assert f"{runs[0].name}: busy (taken meanwhile)" in capsys.readouterr().out
    assert not (sweep_dir / runs[0].name / "config.yaml").exists()
    other_process.release()


@pytest.mark.slow
def test_two_processes_share_one_sweep_and_train_each_run_once(tmp_path: Path) -> None:
    """Two real ``ssl-emp sweep --share`` processes, started together on one grid of four
    runs: both finish, every run is trained by exactly one of them, and each trains some."""
    sweep_dir, seeds = tmp_path / "sweep", "0,1"
    command = [sys.executable, "-m", "ssl_emp", "sweep", "--share", "--no-eval", "-c"]
    command += [str(ROOT / "configs" / "simclr_fashion_mnist.yaml"), "--dir", str(sweep_dir)]
    command += ["--policies", "random,topk", "--rates", "0.5", "--seeds", seeds]
    command += [*TINY_OVERRIDES, "data.subset=null", "data.synthetic_size=192", "train.epochs=3"]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, errors) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, errors[-2000:]
    names = [run.name for run in plan_runs(["random", "topk"], [0.5], [0, 1])]
    trained = [
        [name for name in names if f"{name}: start" in out and f"{name}: busy" not in out]
        for out, _ in outputs
    ]
    assert sorted(trained[0] + trained[1]) == sorted(names)  # each run once, none twice
    assert trained[0] and trained[1]  # they shared the grid
    for name in names:
        assert len(metrics_records(sweep_dir / name)) == 3
    recorded = json.loads((sweep_dir / "sweep.json").read_text())["runs"]
    assert sorted(entry["name"] for entry in recorded) == sorted(names)


def test_a_batch_larger_than_a_cells_kept_samples_stops_the_sweep_before_training(
    tmp_path: Path,
) -> None:
    """96 samples at rate 0.9 keep ceil(0.1 * 96) = 10 a epoch, fewer than a batch of 16: the
    0.9 cell is refused, naming it, before the 0.3 cell trains."""
    config = str(ROOT / "configs" / "simclr_fashion_mnist.yaml")
    overrides = [*TINY_OVERRIDES, "data.subset=null", "data.synthetic_size=96"]
    runs = plan_runs(["random"], [0.3, 0.9], [0])
    message = r"sweep cell random_r0.9_s0: train.batch_size=16 exceeds the 10 samples kept"
    with pytest.raises(UserInputError, match=message):
        sweep(config, str(tmp_path / "sweep"), runs, overrides)
    assert not (tmp_path / "sweep").exists()
