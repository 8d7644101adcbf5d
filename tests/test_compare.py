"""Compare's choice of the best dimension, on records and on a temporary store."""

import json
import math

import pytest
from mlflow import MlflowClient

from aeclust import compare, tracking
from aeclust.config import CompareConfig


def _record(method, dim, seed, ari, silhouette=0.1, status="FINISHED"):
    return {
        "run_id": f"{method}-{dim}-{seed}",
        "status": status,
        "params": {"method": method, "latent_dim": str(dim), "seed": str(seed)},
        "metrics": {"ari": ari, "silhouette": silhouette, "nmi": ari, "acc": ari},
        "tags": {},
        "start_time": 0,
    }


def test_best_dim_by_mean_over_seeds():
    runs = [
        _record("ae", 16, 1, 0.30), _record("ae", 16, 2, 0.10),  # mean 0.20
        _record("ae", 32, 1, 0.26), _record("ae", 32, 2, 0.24),  # mean 0.25
    ]
    best = compare.best_dims(compare.summarise_table(runs), "ari")
    assert best["ae"]["latent_dim"] == 32
    assert best["ae"]["ari"] == pytest.approx(0.25)
    assert best["ae"]["ari_std"] == pytest.approx(0.01)


def test_tie_goes_to_smaller_dim():
    runs = [_record("pca", 64, 1, 0.2), _record("pca", 16, 1, 0.2), _record("pca", 32, 1, 0.1)]
    best = compare.best_dims(compare.summarise_table(runs), "ari")
    assert best["pca"]["latent_dim"] == 16


def test_invalid_runs_excluded_with_reasons():
    runs = [
        _record("ae", 16, 1, 0.3),
        _record("ae", 32, 1, float("nan")),
        _record("ae", 64, 1, 0.9, status="FAILED"),
    ]
    kept, excluded = compare.valid_runs(runs, "ari")
    assert [run["run_id"] for run in kept] == ["ae-16-1"]
    assert excluded == {"ari missing or not finite": 1, "status FAILED": 1}


def test_duplicates_keep_latest():
    older = _record("ae", 16, 1, 0.9)
    older["start_time"] = 1
    newer = _record("ae", 16, 1, 0.2)
    newer["start_time"] = 2
    other = _record("ae", 16, 2, 0.3)
    other["start_time"] = 0
    kept = compare.latest_per_configuration([older, newer, other])
    assert sorted(run["metrics"]["ari"] for run in kept) == [0.2, 0.3]


def test_metric_falls_back_to_silhouette():
    runs = [{"metrics": {"silhouette": 0.2}}]
    assert compare.choose_metric(runs, None) == "silhouette"
    assert compare.choose_metric([_record("ae", 8, 1, 0.1)], None) == "ari"
    assert compare.choose_metric(runs, "nmi") == "nmi"


def _log_child(client, experiment_id, sweep_id, method, dim, ari):
    run = client.create_run(
        experiment_id,
        tags={tracking.TAG_SWEEP_RUN_ID: sweep_id, tracking.TAG_PARENT: sweep_id,
              tracking.TAG_ROLE: tracking.ROLE_RUN},
    )
    run_id = run.info.run_id
    for key, value in {"method": method, "latent_dim": dim, "seed": 42}.items():
        client.log_param(run_id, key, value)
    for key, value in {"ari": ari, "nmi": ari, "acc": ari, "silhouette": 0.1}.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_compare_on_temporary_store(tracking_uri, tmp_path):
    client = MlflowClient()
    experiment_id = client.create_experiment("aeclust-toy")
    sweep = client.create_run(experiment_id, tags={tracking.TAG_ROLE: tracking.ROLE_SWEEP,
                                                   tracking.TAG_DATASET: "toy"})
    sweep_id = sweep.info.run_id
    client.set_terminated(sweep_id, "FINISHED")
    scores = {("ae", 16): 0.12, ("ae", 32): 0.18, ("pca", 16): 0.15, ("pca", 32): 0.15}
    for (method, dim), ari in scores.items():
        _log_child(client, experiment_id, sweep_id, method, dim, ari)
    failed = _log_child(client, experiment_id, sweep_id, "ae", 64, 0.99)
    client.set_terminated(failed, "FAILED")

    result = compare.run_compare(
        CompareConfig(experiment="aeclust-toy", register=False, output_dir=str(tmp_path / "out"))
    )
    summary = result.summary
    assert summary["best"]["ae"]["latent_dim"] == 32
    assert summary["best"]["pca"]["latent_dim"] == 16
    assert summary["ae_vs_pca"]["difference"] == pytest.approx(0.03)
    assert summary["excluded_runs"] == {"status FAILED": 1}
    assert (tmp_path / "out" / "dim_optimization.png").stat().st_size > 0
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["best"]["ae"]["latent_dim"] == 32

    compare_run = client.get_run(result.compare_run_id)
    assert compare_run.data.tags[tracking.TAG_ROLE] == tracking.ROLE_COMPARE
    artifacts = {item.path for item in client.list_artifacts(result.compare_run_id)}
    assert {"summary.md", "summary.json", "dim_optimization.png"} <= artifacts


