"""A real MySQL server for the tests: Debian's MariaDB on a free loopback port, with a
throw-away data folder and one user with a password, as a team's shared ML Metadata store.

`.ci/run` installs the `mariadb-server` package when it is missing; without it the
fixture fails naming the package. The server runs in its own session and is stopped
whatever happens to the tests.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, stop, wait_for_port

USER = "ctdenoise"
PASSWORD = "s3cret-Pa55word-of-the-tests"
"""Distinctive enough that finding it anywhere (logs, ML Metadata, summaries) is a leak."""
_SEARCH = ("/usr/sbin", "/usr/bin")


@dataclass(frozen=True)
class MySQLServer:
    port: int
    socket: Path

    def address(self, database: str) -> str:
        """`--mlmd-mysql` for a database on this server."""
        return f"127.0.0.1:{self.port}/{database}"

    def dump(self, database: str) -> str:
        """Every row of `database`, as SQL text (mariadb-dump)."""
        return subprocess.run(
            [_tool("mariadb-dump"), "--no-defaults", f"--socket={self.socket}", "-uroot", "--skip-comments", database],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def databases(self) -> set[str]:
        listed = subprocess.run(
            [_tool("mariadb"), "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-e", "SHOW DATABASES"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return set(listed.split())


def _tool(name: str) -> str:
    found = shutil.which(name, path=":".join(_SEARCH))
    if found is None:
        raise RuntimeError(
            f"{name} not found: install Debian's mariadb-server (apt-get install mariadb-server; .ci/run does this)"
        )
    return found


def start_mysql_server() -> Iterator[MySQLServer]:
    """A generator for a pytest fixture: a fresh server with USER/PASSWORD allowed every
    database from the loopback, then (on teardown, also after failures) the server stopped
    and its data removed."""
    folder = Path(tempfile.mkdtemp(prefix="ctdenoise-mariadb-"))
    data, sock, port = folder / "data", folder / "server.sock", free_port()
    user = getpass.getuser()  # mariadbd refuses to run as root unless told to
    log = open(folder / "server.log", "w+b")  # noqa: SIM115  (the server's lifetime; closed when it stops)
    subprocess.run(
        [
            _tool("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={data}",
            f"--user={user}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        check=True,
    )
    server = subprocess.Popen(
        [
            _tool("mariadbd"),
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--user={user}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            f"--pid-file={folder / 'server.pid'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(server, port, log, "mariadbd")
        _sql(
            sock,
            f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
            f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1';",
        )
        yield MySQLServer(port, sock)
    finally:
        stop(server)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _sql(sock: Path, statements: str) -> None:
    subprocess.run(
        [_tool("mariadb"), "--no-defaults", f"--socket={sock}", "-uroot", "-e", statements],
        capture_output=True,
        text=True,
        check=True,
    )
