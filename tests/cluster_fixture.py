"""A real multi-node Ray cluster on 127.0.0.1 for tests.

The head node is started with ``ray start --head --block``. Every further node is a separate raylet joined to
the head's GCS. Ray 2.60's ``ray start --address`` cannot add such a node on loopback: with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (which keeps Ray on 127.0.0.1) it refuses to start a worker node, and
without it it rewrites 127.0.0.1 to the machine's interface address. So a joined node is started by running
this module, which does what ``ray start --address ... --block`` does after that check (and what
``ray.cluster_utils.Cluster.add_node`` does): it starts a ``ray._private.node.Node`` with ``head=False``.

Each node runs in its own process group, so one node can be killed on its own (``kill_node``) and the
whole cluster is stopped without touching any other Ray on this machine (``ray stop`` would stop them all).
Token authentication is on, with a token of this cluster's own (``RAY_AUTH_TOKEN_PATH``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class RayNode:
    """One node of the cluster: the process group that holds its raylet and everything it started."""

    name: str
    process: subprocess.Popen
    log: Path

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every process of this node."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def alive(self) -> bool:
        """Whether any process of this node is still running."""
        try:
            os.killpg(self.process.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

class LocalRayCluster:
    """A Ray cluster of separate node processes on 127.0.0.1, with its own temp dir, ports and auth token."""

    def __init__(self, root: Path, base_env: dict[str, str], object_store_bytes: int = 200 * 1024**2):
        self.root = root
        self.temp_dir = root / "ray"
        self.token_file = root / "auth_token"
        self.object_store_bytes = object_store_bytes
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.head: RayNode | None = None
        self.workers: list[RayNode] = []
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        env = {k: v for k, v in base_env.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_file),
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",  # job entrypoints run `python` from the nodes' PATH
            PYTHONUNBUFFERED="1",
        )
        self._client_env = env
        # A real node has one Ray per machine, which Ray's address auto-detection (used inside Ray Train, for one)
        # finds; here other Rays may share the machine, so the node processes are pointed at this cluster.
        self.node_env = {**env, "RAY_ADDRESS": self.gcs_address}

    @property
    def gcs_address(self) -> str:
        """``127.0.0.1:PORT`` of the head's GCS (what ``ray.init`` and ``--ray-address`` take)."""
        return f"{LOOPBACK}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The Jobs API (``ser submit --address``)."""
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    def client_env(self) -> dict[str, str]:
        """Environment for a client process on this machine: this cluster's token, no RAY_ADDRESS."""
        return dict(self._client_env)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}

    def _agent_port_options(self) -> list[str]:
        return [
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--object-store-memory={self.object_store_bytes}",
        ]

    def _spawn(self, name: str, command: list[str]) -> RayNode:
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(command, env=self.node_env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return RayNode(name, process, log)

    def start(self, head_cpus: int = 1, worker_cpus: tuple[int, ...] = (1,), timeout: float = 90.0) -> None:
        """Start the head and one joined node per entry of ``worker_cpus``; wait until all are alive."""
        system_config = '{"health_check_period_ms": 1000, "health_check_failure_threshold": 3}'
        self.head = self._spawn("head", [
            str(VENV_BIN / "ray"), "start", "--head", "--block", f"--node-ip-address={LOOPBACK}",
            f"--port={self.gcs_port}", f"--dashboard-host={LOOPBACK}", f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}", f"--num-cpus={head_cpus}", f"--temp-dir={self.temp_dir}",
            "--min-worker-port=0", "--max-worker-port=0", "--disable-usage-stats", f"--system-config={system_config}",
            *self._agent_port_options(),
        ])
        self._wait_for_nodes(1, self.head, timeout)
        for cpus in worker_cpus:
            # One at a time: nodes starting together in one session folder pick the same socket and log names.
            self.add_node(cpus, timeout)

    def add_node(self, num_cpus: int = 1, timeout: float = 90.0, attempts: int = 2) -> RayNode:
        """Join one more node (a separate raylet) to the cluster and wait until it is alive.

        Ray gives a starting raylet 30 s to register with the GCS; on a machine whose CPUs are busy with other
        work that can run out, so a node that gave up is started again (``attempts`` times in all).
        """
        expected = len(self.alive_nodes()) + 1
        node = self._spawn(f"worker{len(self.workers) + 1}", [
            str(VENV_BIN / "python"), "-m", "tests.cluster_fixture", f"--address={self.gcs_address}",
            f"--num-cpus={num_cpus}", f"--temp-dir={self.temp_dir}", *self._agent_port_options(),
        ])
        self.workers.append(node)
        try:
            self._wait_for_nodes(expected, node, timeout)
        except RuntimeError:
            gave_up = node.process.poll() is not None  # rather than hanging until our timeout
            node.signal(signal.SIGKILL)  # whatever the failed start left behind
            node.process.wait(timeout=10)
            if attempts <= 1 or not gave_up:
                raise
            self.workers.remove(node)
            return self.add_node(num_cpus, timeout, attempts - 1)
        return node

    def kill_node(self, node: RayNode, timeout: float = 60.0) -> None:
        """Kill a node abruptly (SIGKILL to its raylet, workers and agents), as a lost machine goes; wait until
        the head has noticed (the node is no longer ALIVE)."""
        alive_before = len(self.alive_nodes())
        node.signal(signal.SIGKILL)
        node.process.wait(timeout=10)
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) >= alive_before:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the head still reports {node.name} alive {timeout} s after it was killed")
            time.sleep(0.5)

    def alive_nodes(self) -> list[dict]:
        """The nodes the head's state API reports as ALIVE (empty while the dashboard is not up)."""
        try:
            response = requests.get(f"{self.dashboard_url}/api/v0/nodes", params={"limit": 100},
                                    headers=self.auth_headers(), timeout=5)
        except requests.ConnectionError:
            return []
        if response.status_code != 200:
            return []
        return [n for n in response.json()["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def _wait_for_nodes(self, count: int, starting: RayNode, timeout: float) -> None:
        """Wait until ``count`` nodes are alive; if ``starting`` exits or time runs out, raise with the nodes' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and starting.process.poll() is None:
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {n.log.name}\n{n.log.read_text()[-3000:]}" for n in [self.head, *self.workers] if n)
        raise RuntimeError(f"Ray cluster did not reach {count} alive nodes\n{logs}")

    def shutdown(self, grace_seconds: float = 3.0) -> None:
        """Stop every node this cluster started, and nothing else: SIGTERM, then SIGKILL what is left after the grace."""
        nodes = [node for node in [*self.workers, self.head] if node is not None]
        for node in nodes:
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while any(node.alive() for node in nodes) and time.monotonic() < deadline:
            time.sleep(0.2)
        for node in nodes:
            node.signal(signal.SIGKILL)
            node.process.wait(timeout=10)


def _run_joined_node(argv: list[str]) -> None:
    """Start a worker node that joins ``--address`` and block until terminated (a ``ray start --block`` twin)."""
    import ray._private.node
    import ray._private.parameter

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--num-cpus", type=int, default=1)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--dashboard-agent-listen-port", type=int, required=True)
    parser.add_argument("--dashboard-agent-grpc-port", type=int, required=True)
    parser.add_argument("--runtime-env-agent-port", type=int, required=True)
    parser.add_argument("--metrics-export-port", type=int, required=True)
    parser.add_argument("--object-store-memory", type=int, required=True)
    args = parser.parse_args(argv)
    params = ray._private.parameter.RayParams(
        node_ip_address=LOOPBACK,
        gcs_address=args.address,
        num_cpus=args.num_cpus,
        temp_dir=args.temp_dir,
        object_store_memory=args.object_store_memory,
        dashboard_agent_listen_port=args.dashboard_agent_listen_port,
        metrics_agent_port=args.dashboard_agent_grpc_port,
        runtime_env_agent_port=args.runtime_env_agent_port,
        metrics_export_port=args.metrics_export_port,
        node_manager_port=0,
        min_worker_port=0,
        max_worker_port=0,
        include_log_monitor=False,  # one log monitor per machine: the head's
    )
    ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit through atexit, which stops the node's processes
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    _run_joined_node(sys.argv[1:])
