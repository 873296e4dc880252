"""ser jobs on a real two-node Ray cluster on 127.0.0.1, submitted with ``ser submit``, reading and writing S3 (moto).

The cluster (``tests/cluster_fixture.py``) has token authentication on; its nodes get the moto server's
AWS_* variables the way cluster nodes get credentials from their environment.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests
import s3fs

from tests.audio_factory import write_speech
from tests.cluster_fixture import VENV_BIN, LocalRayCluster

pytestmark = pytest.mark.slow

SER = str(VENV_BIN / "ser")


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """A head (``ray start --head``) and one joined node, 1 CPU each, for the whole session."""
    import os

    with tempfile.TemporaryDirectory(prefix="sercl-", dir="/tmp") as root:  # short: Ray's socket paths must fit
        cluster = LocalRayCluster(Path(root), dict(os.environ))
        try:
            cluster.start(head_cpus=1, worker_cpus=(1,))
            yield cluster
        finally:
            cluster.shutdown()


@pytest.fixture(scope="session")
def s3_corpus(s3_server, tmp_path_factory) -> str:
    """A tiny RAVDESS-named corpus (6 actors x 3 emotions) in a bucket of its own; yields its ``s3://`` prefix."""
    local = tmp_path_factory.mktemp("ravdess")
    for actor in range(1, 7):
        for emotion in (1, 3, 5):
            write_speech(local / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", seconds=1.2,
                         f0=120 + 25 * emotion, seed=actor * 10 + emotion)
    fs = s3fs.S3FileSystem()
    fs.mkdir("corpora")
    fs.put(str(local) + "/", "corpora/ravdess/", recursive=True)
    return "s3://corpora/ravdess"


def ser(cluster: LocalRayCluster, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the ``ser`` CLI as a separate client process with the cluster's token (and no RAY_ADDRESS)."""
    return subprocess.run([SER, *args], env={**cluster.client_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def submit(cluster: LocalRayCluster, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return ser(cluster, "submit", "--address", cluster.dashboard_url, *options, "--", *command)


def nodes_that_ran(cluster: LocalRayCluster, submission_id: str, task_name: str) -> set[str]:
    """Node ids on which the job's tasks named ``task_name`` ran (Ray state API)."""
    job = requests.get(f"{cluster.dashboard_url}/api/jobs/{submission_id}", headers=cluster.auth_headers(), timeout=10).json()
    response = requests.get(f"{cluster.dashboard_url}/api/v0/tasks", headers=cluster.auth_headers(), timeout=10, params={
        "limit": 1000, "filter_keys": "job_id", "filter_predicates": "=", "filter_values": job["job_id"]})
    tasks = response.json()["data"]["result"]["result"]
    return {t["node_id"] for t in tasks if t["name"] == task_name and t["state"] == "FINISHED"}


def submission_id_of(result: subprocess.CompletedProcess) -> str:
    line = next(line for line in result.stderr.splitlines() if line.startswith("submitted job "))
    return line.split()[2].rstrip(":")


def test_submit_extract_reads_and_writes_s3_on_both_nodes(ray_cluster, s3_corpus, s3_bucket):
    out = f"{s3_bucket}/features"
    result = submit(ray_cluster, "extract", "--corpus", f"ravdess={s3_corpus}", "--out", out, "--shard-size", "3",
                    "--cpus-per-task", "1", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "extracted 18 utterances" in result.stdout  # the job's own output, streamed back
    assert "SUCCEEDED" in result.stderr

    features = pq.read_table(out.removeprefix("s3://") + "/features", filesystem=s3fs.S3FileSystem())
    assert features.column("utterance_id").unique().to_pylist().__len__() == 18
    assert len(nodes_that_ran(ray_cluster, submission_id_of(result), "featurize_shard")) == 2
