"""Shared fixtures: a temporary MLflow store and small image sources on disk."""

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def array_cache(tmp_path_factory, monkeypatch):
    """Give each test its own array cache, so no test reads another's data or the user's cache."""
    folder = tmp_path_factory.mktemp("array-cache")
    monkeypatch.setenv("AECLUST_CACHE_DIR", str(folder))
    return folder


@contextlib.contextmanager
def module_store(workdir):
    """Point MLflow at a SQLite store in ``workdir`` and work from there, for a module fixture."""
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(workdir)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)


POSTGRES_URI = os.environ.get("AECLUST_TEST_POSTGRES_URI")
"""A PostgreSQL database whose role may create databases (``.ci/postgres.sh`` makes one)."""


@contextlib.contextmanager
def fresh_postgres_database():
    """Create an empty database beside ``AECLUST_TEST_POSTGRES_URI``, yield its URI, drop it."""
    import uuid

    import psycopg

    base, _, _ = POSTGRES_URI.rpartition("/")
    name = f"aeclust_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URI, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{name}"
    finally:
        _drop_database(name)


def _drop_database(name: str) -> None:
    """Drop a test database, retrying while a server process (autovacuum) still uses it."""
    import time

    import psycopg

    for attempt in range(5):
        try:
            with psycopg.connect(POSTGRES_URI, autocommit=True) as connection:
                connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 4:
                raise
            time.sleep(1)


SQLITE_ONLY = pytest.mark.parametrize("tracking_uri", ["sqlite"], indirect=True)
"""Parametrization that gives a test's ``tracking_uri`` the SQLite store only.

It is for checks that do not depend on the store (input rejected before any
run starts, signals, worker processes, ``mlflow run``), so the PostgreSQL
variants stay few.
"""


@pytest.fixture(params=["sqlite", "postgres"])
def tracking_uri(request, tmp_path, monkeypatch):
    """Point MLflow at a fresh store, SQLite in ``tmp_path`` or a new PostgreSQL database.

    The PostgreSQL variant runs when ``AECLUST_TEST_POSTGRES_URI`` is set and is
    skipped otherwise.
    """
    import mlflow

    from aeclust import tracking

    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            if not POSTGRES_URI:
                pytest.skip("AECLUST_TEST_POSTGRES_URI is not set (see .ci/postgres.sh)")
            uri = stack.enter_context(fresh_postgres_database())
        else:
            uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        # Creating the tables here keeps a test's own client from racing a command it starts.
        tracking.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture
def image_folder(tmp_path):
    """Write a class-per-folder set of 8x8 grey PNGs: 3 classes of 6 images."""
    from PIL import Image

    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for label, name in enumerate(("circle", "cross", "square")):
        (root / name).mkdir(parents=True)
        for index in range(6):
            pixels = rng.integers(0, 40, size=(8, 8), dtype=np.uint8)
            pixels[label * 2:label * 2 + 3, :] = 250
            Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
    return root


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, server, *, timeout: float) -> None:
    """Poll ``url`` until it returns status 200, failing when ``server`` exits or ``timeout`` seconds pass."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, f"the server for {url} exited"
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(1)


def invoke_cli(*args):
    """Run the aeclust command line in process with ``args``; return click's result."""
    from click.testing import CliRunner

    from aeclust.cli import main

    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result, exit_code, *fragments):
    """Check that a command ended with ``exit_code`` and one ``Error`` line with every fragment."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0]


def run_statuses() -> list[str]:
    """Return the status of every run in the current tracking store."""
    from mlflow import MlflowClient

    client = MlflowClient()
    experiments = client.search_experiments()
    if not experiments:
        return []
    return [run.info.status for run in client.search_runs([e.experiment_id for e in experiments])]
