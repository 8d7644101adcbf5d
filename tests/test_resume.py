"""Resumed sweeps: FINISHED configurations are reused, failed and orphaned ones run again."""

import os
import signal
import socket
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from aeclust import tracking
from aeclust.cli import main
from tests.conftest import SQLITE_ONLY, invoke_cli

pytestmark = pytest.mark.slow

SWEEP = ["sweep", "--methods", "pca", "--latent-dims", "8,16", "--sample-size", "300", "--no-tsne"]


def _config_runs(client, experiment_id):
    runs = client.search_runs([experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'run'")
    return {run.info.run_id: run for run in runs}


def test_resume_reuses_and_reruns(tracking_uri):
    runner = CliRunner()
    first = runner.invoke(main, SWEEP)
    assert first.exit_code == 0, first.output
    assert "runs=2 reused=0" in first.output

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    runs = _config_runs(client, experiment_id)
    by_name = {run.data.tags["mlflow.runName"]: run for run in runs.values()}
    failed_run = by_name["pca-d16-s42"]
    client.set_terminated(failed_run.info.run_id, "FAILED")

    # A run left RUNNING by a process that has ended, as after kill -9.
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = client.create_run(experiment_id, tags={
        tracking.TAG_ROLE: tracking.ROLE_RUN,
        tracking.TAG_CONFIG_HASH: failed_run.data.tags[tracking.TAG_CONFIG_HASH],
        tracking.TAG_PROCESS: f"{socket.gethostname()}:{dead.pid}",
    })

    second = runner.invoke(main, SWEEP)
    assert second.exit_code == 0, second.output
    assert "runs=1 reused=1" in second.output

    orphan_after = client.get_run(orphan.info.run_id)
    assert orphan_after.info.status == "FAILED"
    assert "ended while the run was RUNNING" in orphan_after.data.tags[tracking.TAG_FAILURE]

    runs_after = _config_runs(client, experiment_id)
    finished = [run for run in runs_after.values()
                if run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == "pca-d16-s42"]
    assert len(finished) == 1

    compared = runner.invoke(main, ["compare", "--no-register"])
    assert compared.exit_code == 0, compared.output
    assert "- n_samples: 300" in compared.output
    assert compared.output.count("| pca |") == 2


@SQLITE_ONLY
def test_no_resume_runs_everything(tracking_uri):
    runner = CliRunner()
    assert runner.invoke(main, SWEEP).exit_code == 0
    again = runner.invoke(main, [*SWEEP, "--no-resume"])
    assert again.exit_code == 0, again.output
    assert "runs=2 reused=0" in again.output


@SQLITE_ONLY
def test_sigterm_marks_run_killed(tracking_uri):
    import os
    import signal
    import sys
    import time

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    process = subprocess.Popen(
        [sys.executable, "-m", "aeclust.cli", "sweep", "--methods", "ae", "--latent-dims", "8",
         "--epochs", "200", "--sample-size", "1000", "--no-tsne", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    client = MlflowClient()
    deadline = time.monotonic() + 120
    running = []
    while not running:
        assert time.monotonic() < deadline, "no run started within 120 s"
        assert process.poll() is None, process.communicate()[1][-2000:]
        experiment = client.get_experiment_by_name("aeclust-digits")
        if experiment is not None:
            running = client.search_runs(
                [experiment.experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'run'"
            )
        time.sleep(0.5)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130
    assert "stopped by SIGTERM" in stderr
    run = client.get_run(running[0].info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[tracking.TAG_FAILURE] == "Interrupted: SIGTERM"
    sweeps = client.search_runs([running[0].info.experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'sweep'")
    assert sweeps[0].info.status == "KILLED"


def test_concurrent_sweeps_on_new_store(tracking_uri, tmp_path):
    import contextlib

    from tests.conftest import fresh_postgres_database

    # The fixture's store already has its tables, but the race needs a store never opened before.
    with contextlib.ExitStack() as stack:
        if tracking_uri.startswith("postgresql"):
            fresh_uri = stack.enter_context(fresh_postgres_database())
        else:
            fresh_uri = f"sqlite:///{tmp_path / 'fresh.db'}"
        _run_two_sweeps(fresh_uri)


def _run_two_sweeps(store_uri):
    import os
    import sys

    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "aeclust.cli", "sweep", "--methods", "pca", "--latent-dims", "8,16",
             "--seeds", str(seed), "--sample-size", "300", "--no-tsne", "--quiet"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for seed in (1, 2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]

    client = MlflowClient(tracking_uri=store_uri)
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    runs = client.search_runs([experiment_id])
    names = sorted(run.data.tags["mlflow.runName"] for run in runs)
    assert names == ["pca-d16-s1", "pca-d16-s2", "pca-d8-s1", "pca-d8-s2", "sweep-digits", "sweep-digits"]
    assert all(run.info.status == "FINISHED" for run in runs)


def _sweep_command(*extra):
    import sys

    return [sys.executable, "-m", "aeclust.cli", "sweep", "--methods", "ae,pca", "--latent-dims", "8,16",
            "--epochs", "2", "--sample-size", "400", "--no-tsne", "--quiet", *extra]


@SQLITE_ONLY
def test_jobs_two_records_same_pca_scores(tracking_uri):
    runner = CliRunner()
    parallel = runner.invoke(main, ["sweep", "--methods", "pca", "--latent-dims", "8,16", "--sample-size",
                                    "300", "--no-tsne", "--jobs", "2", "--experiment", "parallel"])
    assert parallel.exit_code == 0, parallel.output
    serial = runner.invoke(main, ["sweep", "--methods", "pca", "--latent-dims", "8,16", "--sample-size",
                                  "300", "--no-tsne", "--experiment", "serial"])
    assert serial.exit_code == 0, serial.output

    client = MlflowClient()

    def scores(experiment):
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        runs = client.search_runs([experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'run'")
        return {run.data.tags["mlflow.runName"]: run.data.metrics["ari"] for run in runs}

    assert scores("parallel") == scores("serial")
    assert len(scores("parallel")) == 2


@SQLITE_ONLY
def test_large_sample_new_process_per_run(tracking_uri, monkeypatch):
    from aeclust import sweep

    # Every sample counts as large, so --jobs 1 starts a new process for each configuration.
    monkeypatch.setattr(sweep, "FRESH_PROCESS_BYTES", 0)
    result = CliRunner().invoke(main, [*SWEEP, "--experiment", "fresh"])
    assert result.exit_code == 0, result.output

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("fresh").experiment_id
    runs = _config_runs(client, experiment_id).values()
    processes = {run.data.tags[tracking.TAG_PROCESS] for run in runs}
    assert len(runs) == 2
    assert all(run.info.status == "FINISHED" for run in runs)
    assert len(processes) == 2
    assert f"{socket.gethostname()}:{os.getpid()}" not in processes


def test_kill_9_then_resume_leaves_one_run_each(tracking_uri):
    import os
    import random
    import signal
    import time

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    rng = random.Random(0)
    for _ in range(3):
        process = subprocess.Popen(_sweep_command("--jobs", "2"), env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 12.0))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)

    final = subprocess.run(_sweep_command("--jobs", "2"), env=env, capture_output=True, text=True,
                           timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    runs = client.search_runs([experiment_id])
    assert not [run for run in runs if run.info.status == "RUNNING"]
    finished = [run.data.tags["mlflow.runName"] for run in runs
                if run.info.status == "FINISHED" and run.data.tags.get(tracking.TAG_ROLE) == "run"]
    assert sorted(finished) == ["ae-d16-s42", "ae-d8-s42", "pca-d16-s42", "pca-d8-s42"]


@SQLITE_ONLY
def test_changed_images_are_not_reused(tracking_uri, image_folder):
    """A resumed sweep reruns the configurations whose images changed since their run."""
    from PIL import Image

    args = ("sweep", "--dataset", str(image_folder), "--methods", "pca", "--latent-dims", "2",
            "--no-tsne")
    first = invoke_cli(*args)
    assert first.exit_code == 0, first.output
    assert "runs=1 reused=0" in first.output

    same = invoke_cli(*args)
    assert "runs=0 reused=1" in same.output

    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(image_folder / "cross" / "000.png")
    changed = invoke_cli(*args)
    assert changed.exit_code == 0, changed.output
    assert "runs=1 reused=0" in changed.output


def test_interrupt_waits_for_store_write():
    from aeclust.config import Interrupted

    with pytest.raises(Interrupted, match="SIGINT"):
        with tracking.interrupts_deferred():
            tracking.interrupt(Interrupted("SIGINT"))
            finished_write = True  # Reached: the interrupt waits for the block to end.
    assert finished_write
    with pytest.raises(Interrupted):
        tracking.interrupt(Interrupted("SIGTERM"))  # Outside a write it is raised at once.


@SQLITE_ONLY
def test_sigint_during_model_logging_kills_cleanly(tracking_uri, monkeypatch):
    """SIGINT while MLflow logs the encoder: the model is logged, then the run and sweep end KILLED."""
    import mlflow.keras

    original = mlflow.keras.log_model

    def log_model_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(mlflow.keras, "log_model", log_model_interrupted)
    try:
        result = invoke_cli("sweep", "--methods", "ae", "--latent-dims", "4,8", "--epochs", "1",
                            "--sample-size", "200", "--no-tsne")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert result.exit_code == 130, result.output
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("aeclust-digits").experiment_id])
    statuses = sorted(run.info.status for run in runs)
    assert statuses == ["KILLED", "KILLED"]  # The sweep and its first run; the second never started.
    first = next(run for run in runs if run.data.tags.get(tracking.TAG_ROLE) == "run")
    assert first.data.tags[tracking.TAG_FAILURE] == "Interrupted: SIGINT"
    assert tracking.TAG_MODEL_URI in first.data.tags  # The write in progress completed.
