"""``ser submit`` and ``ser jobs``: run any ser command as a job on a Ray cluster through the Ray Jobs API.

``ser submit [OPTIONS] -- COMMAND ARGS...`` sends ``python -m jobs.cli COMMAND ARGS...`` to the cluster's job
server (the dashboard, ``http://HEAD:8265``). Ray starts that driver on the head node with ``RAY_ADDRESS`` set,
so every job's ``--ray-address`` option (which reads ``RAY_ADDRESS``) joins the cluster.

Runtime environment (what the driver and its workers run with):

* ``working_dir``: by default this project's root, zipped and uploaded with the job, minus
  :data:`WORKING_DIR_EXCLUDES` and whatever ``.gitignore`` lists; the driver's current directory on the cluster.
  ``--working-dir PATH`` ships another folder, ``--no-working-dir`` none (the cluster image's installed package runs).
* ``--pip PKG`` (repeatable), ``--image-uri URI``, ``--env NAME[=VALUE]`` (repeatable) and ``--runtime-env-json``
  for anything else Ray's runtime environments take.

Authentication: when the cluster has Ray token authentication on, requests carry ``Authorization: Bearer TOKEN``,
the token found the way Ray looks for it (see :func:`auth_token`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import click

from jobs.ray_runtime import output_env, verbosity

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Never shipped with the working directory (gitwildmatch patterns, relative to it).
WORKING_DIR_EXCLUDES = (
    ".venv/", ".git/", "**/__pycache__/", "*.egg-info/", ".pytest_cache/",
    "tests/data/", "bench/results/", "docs/img/", "out/", "demo-out/",
)

# Where the cluster address comes from when --address is not given (Ray's own order).
ADDRESS_ENVVARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")

# Commands that manage jobs rather than run as one.
NOT_SUBMITTABLE = frozenset({"submit", "jobs"})

# The Jobs API's answer while the head's job agent has not registered yet (HTTP 500; a fresh or loaded cluster).
NO_AGENT_YET = "No available agent to submit job"
DASHBOARD_AGENT_PORT = 52365  # Ray's default --dashboard-agent-listen-port, one per host

# Exit status of ``ser submit --wait`` and ``ser jobs logs --follow`` per final job status.
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}


def auth_token() -> str | None:
    """The Ray authentication token, looked up as Ray does; ``None`` when there is none or auth is disabled.

    Order: ``RAY_AUTH_TOKEN`` (the token itself), the file named by ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``
    (written by ``ray get-auth-token --generate``). ``RAY_AUTH_MODE=disabled`` sends none.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    if path := os.environ.get("RAY_AUTH_TOKEN_PATH"):
        try:
            token = Path(path).expanduser().read_text().strip()
        except OSError as err:
            raise click.ClickException(f"RAY_AUTH_TOKEN_PATH={path} cannot be read: {err}") from None
        if not token:
            raise click.ClickException(f"RAY_AUTH_TOKEN_PATH={path} is empty")
        return token
    default = Path.home() / ".ray" / "auth_token"
    return (default.read_text().strip() or None) if default.is_file() else None


