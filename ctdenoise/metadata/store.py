"""Where a run root's ML Metadata lives: its own SQLite file, or a MySQL database that a team
shares (Kubeflow's store is MySQL), and the pipeline name that keeps run roots apart in it.

In a root's own SQLite file the pipeline is called `names.PIPELINE_NAME`. In a shared
database every run root is a pipeline of its own, named after the machine and the root's
resolved path, so that its runs, its cache, its abandoned executions and its "latest" model
are its own (docs/design.md, "A shared ML Metadata store (`--mlmd-mysql`)"). The password is never part of a name,
a message or a repr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
from pathlib import Path

from ctdenoise.metadata import names

PASSWORD_VARIABLE = "CTDENOISE_MLMD_PASSWORD"
"""The environment variable the MySQL password is read from (never a command-line option)."""
DEFAULT_DATABASE = "metadb"


@dataclasses.dataclass(frozen=True)
class StoreAddress:
    """A MySQL ML Metadata database, HOST:PORT/DATABASE, or None for the run root's SQLite file."""

    mysql: str | None = None
    user: str = "root"
    password: str = dataclasses.field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.mysql is not None:
            self.host_port_database()  # refuse a malformed address before anything runs

    @property
    def shared(self) -> bool:
        return self.mysql is not None

    def host_port_database(self) -> tuple[str, int, str]:
        address, _, database = (self.mysql or "").partition("/")
        if "@" in address:  # user:password@host: the password would be on the command line and in messages
            raise ValueError(
                f"--mlmd-mysql wants HOST:PORT/DATABASE without a user or password: give the user "
                f"with --mlmd-user and the password in ${PASSWORD_VARIABLE}"
            )
        host, port = host_port(address, "--mlmd-mysql")
        return host, port, database or DEFAULT_DATABASE

    def connection_config(self, run_root: Path, read_only: bool = False):
        """ML Metadata's ConnectionConfig. Read-only: a SQLite file opened read-only, and a
        MySQL database that is never created (a mistyped name on a read command must not add
        a database to a team's server). ML Metadata is imported here, so that commands which
        never open a store start fast."""
        from ml_metadata.proto import metadata_store_pb2

        config = metadata_store_pb2.ConnectionConfig()
        if self.shared:
            host, port, database = self.host_port_database()
            config.mysql.host, config.mysql.port, config.mysql.database = host, port, database
            config.mysql.user, config.mysql.password = self.user, self.password
            config.mysql.skip_db_creation = read_only
        else:
            config.sqlite.filename_uri = str(names.metadata_path(run_root))
            if read_only:
                config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
            else:
                config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return config

    def pipeline_name(self, run_root: Path) -> str:
        """The TFX pipeline name of `run_root`'s runs in this store: in a shared one, the
        root's folder name and a hash of the machine's name and the root's resolved path
        (two machines' /app/runs are two roots: each machine has its own lock)."""
        if not self.shared:
            return names.PIPELINE_NAME
        resolved = str(Path(run_root).resolve())
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(resolved).name).strip("-")[:40] or "root"
        digest = hashlib.sha256(f"{socket.gethostname()}:{resolved}".encode()).hexdigest()[:8]
        return f"{names.PIPELINE_NAME}-{slug}-{digest}"

    def describe(self, run_root: Path) -> str:
        """What a message names: the database (user, no password) or the SQLite file."""
        if self.shared:
            host, port, database = self.host_port_database()
            return f"MySQL {self.user}@{host}:{port}/{database}"
        return str(names.metadata_path(run_root))


def host_port(address: str, option: str) -> tuple[str, int]:
    """HOST:PORT as (host, port); a one-line ValueError naming the option otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{option} wants HOST:PORT, got {address!r}")
    return host, int(port)
