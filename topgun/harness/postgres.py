"""A throwaway PostgreSQL server for tests: Debian's packages, a temp dir, a free port.

:meth:`PostgresServer.start` runs ``initdb`` into a new temp dir and ``pg_ctl start`` on a
port found free on 127.0.0.1, with its socket in that dir; :meth:`PostgresServer.stop` stops
it and removes the dir. PostgreSQL refuses to run as root, so a root process runs both as the
``postgres`` system user the Debian package creates (``TOPGUN_PG_USER`` names another) and
hands the dir to that user. TCP logins need the password the server was made with
(scram-sha-256), so the DSN a test hands a node carries one, as an operator's would.

Where PostgreSQL is missing, :func:`unavailable_reason` says why (and
:meth:`PostgresServer.start` raises :class:`PostgresUnavailable` with it) so a test can be
skipped with that reason; a PostgreSQL that is installed but fails to start is an error.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from topgun.harness.ports import free_port

HOST = "127.0.0.1"
SUPERUSER = "topgun"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
PORT_TRIES = 3
"""A port found free may be taken before the server binds it: try another this many times."""
INSTALL_HINT = "apt-get install -y postgresql"


class PostgresUnavailable(Exception):
    """PostgreSQL cannot run here (not installed, or no user to run it as)."""


class PostgresError(RuntimeError):
    """An installed PostgreSQL failed to initialise, start or stop; the message has its log."""


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``TOPGUN_PG_BINDIR`` when set (only there), else
    the newest Debian ``/usr/lib/postgresql/N/bin`` (Debian keeps them off ``PATH``), then
    ``PATH``."""
    chosen = os.environ.get("TOPGUN_PG_BINDIR")
    if chosen is not None:
        candidates = [chosen]
    else:
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates = [str(p) for p in sorted(versions, key=_version, reverse=True)]
        on_path = shutil.which("initdb")
        candidates.append(str(Path(on_path).resolve().parent) if on_path else "")
    for c in candidates:
        if c and all(os.access(Path(c) / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(c)
    return None


def _version(bin_path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bin_path.parent.name))


def _run_as() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as: None when this process is not root (it runs as us)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("TOPGUN_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no {name!r} user to run PostgreSQL as (it refuses "
            f"root; {INSTALL_HINT} creates 'postgres', or set TOPGUN_PG_USER)"
        ) from None


def unavailable_reason() -> str | None:
    """Why no PostgreSQL can be started here, or None when one can."""
    if bin_dir() is None:
        where = os.environ.get("TOPGUN_PG_BINDIR") or "/usr/lib/postgresql/*/bin or PATH"
        return f"PostgreSQL is not installed (no initdb and pg_ctl in {where}; {INSTALL_HINT})"
    try:
        _run_as()
    except PostgresUnavailable as exc:
        return str(exc)
    return None


class PostgresServer:
    """One running PostgreSQL: :attr:`dsn` reaches its ``postgres`` database over TCP."""

    def __init__(self, bindir: Path, root: Path, user: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log_path = root / "server.log"
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.running = False

    @classmethod
    def start(cls) -> PostgresServer:
        """Initialise and start a server; raises :class:`PostgresUnavailable` where none can
        run, :class:`PostgresError` when one fails to start (its temp dir is removed)."""
        reason = unavailable_reason()
        bindir = bin_dir()
        if reason is not None or bindir is None:
            raise PostgresUnavailable(reason)
        server = cls(bindir, Path(tempfile.mkdtemp(prefix="topgun-pg-")), _run_as())
        try:
            server._init()
            server._start()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def dsn(self) -> str:
        return self.dsn_of("postgres")

    def dsn_of(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@{HOST}:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """The DSN of a new empty database (``prefix`` + a random suffix), so a test or a
        scenario starts from nothing on a server others share."""
        import psycopg
        from psycopg import sql

        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_of(name)

    def _init(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self.user is not None:
            for path in (self.root, self.socket_dir, pwfile):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self._tool(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()

    def _start(self) -> None:
        for attempt in range(PORT_TRIES):
            self.port = free_port()
            options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses={HOST}"
            try:
                self._tool(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w",
                    "-t", str(START_TIMEOUT_S), "-o", options, "start",
                )  # fmt: skip
            except PostgresError:
                if attempt == PORT_TRIES - 1 or "Address already in use" not in self.log():
                    raise
                continue
            self.running = True
            return

    def stop(self) -> None:
        """Stop the server (fast shutdown, then immediate) and remove its temp dir."""
        try:
            if self.running:
                try:
                    self._pg_ctl_stop("fast")
                except PostgresError:
                    self._pg_ctl_stop("immediate")
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl_stop(self, mode: str) -> None:
        self._tool(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S), "stop"
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _tool(self, name: str, *args: str) -> None:
        user = None if self.user is None else self.user.pw_uid
        group = None if self.user is None else self.user.pw_gid
        try:
            done = subprocess.run(
                [str(self.bindir / name), *args], capture_output=True, text=True,
                timeout=START_TIMEOUT_S + 10, check=False, stdin=subprocess.DEVNULL,
                user=user, group=group, extra_groups=[] if user is not None else None,
                cwd=self.root,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"{name} did not finish: {exc}\n{self.log()[-2000:]}") from None
        if done.returncode != 0:
            raise PostgresError(
                f"{name} {' '.join(args[-1:])} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}\n{self.log()[-2000:]}"
            )

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