@contextlib.contextmanager
def _without_env(names: Sequence[str]) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _cluster_errors() -> Iterator[None]:
    """Turn the Jobs API client's errors into one-line CLI errors."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as err:
        raise click.ClickException(
            f"{err}\nThe token is read from RAY_AUTH_TOKEN, the file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token."
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise click.ClickException(str(err)) from None


def job_client(address: str | None):
    """A ``JobSubmissionClient`` for the dashboard at ``address``, sending the auth token when there is one."""
    from ray.job_submission import JobSubmissionClient

    if not address:
        raise click.UsageError("no cluster given: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    token = auth_token()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # The client lets RAY_ADDRESS / RAY_API_SERVER_ADDRESS override its address argument; --address must win.
    with _without_env(ADDRESS_ENVVARS), _cluster_errors():
        return JobSubmissionClient(address, headers=headers)


def parse_env_options(values: Sequence[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """``NAME=VALUE`` as given, a bare ``NAME`` copied from the local environment (which must have it)."""
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for value in values:
        name, sep, given = value.partition("=")
        if not name:
            raise click.BadParameter(f"{value!r} has no variable name", param_hint="--env")
        if not sep and name not in environ:
            raise click.BadParameter(f"{name} is not set in this environment", param_hint="--env")
        env[name] = given if sep else environ[name]
    return env


def build_runtime_env(base: dict | None = None, working_dir: str | None = None, pip: Sequence[str] = (),
                      image_uri: str | None = None, env_vars: dict[str, str] | None = None) -> dict:
    """The job's runtime environment: ``base`` (from ``--runtime-env-json``) with the explicit options applied.

    ``working_dir``, ``pip`` and ``image_uri`` replace the same keys of ``base``; ``env_vars`` are added to its
    ``env_vars``; a shipped working directory always leaves out :data:`WORKING_DIR_EXCLUDES`.
    """
    runtime_env = dict(base or {})
    if working_dir:
        runtime_env["working_dir"] = working_dir
        runtime_env["excludes"] = list(dict.fromkeys([*runtime_env.get("excludes", []), *WORKING_DIR_EXCLUDES]))
    if pip:
        runtime_env["pip"] = list(pip)
    if image_uri:
        runtime_env["image_uri"] = image_uri
    if env_vars:
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **env_vars}
    return runtime_env


def job_entrypoint(command: Sequence[str], known_commands: set[str]) -> str:
    """The shell command the job runs: ``python -m jobs.cli COMMAND ARGS...``, quoted."""
    if not command:
        raise click.UsageError("name the ser command to run, e.g. ser submit -- extract --corpus ravdess=s3://... --out s3://...")
    name = command[0]
    if name in NOT_SUBMITTABLE or name not in known_commands:
        choices = ", ".join(sorted(known_commands - NOT_SUBMITTABLE))
        raise click.UsageError(f"{name!r} is not a ser command that runs as a job (one of: {choices})")
    return shlex.join(["python", "-m", "jobs.cli", *command])


def submit_when_ready(client, timeout_s: float = 120.0, first_wait_s: float = 1.0, **job) -> str:
    """``client.submit_job(**job)``, retried with doubling waits (at most 10 s) while the cluster answers that no job
    agent is available yet, for at most ``timeout_s``; then a :class:`click.ClickException` saying so."""
    deadline = time.monotonic() + timeout_s
    wait = first_wait_s
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as err:
            if NO_AGENT_YET not in str(err):
                raise
            if time.monotonic() + wait > deadline:
                raise click.ClickException(
                    f"the cluster's job agent was still not available after {timeout_s:.0f} s ({NO_AGENT_YET.lower()}); "
                    "the head node may still be starting or overloaded: check `ray status` on it and submit again. "
                    f"On a host running several Ray clusters, another one may hold the dashboard agent's port "
                    f"({DASHBOARD_AGENT_PORT} by default), so this head's agent never started: restart the head with "
                    "`ray start --head --dashboard-agent-listen-port=<a free port>`"
                ) from None
            click.echo(f"the cluster's job agent is not ready yet; retrying in {wait:.0f} s", err=True)
            time.sleep(wait)
            wait = min(2 * wait, 10.0)


async def _print_log_stream(client, submission_id: str) -> None:
    async for chunk in client.tail_job_logs(submission_id):
        click.echo(chunk, nl=False)


def wait_for_job(client, submission_id: str, poll_seconds: float = 1.0) -> str:
    """Block until the job reaches a terminal status and return it (``SUCCEEDED``, ``FAILED`` or ``STOPPED``)."""
    while not (status := client.get_job_status(submission_id)).is_terminal():
        time.sleep(poll_seconds)
    return status.value


def follow_job(client, submission_id: str) -> int:
    """Print the job's logs as they are written until it ends; return the exit code for its final status."""
    try:
        asyncio.run(_print_log_stream(client, submission_id))
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; job {submission_id} keeps running (ser jobs stop {submission_id} stops it)", err=True)
        return 130
    except Exception as err:  # a broken log stream must not hide the job's outcome
        click.echo(f"log stream interrupted ({err}); waiting for the job to end (ser jobs logs {submission_id})", err=True)
    status = wait_for_job(client, submission_id)
    message = client.get_job_info(submission_id).message or ""
    click.echo(f"job {submission_id} {status}: {message}".rstrip(": "), err=True)
    return EXIT_CODES[status]


address_option = click.option(
    "--address", envvar=list(ADDRESS_ENVVARS), metavar="URL",
    help="The cluster's job server, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, then RAY_ADDRESS).",
)


