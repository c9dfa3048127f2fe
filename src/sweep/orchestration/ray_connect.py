"""Connecting to a Ray cluster, sizing the worker actors from its resources, and the checks made before a
`sweep.backend=ray` sweep writes anything. Ray is imported here and in ray_pool.py only, never by the local backend.

Addresses (`sweep.ray.address`): `auto` (the cluster this machine belongs to, or RAY_ADDRESS), `host:port` (a head
node's GCS), `ray://host:10001` (Ray Client), `local` (a private single-machine Ray started in this process).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from sweep.config.errors import ConfigError
from sweep.text import one_line

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONNECT_TIMEOUT_S = 5.0  # a host:port address must accept a TCP connection within this
# Ray runs single-machine (nothing rewritten, every server on 127.0.0.1) when this is "0"; see keep_loopback
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass
class ActorPlan:
    """How many worker actors, what each reserves, and its torch threads."""

    count: int
    resources: dict[str, float]  # num_gpus / num_cpus of each actor
    threads: int
    capacity: int  # how many such actors the cluster can hold at once

    def describe(self) -> str:
        each = ", ".join(f"{v:g} {k.removeprefix('num_')[:-1].upper()}" for k, v in self.resources.items() if v)
        return f"{self.count} worker actor{'s' if self.count != 1 else ''} ({each or 'no reservation'} each, {self.threads} torch thread{'s' if self.threads != 1 else ''})"


def plan_actors(workers: Any, workers_per_gpu: int, cpus_per_worker: float, threads_per_worker: int,
                cluster: dict[str, float], gpus_per_worker: int = 1) -> ActorPlan:
    """One actor per GPU share (`1/workers_per_gpu` of a GPU, no CPU reserved: Ray sets CUDA_VISIBLE_DEVICES), one per
    `gpus_per_worker` whole GPUs (a trial across them; Ray places them on one node), or on a cluster without GPUs
    one per `cpus_per_worker` CPUs. `workers=auto` fills the cluster; `N` asks for N."""
    threads = threads_per_worker or max(1, int(cpus_per_worker))
    gpus = float(cluster.get("GPU", 0.0))
    if gpus > 0 and gpus_per_worker > 1:
        capacity = int(gpus // gpus_per_worker)
        resources = {"num_gpus": float(gpus_per_worker), "num_cpus": 0.0}
    elif gpus > 0:
        capacity = int(gpus * workers_per_gpu + 1e-9)
        resources = {"num_gpus": 1.0 / workers_per_gpu, "num_cpus": 0.0}
    else:
        capacity = int(float(cluster.get("CPU", 0.0)) / cpus_per_worker + 1e-9)
        resources = {"num_cpus": float(cpus_per_worker)}
    count = max(1, capacity) if workers == "auto" else int(workers)
    return ActorPlan(count, resources, threads, capacity)


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def keep_loopback(address: str) -> None:
    """A loopback address (or `local`) must stay on loopback. Ray rewrites 127.0.0.1 into this machine's external
    address so that other machines could join, and binds its servers to every interface unless the node address is
    exactly 127.0.0.1; in its single-machine mode it does neither. Set before Ray is imported (its constant is read
    then); a process that already imported Ray gets the same setting on the imported constant."""
    hp = _host_port(address)
    if address != "local" and (hp is None or hp[0] not in LOOPBACK):
        return
    os.environ.setdefault(SINGLE_MACHINE_ENV, "0")
    import sys

    if "ray" in sys.modules and os.environ[SINGLE_MACHINE_ENV] == "0":  # a private Ray constant: checked, never skipped
        from sweep.private_api import private_module

        constants = private_module("ray", "ray._private.ray_constants", "ENABLE_RAY_CLUSTER",
                                   why="keeping a loopback Ray on 127.0.0.1 instead of every interface")
        constants.ENABLE_RAY_CLUSTER = False


def connect(address: str, namespace: str):
    """The `ray` module, connected (once per process) to the cluster at `address`; a one-line ConfigError naming
    sweep.ray.address when it cannot be reached."""
    keep_loopback(address)
    fix = ("start one with `ray start --head` (see docs/ray-and-security.md), fix sweep.ray.address, or use "
           "sweep.ray.address=local for a private Ray on this machine")
    hp = _host_port(address)
    if hp is not None:
        try:
            socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ConfigError([f"sweep.ray.address: nothing answers at {address} ({one_line(exc, 120)}): {fix}"]) from None
    try:
        import ray
    except ImportError:
        raise ConfigError(["sweep.backend: ray is not installed (pip install -e '.[ray]', or sweep.backend=local)"]) from None
    if ray.is_initialized():
        return ray
    keep_loopback(address)  # Ray is imported now: its constant must exist and agree with the variable
    kwargs: dict[str, Any] = {"namespace": namespace, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        kwargs.update(include_dashboard=False)
        if not ({"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ)):
            # a private Ray gets a private token: Ray would otherwise save one in ~/.ray/auth_token, which then turns on
            # token authentication for any later `ray start --head` on this machine
            import secrets

            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # ConnectionError, a version mismatch, a refused Ray Client ...
        raise ConfigError([f"sweep.ray.address: cannot connect to Ray at {address}: {one_line(exc, 200)}; {fix}"]) from None
    return ray


def alive_nodes(ray) -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def _local_store(uri: str) -> bool:
    """A tracking URI that names a file or folder on this machine (sqlite, file:, a bare path)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_cluster(run) -> None:
    """Before anything is written: the cluster answers, and every node can reach the MLflow store (a file on this
    machine cannot be written by workers on other nodes)."""
    cfg = run.sweep.ray
    ray = connect(cfg.address, cfg.namespace)
    nodes = alive_nodes(ray)
    if len(nodes) <= 1 or run.tracking.backend != "mlflow":
        return
    uri, where = run.tracking.tracking_uri, run.tracking.artifact_location
    if _local_store(uri):
        raise ConfigError([f"tracking.tracking_uri: {uri} is a file on this machine, which workers on the cluster's other "
                           f"{len(nodes) - 1} node(s) cannot write; start `mlflow server --serve-artifacts` and pass "
                           "tracking.tracking_uri=http://HOST:5000 (docs/ray-and-security.md)"])
    if not uri.startswith(("http://", "https://")) and "://" not in where:
        raise ConfigError([f"tracking.artifact_location: {where} is a folder on this machine, which workers on other nodes "
                           "cannot write; use an object store (s3://..., gs://...) or an MLflow server with --serve-artifacts"])
