"""``ser submit`` / ``ser jobs`` without a cluster: token lookup, runtime environment, entrypoint, CLI errors.

Submission to a real cluster is tested in ``test_multinode.py``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from jobs.cli import main
from jobs.submit import (
    WORKING_DIR_EXCLUDES,
    auth_token,
    build_runtime_env,
    job_entrypoint,
    parse_env_options,
)
from tests.cluster_fixture import VENV_BIN, LocalRayCluster, free_port

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@pytest.fixture
def clean_auth_env(monkeypatch, tmp_path):
    """No token in the environment and an empty home (so ~/.ray/auth_token is absent)."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_auth_token_follows_rays_lookup_order(clean_auth_env, monkeypatch, tmp_path):
    assert auth_token() is None

    default = clean_auth_env / ".ray" / "auth_token"
    default.parent.mkdir(parents=True)
    default.write_text("from-home\n")
    assert auth_token() == "from-home"

    token_file = tmp_path / "cluster-token"
    token_file.write_text("  from-path\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert auth_token() == "from-path"

    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth_token() == "from-env"

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert auth_token() is None


def test_an_unreadable_token_path_is_an_error_not_a_silent_fallback(clean_auth_env, monkeypatch, tmp_path):
    (clean_auth_env / ".ray").mkdir(parents=True)
    (clean_auth_env / ".ray" / "auth_token").write_text("from-home")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(click.ClickException, match="RAY_AUTH_TOKEN_PATH"):
        auth_token()


def test_env_options_take_values_or_copy_them_from_this_shell():
    environ = {"AWS_DEFAULT_REGION": "eu-west-1"}
    assert parse_env_options(["AWS_DEFAULT_REGION", "TF_CPP_MIN_LOG_LEVEL=2", "EMPTY="], environ) == {
        "AWS_DEFAULT_REGION": "eu-west-1", "TF_CPP_MIN_LOG_LEVEL": "2", "EMPTY": ""}
    with pytest.raises(click.BadParameter, match="AWS_PROFILE is not set"):
        parse_env_options(["AWS_PROFILE"], environ)
    with pytest.raises(click.BadParameter, match="no variable name"):
        parse_env_options(["=x"], environ)


def test_runtime_env_options_override_or_extend_the_json_base():
    base = {"working_dir": "s3://bucket/pkg.zip", "excludes": ["data/"], "env_vars": {"A": "1", "B": "1"},
            "pip": ["old==1"], "config": {"setup_timeout_seconds": 900}}
    env = build_runtime_env(base, working_dir="/src", pip=["requests==2.32.3"], image_uri="ghcr.io/x/ser:1",
                            env_vars={"B": "2", "C": "3"})
    assert env["working_dir"] == "/src"
    assert env["excludes"][0] == "data/" and set(WORKING_DIR_EXCLUDES) <= set(env["excludes"])
    assert env["pip"] == ["requests==2.32.3"] and env["image_uri"] == "ghcr.io/x/ser:1"
    assert env["env_vars"] == {"A": "1", "B": "2", "C": "3"}
    assert env["config"] == {"setup_timeout_seconds": 900}
    assert base["env_vars"] == {"A": "1", "B": "1"}  # the caller's dict is left alone
    assert build_runtime_env(None) == {}


def test_the_shipped_working_directory_leaves_out_environments_history_and_results(tmp_path):
    """Package a project-shaped folder with Ray's own packager and the excludes ``ser submit`` sends."""
    from ray._private.runtime_env.packaging import create_package

    project = tmp_path / "project"
    kept = ["pyproject.toml", "jobs/cli.py", "ser_core/storage.py", "tests/test_x.py", "cluster/README.md", "bench/extract.py"]
    dropped = [".venv/lib/python3.11/site-packages/big.so", ".git/objects/ab/cdef", "jobs/__pycache__/cli.cpython-311.pyc",
               "ser.egg-info/PKG-INFO", "tests/data/clip.wav", "bench/results/run.json", "docs/img/plot.png",
               "out/features/shard.parquet", "demo-out/report.parquet", ".pytest_cache/v/cache"]
    for name in kept + dropped:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(name)
    package = tmp_path / "pkg.zip"
    create_package(str(project), package, include_gitignore=True,
                   excludes=build_runtime_env(working_dir=str(project))["excludes"])
    shipped = {n for n in zipfile.ZipFile(package).namelist() if not n.endswith("/")}
    assert shipped == set(kept)


def test_entrypoint_runs_the_ser_cli_with_the_arguments_quoted():
    known = {"extract", "train", "submit", "jobs"}
    assert job_entrypoint(["extract", "--corpus", "ravdess=s3://b/my corpus", "--out", "s3://b/f"], known) == (
        "python -m jobs.cli extract --corpus 'ravdess=s3://b/my corpus' --out s3://b/f")
    for bad in (["submit", "--", "extract"], ["jobs", "list"], ["extrakt"], []):
        with pytest.raises(click.UsageError):
            job_entrypoint(bad, known)


def _invoke(args, **env):
    return CliRunner().invoke(main, args, env={"RAY_ADDRESS": None, "RAY_API_SERVER_ADDRESS": None, **env})


def test_submit_without_an_address_or_with_an_unknown_command_fails_before_contacting_anything():
    no_address = _invoke(["submit", "--", "extract", "--corpus", "ravdess=x", "--out", "y"])
    assert no_address.exit_code == 2 and "pass --address" in no_address.output
    unknown = _invoke(["submit", "--address", "http://127.0.0.1:9", "--", "score-everything"])
    assert unknown.exit_code == 2 and "not a ser command" in unknown.output
    recursive = _invoke(["submit", "--address", "http://127.0.0.1:9", "submit", "extract"])
    assert recursive.exit_code == 2 and "not a ser command" in recursive.output


def test_an_unreachable_job_server_is_a_one_line_error():
    result = _invoke(["jobs", "list", "--address", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1 and "Failed to connect" in result.output and "Traceback" not in result.output


# On a head node's PYTHONPATH, this makes the dashboard agent publish its address ``SER_TEST_AGENT_DELAY_S`` seconds
# after it has started listening, as on a loaded machine: until then the node is up and the Jobs API answers 500
# "No available agent to submit job, please try again later".
SLOW_AGENT_HOOK = """
import os, sys, time
if sys.argv and sys.argv[0].replace(os.sep, "/").endswith("dashboard/agent.py"):
    import ray._raylet as raylet

    persist_port = raylet.persist_port

    def persist_port_then_stall(session_dir, node_id, name, port):
        persist_port(session_dir, node_id, name, port)
        if name == raylet.DASHBOARD_AGENT_LISTEN_PORT_NAME:  # the address is written to the GCS right after this
            time.sleep(float(os.environ["SER_TEST_AGENT_DELAY_S"]))

    raylet.persist_port = persist_port_then_stall
"""


@pytest.fixture
def head_with_a_late_job_agent(tmp_path):
    """A real ``ray start --head`` on 127.0.0.1 whose job agent publishes its address 60 s after the node is up."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_AGENT_HOOK)
    with tempfile.TemporaryDirectory(prefix="sersub-", dir="/tmp") as root:  # short: Ray's socket paths must fit
        cluster = LocalRayCluster(Path(root), dict(os.environ))
        cluster.node_env.update(SER_TEST_AGENT_DELAY_S="60",
                                PYTHONPATH=os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            cluster.start(head_cpus=1, worker_cpus=())
            yield cluster
        finally:
            cluster.shutdown()


@pytest.mark.slow
def test_submit_right_after_the_head_starts_retries_until_the_job_agent_is_up(head_with_a_late_job_agent):
    cluster = head_with_a_late_job_agent

    def submit(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "ser"), "submit", "--address", cluster.dashboard_url, "--no-working-dir",
                               *options, "--", "report", "--help"],
                              env=cluster.client_env(), capture_output=True, text=True, timeout=240)

    impatient = submit("--agent-timeout", "1")
    assert impatient.returncode == 1, impatient.stderr
    assert "job agent was still not available after 1 s" in impatient.stderr and "Traceback" not in impatient.stderr
    assert "another one may hold the dashboard agent's port (52365 by default)" in impatient.stderr  # the usual cause
    patient = submit()
    assert patient.returncode == 0, patient.stderr
    assert "not ready yet; retrying" in patient.stderr  # the first answers were the 500, and were retried
    assert "Summarise scored calls" in patient.stdout  # the job ran: its log is `ser report --help`
