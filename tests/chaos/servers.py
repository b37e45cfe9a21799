"""Private servers for the scenarios that restart one: a redis-server and a PostgreSQL
cluster on free loopback ports, in temp dirs, from the machine's binaries."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence


class MissingBinary(RuntimeError):
    """The server binary is not installed (CI treats this as a failure, not a skip)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port at most 55535 whose +10000 (the cluster bus port) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class PrivateRedis:
    """With AOF (``appendfsync everysec``) a graceful restart keeps every job; with
    ``persist=False`` (no RDB, no AOF) a restart comes back empty."""

    def __init__(self, persist: bool = True, extra: Sequence[str] = ()) -> None:
        self.persist = persist
        self.extra = list(extra)  # more redis-server options
        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingBinary("redis-server not found: install the Redis server binary")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="wh-chaos-redis-")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False  # once: later starts are restarts on the same port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until *it* answers. A free port can be taken by
        another test's server between ``free_port()`` and the bind (the chaos suites of
        several runs share the machine): then this one exits, and the answer to a PING
        would come from the other; on a first start a new port is tried instead."""
        for _ in range(5):
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes" if self.persist else "no", "--appendfsync", "everysec",
                 "--daemonize", "no", "--dir", self.dir, *self.extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._info("server").get("process_id") == str(self.proc.pid):
                    self.started = True
                    return
                time.sleep(0.05)
            self.stop()
            if self.started:
                break  # a restart keeps its port: the proxy and the URLs point at it
            # A cluster node's bus port (+10000) must be free and in range too.
            self.port = free_cluster_port() if "--cluster-enabled" in self.extra else free_port()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def _info(self, section: str) -> dict[str, str]:
        """``INFO section`` as a dict; empty if nothing answers on the port."""
        data = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(f"INFO {section}\r\n".encode())
                while not data.endswith(b"\r\n\r\n"):  # a bulk reply ends in an empty line
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return {}
        pairs = (ln.split(":", 1) for ln in data.decode(errors="replace").splitlines())
        return {p[0]: p[1] for p in pairs if len(p) == 2}

    def clients(self) -> int:
        """Connected clients, as the server counts them (this call's own included)."""
        found = self._info("clients").get("connected_clients")
        if found is None:
            raise RuntimeError(f"redis-server on port {self.port} does not answer INFO")
        return int(found)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: redis writes its AOF and exits
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedisCluster:
    """Three redis-server primaries with --cluster-enabled, no persistence, joined by
    ``redis-cli --cluster create`` (no replicas); the slots split in three ranges."""

    def __init__(self, size: int = 3) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise MissingBinary("redis-cli not found: install the Redis tools")
        self.cli = cli
        self.nodes = [
            PrivateRedis(persist=False, extra=["--cluster-enabled", "yes",
                                               "--cluster-config-file", "nodes.conf"])
            for _ in range(size)
        ]  # fmt: skip
        for node in self.nodes:
            node.port = free_cluster_port()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        proc = subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {proc.stdout}{proc.stderr}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [self.cli, "-p", str(n.port), "cluster", "info"],
                    capture_output=True, text=True, timeout=10, check=False,
                ).stdout
                for n in self.nodes
            ]  # fmt: skip
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        raise RuntimeError("the private Redis Cluster did not reach cluster_state:ok")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PrivatePostgres:
    """initdb in a temp dir, fsync=off; as root through ``runuser -u postgres``."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise MissingBinary("initdb/pg_ctl not found: install the PostgreSQL server")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.dir = tempfile.mkdtemp(prefix="wh-chaos-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                pg_user = pwd.getpwnam("postgres")
            except KeyError:
                raise MissingBinary("running as root with no postgres user for initdb") from None
            if runuser is None:
                raise MissingBinary("running as root without runuser for initdb")
            os.chown(self.dir, pg_user.pw_uid, pg_user.pw_gid)
            self._as = [runuser, "-u", "postgres", "--"]
        self._inited = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                log = f.read()[-2000:]
            raise RuntimeError(f"{args[0]} failed: {proc.stderr or proc.stdout}\n{log}")

    def _ctl(self, action: str) -> None:
        opts = (
            f"-c fsync=off -c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
            "-c max_connections=200"
        )
        extra = ["-m", "fast"] if action in ("stop", "restart") else []
        self._run(self.pg_ctl, "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                  "-o", opts, *extra, action)  # fmt: skip

    def start(self) -> None:
        if not self._inited:
            self._run(self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
            open(os.path.join(self.dir, "log"), "a").close()
            if self._as:
                shutil.chown(os.path.join(self.dir, "log"), "postgres")
            self._inited = True
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        self._ctl("stop")

    def cleanup(self) -> None:
        if self._inited:
            with contextlib.suppress(Exception):
                self._ctl("stop")
        shutil.rmtree(self.dir, ignore_errors=True)
