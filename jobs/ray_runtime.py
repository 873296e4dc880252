"""Starting or joining Ray the same way in every job."""

from __future__ import annotations

import os

import ray

# Keeps Ray's node on loopback instead of the machine's interface address (seen with Ray 2.60).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``); without one, start a private local Ray in-process.

    ``num_cpus`` limits a local Ray (ignored when joining a cluster). Does nothing if Ray is already up.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = {"log_to_driver": True, "configure_logging": False}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **common)
