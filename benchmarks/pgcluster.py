"""A private PostgreSQL cluster for the scale harness: initdb + pg_ctl under a temp dir.

Never the machine's shared server: ``--restart-db`` restarts this one. The interface is
four names (``start``, ``stop``, ``restart``, ``dsn``) so that it can be swapped for the
tests' cluster helper later. Run as root (a container), initdb and the server run as the
``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise RuntimeError("pg_ctl not found: install PostgreSQL's server binaries")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """One throw-away cluster on a free loopback port, trust auth, user ``postgres``."""

    def __init__(self, max_connections: int = 300) -> None:
        self.max_connections = max_connections
        self.port = _free_port()
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="chatkit-pg-"))
        self.datadir = self.root / "data"
        self.log = self.root / "server.log"
        self.started = False

    @property
    def dsn(self) -> dict[str, str]:
        """Connection settings, as Django's ``DATABASES`` keys take them."""
        return {"HOST": "127.0.0.1", "PORT": str(self.port), "USER": "postgres"}

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            f"-c max_connections={self.max_connections} -c fsync=off"
        )
        self._run("pg_ctl", action, "-D", str(self.datadir), "-l", str(self.log), "-w",
                  "-o", options, *extra)  # fmt: skip

    def start(self) -> PrivateCluster:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        self._pg_ctl("start")
        self.started = True
        return self

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server is back in ~0.3 s."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        try:
            if self.started:
                self._pg_ctl("stop", "-m", "immediate")
        finally:
            self.started = False
            shutil.rmtree(self.root, ignore_errors=True)
