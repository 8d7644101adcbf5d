"""The Ray executor: on an in-process stand-in for Ray, and on a real cluster when one is given.

Ray 2.60 binds its servers to every interface and replaces a 127.0.0.1 node
address with the host's address, so the tests never start a Ray instance
themselves. The stand-in runs each task in this process and resolves object
references only in top-level arguments, as Ray does. Set
``AECLUST_TEST_RAY_ADDRESS`` to a running cluster to run the real test too.
"""

import os
import sys
import types

import pytest
from mlflow import MlflowClient

from tests.conftest import SQLITE_ONLY, assert_one_line_error, invoke_cli, run_statuses


class ObjectRef:
    def __init__(self, value=None, error=None):
        self.value = value
        self.error = error


def make_fake_ray(calls):
    """Build a module with the part of Ray's API that aeclust uses, recording every call."""
    fake = types.ModuleType("ray")
    fake.exceptions = types.SimpleNamespace(RayError=RuntimeError)

    def init(address=None, **kwargs):
        calls.append(("init", address))

    def put(value):
        return ObjectRef(value)

    def remote(num_cpus=1, max_retries=3):
        def wrap(function):
            def submit(*args):
                calls.append(("submit", num_cpus))
                resolved = [arg.value if isinstance(arg, ObjectRef) else arg for arg in args]
                try:
                    return ObjectRef(function(*resolved))
                except BaseException as exc:  # Ray hands a task's error to ray.get.
                    return ObjectRef(error=RuntimeError(f"task failed: {exc!r}"))

            return types.SimpleNamespace(remote=submit)

        return wrap

    def wait(refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    fake.init, fake.put, fake.remote, fake.wait, fake.get = init, put, remote, wait, get
    fake.cancel = lambda ref: calls.append(("cancel", ref))
    return fake


@pytest.fixture
def fake_ray(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "ray", make_fake_ray(calls))
    return calls


@pytest.fixture
def head_address():
    """Listen on a free 127.0.0.1 port, standing in for the head's port that aeclust checks first."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


SWEEP = ("sweep", "--executor", "ray", "--methods", "pca,ae", "--latent-dims", "4", "--epochs", "1",
         "--sample-size", "200", "--no-tsne")


@SQLITE_ONLY
def test_sweep_as_ray_tasks_then_resume(tracking_uri, fake_ray, head_address):
    first = invoke_cli(*SWEEP, "--ray-address", head_address, "--ray-cpus-per-task", "2")
    assert first.exit_code == 0, first.output
    assert "runs=2 reused=0" in first.output
    assert ("init", head_address) in fake_ray
    assert [call for call in fake_ray if call[0] == "submit"] == [("submit", 2), ("submit", 2)]
    assert sorted(run_statuses()) == ["FINISHED"] * 3

    second = invoke_cli(*SWEEP, "--ray-address", head_address)
    assert second.exit_code == 0, second.output
    assert "runs=0 reused=2" in second.output


@SQLITE_ONLY
def test_failed_ray_task_marks_run(tracking_uri, fake_ray, head_address, monkeypatch):
    from aeclust import models

    def broken(*args, **kwargs):
        raise FloatingPointError("loss became nan")

    monkeypatch.setattr(models, "fit_autoencoder", broken)
    result = invoke_cli(*SWEEP, "--ray-address", head_address)
    assert result.exit_code == 1, result.output
    assert "ae-d4-s42" in result.output
    assert sorted(run_statuses()) == ["FAILED", "FAILED", "FINISHED"]


@SQLITE_ONLY
def test_ray_needs_an_address(tracking_uri, fake_ray, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert_one_line_error(invoke_cli(*SWEEP), 2, "--ray-address")
    assert run_statuses() == []


@SQLITE_ONLY
def test_ray_with_jobs_rejected(tracking_uri, fake_ray, head_address):
    result = invoke_cli(*SWEEP, "--ray-address", head_address, "--jobs", "2")
    assert_one_line_error(result, 2, "--jobs", "--ray-cpus-per-task")
    assert run_statuses() == []


@SQLITE_ONLY
def test_ray_address_unreachable(tracking_uri, fake_ray):
    from tests.conftest import free_port

    address = f"127.0.0.1:{free_port()}"  # Nothing listens there.
    assert_one_line_error(invoke_cli(*SWEEP, "--ray-address", address), 2, address)
    assert run_statuses() == []


@pytest.mark.skipif(not os.environ.get("AECLUST_TEST_RAY_ADDRESS"),
                    reason="AECLUST_TEST_RAY_ADDRESS names no running Ray cluster")
def test_sweep_on_real_ray_cluster(tracking_uri):
    address = os.environ["AECLUST_TEST_RAY_ADDRESS"]
    result = invoke_cli(*SWEEP, "--ray-address", address)
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    runs = client.search_runs([experiment_id], "tags.`aeclust.role` = 'run'")
    processes = {run.data.tags["aeclust.process"].rsplit(":", 1)[1] for run in runs}
    assert str(os.getpid()) not in processes  # The runs ran in Ray worker processes.
