"""The Ray executor against a Ray instance that the test starts on 127.0.0.1."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import free_port, invoke_cli, run_statuses

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def ray_address():
    """Start a 2-CPU Ray head on 127.0.0.1 for this module and stop it afterwards."""
    port = free_port()
    # Ray's socket paths must stay short, so its folder sits directly under /tmp.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir", temp_dir,
         "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_ray_then_resume(tracking_uri, ray_address):
    args = ("sweep", "--executor", "ray", "--ray-address", ray_address, "--methods", "pca,ae",
            "--latent-dims", "4", "--epochs", "1", "--sample-size", "200", "--no-tsne")
    first = invoke_cli(*args)
    assert first.exit_code == 0, first.output
    assert "runs=2 reused=0" in first.output
    assert sorted(run_statuses()) == ["FINISHED", "FINISHED", "FINISHED"]

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    runs = client.search_runs([experiment_id], "tags.`aeclust.role` = 'run'")
    processes = {run.data.tags["aeclust.process"].rsplit(":", 1)[1] for run in runs}
    assert str(os.getpid()) not in processes  # The runs ran in Ray worker processes.

    second = invoke_cli(*args)
    assert second.exit_code == 0, second.output
    assert "runs=0 reused=2" in second.output
    assert len(client.search_runs([experiment_id], "tags.`aeclust.role` = 'run'")) == 2


def test_ray_needs_an_address(tracking_uri, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = invoke_cli("sweep", "--executor", "ray", "--methods", "pca", "--latent-dims", "4",
                        "--sample-size", "100")
    assert result.exit_code == 2, result.output
    assert "--ray-address" in result.output
