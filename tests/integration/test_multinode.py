"""ser jobs on a real multi-node Ray cluster on 127.0.0.1, submitted with ``ser submit``, reading and writing S3 (moto).

The cluster (``tests/cluster_fixture.py``) is shaped like the production one: a head that only runs drivers
(0 CPUs, ``ray start --head``) and two worker nodes of 1 CPU, each a separate raylet. Token authentication is on;
the nodes get the moto server's AWS_* variables the way cluster nodes get credentials from their environment.
Session fixtures run each job once: extract from an S3 corpus, train on its features, score an S3 call archive.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import requests
import s3fs
from click.testing import CliRunner, Result

from jobs.cli import main
from tests.audio_factory import write_speech
from tests.cluster_fixture import VENV_BIN, LocalRayCluster, free_port

pytestmark = pytest.mark.slow

SER = str(VENV_BIN / "ser")
DAY = "2024-05-01"


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """Head with 0 CPUs plus two 1-CPU worker nodes, for the whole session; stopped (only it) afterwards."""
    with tempfile.TemporaryDirectory(prefix="sercl-", dir="/tmp") as root:  # short: Ray's socket paths must fit
        cluster = LocalRayCluster(Path(root), dict(os.environ))
        try:
            cluster.start(head_cpus=0, worker_cpus=(1, 1))
            yield cluster
        finally:
            cluster.shutdown()


def new_bucket(purpose: str) -> str:
    name = f"{purpose}-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}"


def upload(local: Path, uri: str) -> None:
    fs = s3fs.S3FileSystem()
    fs.put(f"{local}/", uri.removeprefix("s3://") + "/", recursive=True)
    fs.invalidate_cache()


def ser(cluster: LocalRayCluster, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the ``ser`` CLI as a client process with the cluster's token (and no RAY_ADDRESS unless given)."""
    return subprocess.run([SER, *args], env={**cluster.client_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def ser_here(cluster: LocalRayCluster, *args: str, **env: str | None) -> Result:
    """The ``ser`` CLI in this process, with the cluster's token: quicker for commands that only call the Jobs API."""
    base = {"RAY_AUTH_TOKEN_PATH": str(cluster.token_file), "RAY_AUTH_TOKEN": None, "RAY_ADDRESS": None,
            "RAY_API_SERVER_ADDRESS": None}
    return CliRunner().invoke(main, list(args), env={**base, **env})


def submit(cluster: LocalRayCluster, *command: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return ser(cluster, "submit", "--address", cluster.dashboard_url, *options, "--", *command)


def submission_id_of(result: subprocess.CompletedProcess) -> str:
    line = next(line for line in result.stderr.splitlines() if line.startswith("submitted job "))
    return line.split()[2].rstrip(":")


def cluster_api(cluster: LocalRayCluster, path: str, **params) -> dict | list:
    response = requests.get(f"{cluster.dashboard_url}{path}", headers=cluster.auth_headers(), params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def job_state(cluster: LocalRayCluster, submission_id: str, kind: str) -> list[dict]:
    """The job's ``kind`` ("tasks" or "actors") as the Ray state API details them (none before its driver starts)."""
    job_id = cluster_api(cluster, f"/api/jobs/{submission_id}")["job_id"]
    if job_id is None:
        return []
    return cluster_api(cluster, f"/api/v0/{kind}", limit=1000, detail=1, filter_keys="job_id", filter_predicates="=",
                       filter_values=job_id)["data"]["result"]["result"]


def nodes_that_ran(cluster: LocalRayCluster, submission_id: str, kind: str, name: str) -> set[str]:
    """Node ids on which the job's ``kind`` ("tasks" or "actors") called ``name`` ran."""
    return {item["node_id"] for item in job_state(cluster, submission_id, kind) if name in (item.get("name"), item.get("class_name"))}


def scoring_actors(cluster: LocalRayCluster, submission_id: str) -> list[dict]:
    return [a for a in job_state(cluster, submission_id, "actors") if "CallScorer" in (a.get("repr_name") or a["class_name"])]


def s3_duckdb() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register_filesystem(s3fs.S3FileSystem(skip_instance_cache=True))
    return con


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_corpus(s3_server, tmp_path_factory) -> str:
    """A tiny RAVDESS-named corpus in S3: 8 actors (so every split has speakers) x 3 emotions."""
    local = tmp_path_factory.mktemp("ravdess")
    for actor in range(1, 9):
        for emotion in (1, 3, 5):
            write_speech(local / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", seconds=1.0,
                         f0=120 + 25 * emotion + 3 * actor, seed=actor * 10 + emotion)
    uri = f"{new_bucket('corpora')}/ravdess"
    upload(local, uri)
    return uri


@pytest.fixture(scope="session")
def extracted(ray_cluster, s3_corpus) -> tuple[subprocess.CompletedProcess, str]:
    """``ser submit -- extract`` from the S3 corpus to S3 features; the finished process and the features URI."""
    out = f"{new_bucket('features')}/ravdess-v1"
    result = submit(ray_cluster, "extract", "--corpus", f"ravdess={s3_corpus}", "--out", out, "--shard-size", "3",
                    "--cpus-per-task", "1", "--no-progress")
    return result, out


@pytest.fixture(scope="session")
def trained(ray_cluster, extracted) -> tuple[subprocess.CompletedProcess, str]:
    """``ser submit -- train``: one epoch on two Train workers (one per worker node); bundle and checkpoints in S3."""
    _, features = extracted
    out = f"{new_bucket('models')}/ser/tiny"
    result = submit(ray_cluster, "train", "--features", features, "--out", out, "--workers", "2", "--cpus-per-worker", "1",
                    "--epochs", "1", "--batch-size", "8")
    return result, out


# ------------------------------------------------------------------------------------------------- tests


def test_submit_extract_reads_and_writes_s3_on_both_worker_nodes(ray_cluster, extracted):
    result, out = extracted
    assert result.returncode == 0, result.stdout + result.stderr
    assert "extracted 24 utterances" in result.stdout  # the job's own output, streamed back
    assert f"job {submission_id_of(result)} SUCCEEDED" in result.stderr

    features = pq.read_table(out.removeprefix("s3://") + "/features", filesystem=s3fs.S3FileSystem())
    assert len(features.column("utterance_id").unique()) == 24
    assert len(nodes_that_ran(ray_cluster, submission_id_of(result), "tasks", "featurize_shard")) == 2


def test_jobs_commands_list_inspect_follow_and_stop(ray_cluster, extracted, s3_corpus):
    done, url = submission_id_of(extracted[0]), ray_cluster.dashboard_url
    # --address comes from RAY_ADDRESS when not given ...
    listed = ser_here(ray_cluster, "jobs", "list", RAY_ADDRESS=url)
    assert listed.exit_code == 0 and any(done in line and "SUCCEEDED" in line for line in listed.stdout.splitlines())
    # ... and an explicit --address wins over it (the Jobs client would otherwise let RAY_ADDRESS override it).
    status = ser_here(ray_cluster, "jobs", "status", "--address", url, done, RAY_ADDRESS=f"http://127.0.0.1:{free_port()}")
    assert status.exit_code == 0 and status.stdout.startswith("SUCCEEDED")
    assert "extracted 24 utterances" in ser_here(ray_cluster, "jobs", "logs", "--address", url, done).stdout

    slow = submit(ray_cluster, "extract", "--corpus", f"ravdess={s3_corpus}", "--out", f"{new_bucket('stopped')}/f",
                  "--shard-size", "1", "--no-progress", options=("--no-wait", "--submission-id", f"stop-me-{uuid.uuid4().hex[:6]}"))
    assert slow.returncode == 0, slow.stderr
    stopping = slow.stdout.strip()
    assert stopping.startswith("stop-me-")
    stopped = ser_here(ray_cluster, "jobs", "stop", "--address", url, stopping)
    assert stopped.exit_code == 0 and stopped.stdout.strip() == "STOPPED", stopped.output
    followed = ser_here(ray_cluster, "jobs", "logs", "--follow", "--address", url, stopping)
    assert followed.exit_code == 3, followed.output  # the exit status of a stopped job


def test_a_failing_job_makes_submit_exit_non_zero(ray_cluster):
    result = submit(ray_cluster, "extract", "--corpus", "nosuchcorpus=/nowhere", "--out", "/tmp/never-written")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nosuchcorpus" in result.stdout + result.stderr  # the driver's usage error, streamed back
    assert "FAILED" in result.stderr


def test_submission_needs_the_clusters_token(ray_cluster, tmp_path):
    """A laptop without the token (no RAY_AUTH_* variables, an empty ~/.ray) is refused; so is a wrong token.

    Each client is a fresh process: an in-process Ray started by an earlier test would lend Ray's client its own
    cached token.
    """
    url = ray_cluster.dashboard_url
    laptop = {k: v for k, v in ray_cluster.client_env().items() if not k.startswith("RAY_AUTH")}
    laptop["HOME"] = str(tmp_path)

    def jobs_list(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([SER, "jobs", "list", "--address", url], env={**laptop, **extra}, capture_output=True,
                              text=True, timeout=120)

    missing = jobs_list()
    assert missing.returncode == 1 and "Authentication required" in missing.stderr, missing.stdout + missing.stderr
    wrong = jobs_list(RAY_AUTH_TOKEN="0" * 64)
    assert wrong.returncode == 1 and "Authentication failed" in wrong.stderr, wrong.stdout + wrong.stderr
    right = jobs_list(RAY_AUTH_TOKEN=ray_cluster.token_file.read_text())
    assert right.returncode == 0, right.stdout + right.stderr


def test_a_job_run_as_a_driver_joins_the_cluster_through_ray_address(ray_cluster, s3_corpus):
    out = f"{new_bucket('driver')}/features"
    env = {"RAY_ADDRESS": ray_cluster.gcs_address}  # with the cluster's RAY_AUTH_MODE=token and token path
    result = ser(ray_cluster, "extract", "--corpus", f"ravdess={s3_corpus}", "--out", out, "--no-progress", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "extracted 24 utterances" in result.stdout
    drivers = [j for j in cluster_api(ray_cluster, "/api/jobs/") if j["type"] == "DRIVER" and "extract" in (j["entrypoint"] or "")]
    assert drivers and drivers[-1]["status"] == "SUCCEEDED"


def test_submit_tiny_train_runs_one_worker_per_node_and_writes_to_s3(ray_cluster, trained):
    result, out = trained
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    info = json.loads(fs.cat_file(f"{out.removeprefix('s3://')}/bundle.json"))
    assert info["training"]["workers"] == 2 and [h["epoch"] for h in info["training"]["history"]] == [0]
    assert fs.glob(f"{out.removeprefix('s3://')}/ray_run/**/state.json"), "Ray Train wrote no checkpoint to S3"
    assert len(nodes_that_ran(ray_cluster, submission_id_of(result), "actors", "RayTrainWorker")) == 2


@pytest.fixture(scope="session")
def call_archive(s3_server, tmp_path_factory) -> tuple[str, list[str]]:
    """Calls under per-day prefixes ``archive/YYYY-MM-DD/``; returns the archive root and the call ids of DAY."""
    local = tmp_path_factory.mktemp("archive")
    calls = [f"queue-{i % 2}/c-{i:02d}" for i in range(24)]
    for i, call in enumerate(calls):
        write_speech(local / DAY / f"{call}.wav", seconds=60.0, sample_rate=8000, f0=110 + 5 * i, seed=i)
    write_speech(local / "2024-04-30" / "queue-0" / "c-yesterday.wav", seconds=5.0, sample_rate=8000)
    root = f"{new_bucket('calls')}/archive"
    upload(local, root)
    return root, [f"{DAY}/{call}" for call in calls]  # a day folder's call ids carry the day (unique across days)


@pytest.fixture(scope="session")
def s3_model(s3_server, tmp_path_factory) -> str:
    """An untrained model bundle of the production architecture in S3 (real weights and inference; scoring does
    not depend on the train job)."""
    import numpy as np

    from ser_core.frontends.features import FeatureSpec
    from ser_core.models.bundle import save_bundle
    from ser_core.models.cnn import build_model

    spec = FeatureSpec()
    local = save_bundle(build_model(spec), spec, np.zeros(spec.n_features), np.ones(spec.n_features),
                        tmp_path_factory.mktemp("model") / "bundle")
    uri = f"{new_bucket('models')}/ser/untrained"
    upload(local, uri)
    return uri


def committed_calls(reports: str) -> int:
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return len(fs.glob(f"{reports.removeprefix('s3://')}/calls/date={DAY}/*.parquet"))


def test_submit_score_survives_losing_a_node(ray_cluster, s3_model, call_archive):
    """Two scoring actors, one per worker node. As soon as both are up, one node is killed; the test then plays
    the autoscaler and adds a node. The job must finish with every call of the day exactly once (DuckDB on S3)."""
    archive, calls = call_archive
    reports = f"{new_bucket('reports')}/ser"
    submitted = submit(ray_cluster, "score", "--archive", f"{archive}/{DAY}/", "--out", reports, "--date", DAY,
                       "--model", s3_model, "--workers", "2", "--batch-size", "64", "--calls-per-part", "1",
                       "--no-progress", options=("--no-wait",))
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()

    deadline = time.monotonic() + 240
    while sum(a["state"] == "ALIVE" for a in scoring_actors(ray_cluster, job)) < 2:
        assert time.monotonic() < deadline, ser_here(ray_cluster, "jobs", "logs", "--address", ray_cluster.dashboard_url, job).output
        time.sleep(0.2)
    calls_at_kill = committed_calls(reports)
    ray_cluster.kill_node(ray_cluster.workers[-1])  # each worker node holds one of the two actors (1 CPU each)
    ray_cluster.add_node(1)  # what the autoscaler does for a lost node

    finished = ser_here(ray_cluster, "jobs", "logs", "--follow", "--address", ray_cluster.dashboard_url, job)
    assert finished.exit_code == 0, finished.output[-4000:]
    assert f"{len(calls)} files: {len(calls)} ok, 0 error" in finished.stdout
    assert calls_at_kill < len(calls)
    restarts = [int(a["num_restarts"]) for a in scoring_actors(ray_cluster, job)]
    assert max(restarts) >= 1, f"no scoring actor was lost mid-job: {restarts}"

    con = s3_duckdb()
    for table in ("calls", "segments"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{reports}/{table}/*/*.parquet', hive_partitioning = true)")
    assert sorted(r[0] for r in con.execute("SELECT call_id FROM calls").fetchall()) == sorted(calls)  # once each
    assert con.execute("SELECT DISTINCT status, CAST(date AS VARCHAR) FROM calls").fetchall() == [("ok", DAY)]
    per_call = con.execute("""
        SELECT c.call_id, c.mono_segments, count(s.call_id), count(DISTINCT (s.channel, s.start_s))
        FROM calls c LEFT JOIN segments s USING (call_id) GROUP BY ALL""").fetchall()
    for call_id, reported, rows, distinct in per_call:
        assert reported == rows == distinct > 0, (call_id, reported, rows, distinct)  # no window lost or repeated
