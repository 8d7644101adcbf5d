"""--tsne-runs best: only the best run of each method gets a t-SNE map, drawn after the sweep."""

import pytest
from mlflow import MlflowClient

from tests.conftest import invoke_cli, module_store


@pytest.mark.parametrize("jobs", ["2"])
def test_tsne_for_best_runs_only(tmp_path, jobs):
    # With --jobs 2 the features live in the workers, so the map is drawn from the logged models.
    # NOTE: the --jobs 1 path (features kept in the sweep process) is left out to keep the suite short.
    with module_store(tmp_path):
        result = invoke_cli("sweep", "--methods", "pca,ae", "--latent-dims", "4,8", "--epochs", "1",
                            "--sample-size", "200", "--tsne-runs", "best", "--tsne-samples", "100",
                            "--jobs", jobs)
        assert result.exit_code == 0, result.output
        client = MlflowClient()
        experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
        runs = client.search_runs([experiment_id], "tags.`aeclust.role` = 'run'")
        with_tsne = {}
        for run in runs:
            files = {item.path for item in client.list_artifacts(run.info.run_id)}
            if "tsne.png" in files:
                with_tsne.setdefault(run.data.params["method"], []).append(run)

    assert len(runs) == 4
    assert sorted(with_tsne) == ["ae", "pca"]
    for method, drawn in with_tsne.items():
        assert len(drawn) == 1
        best_ari = max(run.data.metrics["ari"] for run in runs if run.data.params["method"] == method)
        assert drawn[0].data.metrics["ari"] == best_ari
        assert "aeclust.tsne" in drawn[0].data.tags
