"""A real two-node Ray cluster and a real MLflow tracking server on this machine, bound to loopback, for the Ray tests.

    python .ci/ray_cluster.py start [DIR]     start both nodes and the server; print the variables the tests read
    python .ci/ray_cluster.py stop DIR        stop everything this script started under DIR (nothing else)
    python .ci/ray_cluster.py stop-node DIR   SIGKILL the second node (raylet, its agents and actors): a node that vanishes
    python .ci/ray_cluster.py start-node DIR  start the second node again
    python .ci/ray_cluster.py node-id DIR     print the second node's Ray node id

`start` prints shell assignments (LORASWEEP_TEST_RAY_ADDRESS, LORASWEEP_TEST_MLFLOW_URI, LORASWEEP_TEST_CLUSTER_DIR,
and the cluster's RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH);
.ci/run exports them, tests/test_ray.py runs this script itself when they are absent.

Each node is `ray start` with --node-ip-address=127.0.0.1, one CPU and two logical GPUs (GPU counts in Ray are
logical: no GPU is needed). The cluster requires Ray's token authentication with a token of its own
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH=DIR/auth_token, printed with the addresses: whoever connects needs both);
this also keeps it independent of a ~/.ray/auth_token that a local `ray.init()` may have left behind. Ray only keeps its servers on loopback when a node's address is exactly 127.0.0.1, but
its CLI rewrites 127.0.0.1 into the machine's external address (`resolve_ip_for_localhost`) so that other machines
can join; `ray start` therefore runs through Ray's own CLI entry point with that one rewrite turned off (SHIM).
The tests do not use Ray Client (its per-client servers make the same rewrite: they would connect to the external
address), but `ray start --head` starts its proxy anyway, handed to init. Every process started here carries DIR in
its command line or descends from one that does, except that proxy, which names the head's address: `stop` ends
exactly those, and the MLflow server's process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# ray._private.services is private (sweep/private_api.py): a Ray without the function fails here, loudly, instead
# of the assignment adding an unused attribute and the nodes quietly binding to the external address
SHIM = ("import sys; from sweep.private_api import private_module; "
        "s = private_module('ray', 'ray._private.services', 'resolve_ip_for_localhost', "
        "why='keeping the test cluster on 127.0.0.1'); s.resolve_ip_for_localhost = lambda host: host; "
        "from ray.scripts.scripts import main; sys.argv = ['ray', *sys.argv[1:]]; main()")
NODE = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=2", "--object-store-memory=300000000",
        "--disable-usage-stats"]
BIN = Path(sys.executable).parent
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-machine mode, which leaves 127.0.0.1 alone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth_env(d: Path) -> dict[str, str]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(d / "auth_token")}


def ray_start(d: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ENV}  # single-machine mode refuses to join a cluster
    out = subprocess.run([sys.executable, "-c", SHIM, "start", *args], capture_output=True, text=True, timeout=180,
                         env={**env, **auth_env(d)})
    if out.returncode != 0:
        raise SystemExit(f"ray start {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")


def start_node(d: Path, info: dict) -> None:
    ray_start(d, f"--address={info['ray_address']}", *NODE, f"--temp-dir={d / 'node2'}")


def start(d: Path) -> dict:
    import secrets

    d.mkdir(parents=True, exist_ok=True)
    token = d / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    info = {"dir": str(d), "ray_address": f"127.0.0.1:{free_port()}"}
    (d / "cluster.json").write_text(json.dumps(info))
    try:
        ray_start(d, "--head", f"--port={info['ray_address'].split(':')[1]}", *NODE, "--include-dashboard=false",
                  f"--temp-dir={d / 'head'}")
        start_node(d, info)
    except SystemExit:
        stop(d)
        raise
    mlflow_port = free_port()
    (d / "mlflow").mkdir(exist_ok=True)
    log = open(d / "mlflow" / "server.log", "w")
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{d / 'mlflow' / 'mlflow.db'}",
                               "--serve-artifacts", "--artifacts-destination", str(d / "mlflow" / "artifacts"),
                               "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    info.update(mlflow_uri=f"http://127.0.0.1:{mlflow_port}", mlflow_pid=server.pid)
    (d / "cluster.json").write_text(json.dumps(info))
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{info['mlflow_uri']}/health", timeout=2).read()
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                stop(d)
                raise SystemExit(f"mlflow server did not come up; see {d / 'mlflow' / 'server.log'}")
            time.sleep(0.5)
    return info


def _processes(marker: str):
    """Processes whose command line contains `marker`, with everything they started."""
    import psutil

    found = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and marker in " ".join(p.info["cmdline"] or []):
                for q in [p, *p.children(recursive=True)]:
                    found[q.pid] = q
        except psutil.Error:
            continue
    return list(found.values())


def _kill(procs, sig=signal.SIGKILL) -> None:
    import psutil

    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


def node_id(d: Path) -> str:
    """The Ray node id of the second node (from its raylet's command line)."""
    for p in _processes(str(d / "node2")):
        for arg in p.cmdline():
            if arg.startswith("--node_id="):
                return arg.split("=", 1)[1]
    raise SystemExit(f"no second node running under {d}")


def stop_node(d: Path) -> None:
    _kill(_processes(str(d / "node2")))


def stop(d: Path) -> None:
    info = json.loads((d / "cluster.json").read_text()) if (d / "cluster.json").is_file() else {}
    if info.get("mlflow_pid"):
        try:
            os.killpg(info["mlflow_pid"], signal.SIGTERM)  # its own session: the server and its workers only
        except (ProcessLookupError, PermissionError):
            pass
    procs = _processes(str(d / "node2")) + _processes(str(d / "head"))
    if info.get("ray_address"):  # the head's Ray Client proxy: `ray start` leaves it to init, without DIR in its command line
        procs += _processes(f"--address={info['ray_address']} ")
    _kill(procs, signal.SIGTERM)
    _kill([p for p in procs if p.is_running()])


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "start"
    if cmd == "start":
        d = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="lorasweep-ray-"))
        info = start(d.resolve())
        print(f"LORASWEEP_TEST_RAY_ADDRESS={info['ray_address']}")
        print(f"LORASWEEP_TEST_MLFLOW_URI={info['mlflow_uri']}")
        print(f"LORASWEEP_TEST_CLUSTER_DIR={info['dir']}")
        for k, v in auth_env(d.resolve()).items():
            print(f"{k}={v}")
        return 0
    if len(argv) < 2:
        raise SystemExit(__doc__)
    d = Path(argv[1]).resolve()
    if cmd == "stop":
        stop(d)
    elif cmd == "stop-node":
        stop_node(d)
    elif cmd == "node-id":
        print(node_id(d))
    elif cmd == "start-node":
        start_node(d, json.loads((d / "cluster.json").read_text()))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
