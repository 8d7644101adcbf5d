"""The end-to-end study on a PostgreSQL tracking store.

Runs when AECLUST_TEST_POSTGRES_URI names a PostgreSQL database (``.ci/run``
starts one on 127.0.0.1 with ``.ci/postgres.sh``); skipped otherwise.
"""

import os
import uuid

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from aeclust import data, tracking
from aeclust.cli import main

pytestmark = pytest.mark.slow

POSTGRES_URI = os.environ.get("AECLUST_TEST_POSTGRES_URI")


@pytest.mark.skipif(not POSTGRES_URI, reason="AECLUST_TEST_POSTGRES_URI is not set (see .ci/postgres.sh)")
def test_study_on_postgres(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    experiment = f"aeclust-pg-{uuid.uuid4().hex[:8]}"
    common = ["--tracking-uri", POSTGRES_URI, "--experiment", experiment]
    runner = CliRunner()

    swept = runner.invoke(main, ["sweep", *common, "--latent-dims", "8,16", "--epochs", "2",
                                 "--sample-size", "300", "--tsne-samples", "100"])
    assert swept.exit_code == 0, swept.output
    again = runner.invoke(main, ["sweep", *common, "--latent-dims", "8,16", "--epochs", "2",
                                 "--sample-size", "300", "--tsne-samples", "100"])
    assert "runs=0 reused=4" in again.output
    compared = runner.invoke(main, ["compare", *common, "--output-dir", str(tmp_path / "out")])
    assert compared.exit_code == 0, compared.output
    assert (tmp_path / "out" / "report.html").exists()

    client = MlflowClient(tracking_uri=POSTGRES_URI)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'run'")
    assert len(runs) == 4
    assert all(run.info.status == "FINISHED" for run in runs)
    version = client.get_model_version_by_alias("aeclust-digits-clusterer", "best")
    assert version.tags["dataset"] == "digits"

    sample = data.draw_sample(data.load_digits(), sample_size=300, random_state=42)
    np.savez(tmp_path / "sample.npz", images=sample.images[..., 0])
    predicted = runner.invoke(main, ["predict", "--tracking-uri", POSTGRES_URI, "--model-uri",
                                     f"runs:/{version.tags['run_id']}/clusterer",
                                     "--input", str(tmp_path / "sample.npz"),
                                     "--output", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 300

    password = POSTGRES_URI.split("@")[0].rsplit(":", 1)[-1]
    for output in (swept.output, again.output, compared.output, predicted.output):
        assert password not in output
