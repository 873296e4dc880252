"""Starting or joining Ray the same way in every job, one task per shard for the jobs that write shards, and how much
of Ray's and TensorFlow's output the user sees.

Verbosity (``ser -v``, ``SER_VERBOSITY``) is one number for the driver, its workers and ``ser submit`` jobs:

* ``0`` (default): ``ser``'s own warnings, progress bars and summaries only. Ray's and Ray Data's console logs and
  libraries' deprecation warnings are off, the driver's native stderr (TensorFlow's oneDNN/CUDA/absl notices, Ray's ``core_worker.cc`` lines) goes to
  :data:`NATIVE_STDERR_LOG`, and workers' output is not forwarded to the driver (Ray's log folder,
  ``/tmp/ray/session_latest/logs``, keeps it).
* ``1`` (``-v``): ``ser``'s INFO logs too, and the workers' output (TensorFlow's start-up notices in it included).
* ``2`` (``-vv``): Ray's and TensorFlow's own logs as they come (the environment's settings apply).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import ray
from tqdm import tqdm

from ser_core import storage
from ser_core.corpora.manifest import Utterance
from ser_core.text import shown

# Keeps Ray's node on loopback instead of the machine's interface address (seen with Ray 2.60).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

VERBOSITY_ENV = "SER_VERBOSITY"
LOUD = 2  # from this verbosity on, Ray and TensorFlow log as they would by default

# Native log switches of the quiet levels (read by each process at start, so they go to workers as env_vars).
QUIET_NATIVE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}  # TensorFlow C++ below FATAL, such as "failed call to cuInit"

# Below -vv, what native code in the driver writes to stderr (TensorFlow's start-up notices, written before absl
# logging is set up so no variable silences them; Ray's core_worker.cc lines) goes here instead, overwritten by
# each run; Python's own stderr (progress bars, logs, errors) still reaches the terminal.
NATIVE_STDERR_LOG = Path(tempfile.gettempdir()) / f"ser-native-stderr-{os.getuid()}.log"

# Python loggers of libraries that only speak at -vv.
LIBRARY_LOGGERS = ("ray", "tensorflow", "absl", "h5py", "numba", "matplotlib")

# Ray's own variable naming the submitted job's configuration (its runtime_env already holds our env_vars).
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def verbosity() -> int:
    """The verbosity this process runs at (``SER_VERBOSITY``, set by ``ser -v``); 0 when unset or not a number."""
    try:
        return max(0, int(os.environ.get(VERBOSITY_ENV, "0")))
    except ValueError:
        return 0


def output_env(level: int) -> dict[str, str]:
    """Environment variables that give a process (driver, Ray worker or submitted job) verbosity ``level``."""
    return {VERBOSITY_ENV: str(level), **(QUIET_NATIVE_ENV if level < LOUD else {})}


def _native_stderr_to(path: Path) -> None:
    """Point file descriptor 2 at ``path`` and ``sys.stderr`` at a copy of the original descriptor.

    Only when ``sys.stderr`` is this process's real stderr (not a test runner's capture).
    """
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return
    sys.stderr.flush()
    sys.stderr = open(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    native = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(native, 2)
    os.close(native)


class ShownFormatter(logging.Formatter):
    """Log lines whose message has its control characters escaped (names in it are data; tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return shown(super().formatMessage(record))


def configure_output(level: int) -> None:
    """Set this process's verbosity: its environment (inherited by a local Ray's workers), where native code's stderr
    goes, and Python logging."""
    os.environ.update(output_env(level))
    if level < LOUD:
        _native_stderr_to(NATIVE_STDERR_LOG)
        for category in (DeprecationWarning, FutureWarning):  # libraries' notes to developers, not the user's data
            warnings.simplefilter("ignore", category)
    logging.basicConfig(level=logging.INFO if level else logging.WARNING, force=True)
    logging.getLogger().handlers[0].setFormatter(ShownFormatter("%(levelname)s %(name)s: %(message)s"))
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level >= LOUD else logging.ERROR)


def _quiet_ray_data(level: int) -> None:
    """Ray Data's progress logging and console INFO lines off below -vv (its log file keeps everything)."""
    import ray.data

    if level >= LOUD:
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ser draws its own; without a tty Ray Data logs progress blocks instead
    context.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.ERROR)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``); without one, start a private local Ray in-process.

    ``num_cpus`` limits a local Ray (ignored when joining a cluster). Does nothing if Ray is already up. Workers get
    this process's verbosity through the job's runtime environment.
    """
    if ray.is_initialized():
        return
    level = verbosity()
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = {"log_to_driver": level > 0, "configure_logging": False}
    if JOB_CONFIG_ENV not in os.environ:
        # Inside a submitted job the job's runtime env (which ser submit fills) already reaches the workers; a
        # runtime_env given to ray.init there replaces the job's, and Ray then removes the working_dir under the
        # running driver.
        common["runtime_env"] = {"env_vars": output_env(level)}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **common)
    _quiet_ray_data(level)


def run_shard_tasks(work: Callable[..., float], shards: dict[str, list[Utterance]], splits: dict[str, str], settings: object,
                    folders: tuple[str, str], *, desc: str, progress: bool, **task_options) -> float:
    """Run ``work(shard, splits, settings, rows_uri, errors_uri)`` as one Ray task per shard (``task_options``: Ray's),
    the URIs being the shard's name in each of ``folders``; return the sum of what the tasks return (seconds of audio),
    with a progress bar counting files."""
    task = ray.remote(work).options(**task_options)
    splits_ref = ray.put(splits)
    pending = {task.remote(shard, splits_ref, settings, *(storage.join(folder, name) for folder in folders)): len(shard)
               for name, shard in shards.items()}
    total = 0.0
    with tqdm(total=sum(pending.values()), unit="file", desc=desc, disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            total += ray.get(ready[0])
            bar.update(pending.pop(ready[0]))
    return total
