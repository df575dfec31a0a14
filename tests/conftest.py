import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if not os.environ.get("GROKBENCH_DATA") and SHARED_DATA.is_dir():
    os.environ["GROKBENCH_DATA"] = str(SHARED_DATA)

torch.set_num_threads(1)  # tests compare runs bit for bit; one thread is also the fastest for these sizes


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema migrations done once for the whole session; tests copy it."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray of 2 CPUs for every test that runs sweeps in this process (starting one takes seconds); yields
    its address, for sweeps run as subprocesses. "local": a new Ray of our own, even where another test or a user
    left a cluster (or its address file)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def mnist_available() -> None:
    root = Path(os.environ.get("GROKBENCH_DATA", "")) / "MNIST" / "raw"
    if not root.is_dir():
        message = "MNIST IDX files not found: set GROKBENCH_DATA to a directory holding MNIST/raw/"
        if os.environ.get("CI"):  # a green CI must not hide a test that ran nothing
            pytest.fail(message)
        pytest.skip(message)