def test_compare_missing_experiment(tracking_uri):
    with pytest.raises(compare.CompareError, match="experiment='aeclust-none' was not found"):
        compare.run_compare(CompareConfig(experiment="aeclust-none"))


def _summary(test):
    return {
        "dataset": "toy", "metric": "ari", "sweep_run_id": "abc", "setup": {"seeds": "1"},
        "n_runs": 2, "excluded_runs": {}, "versions": {"aeclust": "0.1.0"},
        "table": [{"method": "ae", "latent_dim": 8, "n_seeds": 1, "silhouette": 0.1,
                   "silhouette_std": 0.0, "ari": 0.2, "ari_std": 0.0, "nmi": math.nan,
                   "nmi_std": math.nan, "acc": 0.3, "acc_std": 0.0}],
        "best": {"ae": {"latent_dim": 8, "ari": 0.2, "run_id": "r1"}},
        "ae_vs_pca": {"latent_dim": 8, "ae": 0.2, "pca": 0.1, "difference": 0.1, "test": test},
        "confused_pairs": {"ae": {
            "classes": [{"class_a": "O", "class_b": "0", "count": 3, "total": 10, "rate": 0.3}],
            "pairs": [{"class_a": "l", "class_b": "1", "count": 12, "total": 100, "rate": 0.12}],
        }},
    }


def test_summary_markdown_in_chinese():
    from aeclust import report

    summary = _summary({"n": 1, "mean_difference": 0.1, "statistic": None, "p_value": None})
    chinese = report.summary_markdown(summary, language="zh-CN")
    english = report.summary_markdown(summary, language="en")
    assert "aeclust 报告：toy" in chinese
    assert "| O | 0 | 3 / 10 | 30.0% |" in chinese
    assert "| l ↔ 1 | 12 | 100 | 12.0% |" in english
    assert "no test is possible" in english
    assert "无法进行检验" in chinese
    assert "| ae | 8 | 1 | 0.1000 ± 0.0000 | 0.2000 ± 0.0000 | – |" in english


@pytest.mark.parametrize(
    "p_value, difference, expected",
    [(0.01, 0.05, "The autoencoder beats PCA"), (0.01, -0.05, "PCA beats the autoencoder"),
     (0.4, 0.05, "within the seed-to-seed spread")],
)
def test_conclusion_follows_test(p_value, difference, expected):
    from aeclust import report

    test = {"n": 3, "mean_difference": difference, "statistic": 2.0, "p_value": p_value}
    sentences = report.conclusion(_summary(test))
    assert any(expected in sentence for sentence in sentences)
    assert any("Paired t-test across 3 seeds at latent_dim=8" in sentence for sentence in sentences)


def test_paired_test_several_seeds():
    from scipy import stats

    ae = [0.30, 0.28, 0.33]
    pca = [0.20, 0.21, 0.19]
    runs = [_record("ae", 16, seed, value) for seed, value in enumerate(ae)]
    runs += [_record("pca", 16, seed, value) for seed, value in enumerate(pca)]
    runs.append(_record("pca", 32, 0, 0.9))
    test = compare.paired_test(runs, latent_dim=16, metric="ari")
    expected = stats.ttest_rel(ae, pca)
    assert test["n"] == 3
    assert test["statistic"] == pytest.approx(expected.statistic)
    assert test["p_value"] == pytest.approx(expected.pvalue)
    assert test["mean_difference"] == pytest.approx(0.1033333)


def test_paired_test_one_seed():
    runs = [_record("ae", 16, 1, 0.3), _record("pca", 16, 1, 0.2)]
    test = compare.paired_test(runs, latent_dim=16, metric="ari")
    assert test["n"] == 1
    assert test["p_value"] is None
    assert test["mean_difference"] == pytest.approx(0.1)


def test_report_html_self_contained():
    from aeclust import report

    png = b"\x89PNG fake"
    page = report.report_html(_summary({"n": 1}), {"dimension": png, "ae/tsne.png": png}, language="en")
    assert page.count("data:image/png;base64,") == 2
    assert "http://" not in page
    assert "https://" not in page
    assert "l ↔ 1" in page
