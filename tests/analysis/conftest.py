"""Fixtures the analysis tests share."""

import shutil

import mlflow
import pytest

from grokbench.sweep.mlflow_store import TrackingStore


@pytest.fixture
def fresh_mnist(tmp_path, migrated_store):
    """An empty store of this test's own, with the mnist experiment: its URI, a client and the experiment's id."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, mlflow.MlflowClient(uri), TrackingStore(uri).prepare_experiment("grokbench/mnist")
