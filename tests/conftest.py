"""Shared fixtures: real local Ray, a real moto S3 server on 127.0.0.1, the shared corpora when present."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """``../shared/corpora`` beside the project, or a clean skip when this machine has none."""
    if not (SHARED_CORPORA / "ravdess").is_dir():
        pytest.skip("../shared/corpora is not present on this machine")
    return SHARED_CORPORA


@pytest.fixture(scope="session")
def local_ray(s3_server):
    """A private in-process Ray with 2 CPUs for the whole session (never attaches to a running cluster).

    It depends on ``s3_server`` so that the AWS variables are set before Ray starts its workers.
    """
    import ray

    if not ray.is_initialized():
        start_local_ray(ray)
    yield ray
    ray.shutdown()


def start_local_ray(ray) -> None:
    """The session's private Ray: 2 CPUs, no dashboard, quiet."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)


@pytest.fixture(scope="module")
def fresh_ray(local_ray):
    """``local_ray`` restarted for a module that needs every CPU (Ray Train worker groups), so that nothing an
    earlier module left running can hold a CPU and starve the group (as restarted scoring actors did before
    ``ser score`` ended its actors itself)."""
    local_ray.shutdown()
    start_local_ray(local_ray)
    yield local_ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1, reached through the standard AWS variables (as s3fs and Ray workers read them)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the moto server; yields its ``s3://`` URI."""
    import uuid

    import s3fs

    name = f"test-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem()
    fs.mkdir(name)
    fs.invalidate_cache()
    yield f"s3://{name}"