@click.command("submit", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@address_option
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Stream the job's logs and exit with its status (0 succeeded, 1 failed, 3 stopped).")
@click.option("--working-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder shipped as the job's working directory (default: this project's root, when ser runs from a checkout).")
@click.option("--no-working-dir", is_flag=True, help="Ship no working directory; the cluster image's ser runs.")
@click.option("--pip", multiple=True, metavar="REQ", help="pip requirement installed for the job. Repeatable.")
@click.option("--image-uri", default=None, help="Container image to run the job's processes in.")
@click.option("--env", "env_options", multiple=True, metavar="NAME[=VALUE]",
              help="Environment variable for the job; NAME alone copies this shell's value. Repeatable.")
@click.option("--runtime-env-json", default=None, metavar="JSON",
              help="A Ray runtime_env as JSON; the options above override or extend it.")
@click.option("--submission-id", default=None, help="Job id (default: generated); a reused id is refused.")
@click.option("--entrypoint-num-cpus", type=float, default=None, help="CPUs reserved for the driver (Ray default: 0).")
@click.option("--agent-timeout", type=click.FloatRange(min=0), default=120.0, show_default=True, metavar="SECONDS",
              help="How long to keep retrying while a starting cluster has no job agent yet.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def cli(ctx, address, wait, working_dir, no_working_dir, pip, image_uri, env_options, runtime_env_json,
        submission_id, entrypoint_num_cpus, agent_timeout, command) -> None:
    """Run a ser COMMAND (extract, train, evaluate, score, ...) as a job on a Ray cluster.

    \b
    ser submit --address http://HEAD:8265 -- extract --corpus ravdess=s3://b/ravdess --out s3://b/features

    With Ray token authentication on, the token is read from RAY_AUTH_TOKEN, the file named by RAY_AUTH_TOKEN_PATH,
    or ~/.ray/auth_token. See cluster/README.md.
    """
    entrypoint = job_entrypoint(command, set(ctx.find_root().command.commands))
    if working_dir and no_working_dir:
        raise click.UsageError("--working-dir and --no-working-dir exclude each other")
    try:
        base = json.loads(runtime_env_json) if runtime_env_json else {}
    except json.JSONDecodeError as err:
        raise click.BadParameter(str(err), param_hint="--runtime-env-json") from None
    base["env_vars"] = {**output_env(verbosity()), **(base.get("env_vars") or {})}  # ser -v reaches the job; the JSON wins
    if no_working_dir:
        base.pop("working_dir", None)
    elif not working_dir and "working_dir" not in base and (PROJECT_ROOT / "pyproject.toml").is_file():
        working_dir = str(PROJECT_ROOT)  # the default: this project, unless the JSON names a working_dir
    runtime_env = build_runtime_env(
        base,
        working_dir=working_dir,
        pip=pip,
        image_uri=image_uri,
        env_vars=parse_env_options(env_options),
    )
    client = job_client(address)
    with _cluster_errors():
        submission_id = submit_when_ready(client, agent_timeout, entrypoint=entrypoint, runtime_env=runtime_env,
                                          submission_id=submission_id, entrypoint_num_cpus=entrypoint_num_cpus)
    click.echo(f"submitted job {submission_id}: {entrypoint}", err=True)
    if not wait:
        click.echo(submission_id)
        return
    with _cluster_errors():
        code = follow_job(client, submission_id)
    ctx.exit(code)


@click.group("jobs")
def jobs() -> None:
    """List, inspect, follow and stop jobs on a Ray cluster."""


def _time(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@jobs.command("list")
@address_option
def list_jobs(address) -> None:
    """Every job of the cluster, oldest first."""
    client = job_client(address)
    with _cluster_errors():
        details = sorted(client.list_jobs(), key=lambda job: job.start_time or 0)
    click.echo(f"{'ID':<34} {'STATUS':<10} {'STARTED (UTC)':<19} {'ENDED (UTC)':<19} ENTRYPOINT")
    for job in details:
        click.echo(f"{job.submission_id or job.job_id:<34} {job.status.value:<10} {_time(job.start_time):<19} "
                   f"{_time(job.end_time):<19} {job.entrypoint or ''}")


@jobs.command("status")
@address_option
@click.argument("submission_id")
def job_status(address, submission_id) -> None:
    """A job's status and message."""
    client = job_client(address)
    with _cluster_errors():
        info = client.get_job_info(submission_id)
    click.echo(f"{info.status.value}: {info.message or ''}".rstrip(": "))


@jobs.command("logs")
@address_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends; exit with its status.")
@click.argument("submission_id")
@click.pass_context
def job_logs(ctx, address, follow, submission_id) -> None:
    """A job's driver logs."""
    client = job_client(address)
    with _cluster_errors():
        if not follow:
            click.echo(client.get_job_logs(submission_id), nl=False)
            return
        code = follow_job(client, submission_id)
    ctx.exit(code)


@jobs.command("stop")
@address_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the job has ended.")
@click.argument("submission_id")
def stop_job(address, wait, submission_id) -> None:
    """Stop a running job."""
    client = job_client(address)
    with _cluster_errors():
        if not client.stop_job(submission_id):
            click.echo(f"job {submission_id} was not running", err=True)
        if wait:
            click.echo(wait_for_job(client, submission_id))
