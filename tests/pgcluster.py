"""A private PostgreSQL cluster for fault tests: started, restarted and removed by the test.

Never touch the machine's shared server: a test that stops or restarts PostgreSQL gets a
cluster of its own (``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``, or ``PG_BIN``),
in a temporary directory, on a free loopback port, with trust authentication::

    with PgCluster() as cluster:
        cluster.create_database("chatkit")
        env = {**os.environ, **cluster.env("chatkit")}  # PGHOST, PGPORT, PGUSER, ...
        ...
        cluster.restart()  # pg_ctl restart -m fast; returns once it accepts connections

The directory is removed when the block ends, the server stopped first. PostgreSQL refuses to
run as root; under root the binaries run as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.live_server import free_port

#: Settings for a throwaway cluster: nothing is kept after a crash, so nothing is flushed.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
}


def find_bin_dir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``$PG_BIN``, else the newest Debian install."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("No PostgreSQL binaries (initdb): install postgresql or set PG_BIN.")


class PgCluster:
    """One private cluster: ``start()``, ``restart()``, ``stop()``, ``remove()``.

    Also a context manager (start on enter, stop and remove on exit).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"  # the superuser initdb creates
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.root = Path(tempfile.mkdtemp(prefix="chatkit-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.run_as = _unprivileged_user()
        if self.run_as is not None:
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)
        self._initialised = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        if not self._initialised:
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
            self._initialised = True
        self._pg_ctl("start", "-l", str(self.log), "-o", self._server_options())
        return self

    def restart(self, mode: str = "fast") -> float:
        """``pg_ctl restart -m <mode>``; returns once the server accepts connections again.

        Returns the seconds it took (the outage, as seen from outside).
        """
        started = time.monotonic()
        self._pg_ctl("restart", "-m", mode, "-l", str(self.log), "-o", self._server_options())
        return time.monotonic() - started

    def stop(self, mode: str = "fast") -> None:
        if self._initialised and (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", mode)

    def remove(self) -> None:
        """Stop the server (immediately) and delete the directory."""
        try:
            if self._initialised and (self.data / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.remove()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    # -- connecting --------------------------------------------------------------

    @property
    def dsn(self) -> dict[str, str]:
        """Connection settings as Django's ``DATABASES`` keys take them (what
        ``benchmarks/scale.py`` uses)."""
        return {"HOST": self.host, "PORT": str(self.port), "USER": self.user}

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection (autocommit) to ``dbname``."""
        import psycopg

        return psycopg.connect(self.conninfo(dbname), autocommit=True, **kwargs)

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def env(self, dbname: str) -> dict[str, str]:
        """libpq's environment variables for ``dbname`` on this cluster."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": dbname,
        }

    def settings_dict(self, dbname: str, **options: Any) -> dict[str, Any]:
        """A Django ``DATABASES`` entry for ``dbname``; ``options`` go to ``OPTIONS``."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": dbname,
            "USER": self.user,
            "HOST": self.host,
            "PORT": str(self.port),
            "OPTIONS": options,
        }

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- internals ---------------------------------------------------------------

    def _server_options(self) -> str:
        options = {
            "port": str(self.port),
            "listen_addresses": self.host,
            # The socket in our own directory: the shared server's is not ours to touch.
            "unix_socket_directories": str(self.root),
            **self.settings,
        }
        return " ".join(f"-c {key}={value}" for key, value in options.items())

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", *args)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.run_as is not None:
            user = self.run_as
            setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}"]
            command = [*setpriv, "--clear-groups", *command]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n{self.server_log()}"
            )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("Running as root, and there is no 'postgres' user to run PostgreSQL as.")
