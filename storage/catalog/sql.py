"""One thin SQL layer over stdlib ``sqlite3`` and ``psycopg`` 3.

What a caller may rely on:

- ``open_database(url)`` accepts ``sqlite:///abs/path.sqlite3`` (also the
  four-slash spelling ``sqlite:////abs/path``; the path is always absolute, its parent
  folder is created) and ``postgresql://...`` / ``postgres://...`` (any libpq URI).
  Any other scheme raises :class:`~callvault.errors.ConfigError`; a database that
  cannot be opened raises :class:`~storage.errors.CatalogError`. The URL's password
  never appears in an error message.
- SQL is written once, with ``?`` placeholders; the PostgreSQL backend translates
  them to ``%s`` (a ``?`` inside quotes stays; a literal ``%`` is doubled). Both
  dialects understand ``INSERT ... ON CONFLICT`` and ``RETURNING``; the few remaining
  differences live in :class:`Dialect` (DDL type names, row locking, substring test).
- Portable value conventions (used by the catalog and the audit log): timestamps are
  stored as fixed-width ISO-8601 UTC text, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
  (:func:`to_db_time` / :func:`from_db_time`), so text order is time order and the
  value round-trips to the microsecond on both databases; bytes are ``BLOB`` /
  ``bytea``; booleans are integers 0/1.
- Connections: one connection per thread, opened lazily and closed by
  :meth:`Database.close`. The object may therefore be shared by the asyncio thread
  and any number of worker threads (a faust worker calling the catalog from a thread
  pool). Calls block; call them from an executor when on the event loop.
- :meth:`Database.transaction` yields a :class:`Transaction`. On SQLite it starts with
  ``BEGIN IMMEDIATE`` so writers serialize across threads and processes; on
  PostgreSQL it is an ordinary READ COMMITTED transaction. A nested ``transaction()``
  in the same thread joins the outer one. Callbacks registered with
  :meth:`Transaction.on_commit` run after the outermost commit, never on rollback.
- The SQLite file (and with it its ``-wal`` / ``-shm`` files) is created ``0600``;
  a missing folder ``0700``.
- Every PostgreSQL connection is bounded (:class:`SqlTimeouts`, settings
  ``CALLVAULT_SQL_*``): ``statement_timeout``, ``lock_timeout``,
  ``idle_in_transaction_session_timeout``, a connect timeout, TCP keepalives on both
  ends and ``tcp_user_timeout``; a statement that hits one raises
  :class:`~storage.errors.CatalogUnavailable` (retried), never waits for minutes.
- SQLite runs in WAL mode with foreign keys on, a 30 s busy timeout and
  ``synchronous=FULL`` (each commit is durable on disk; the audit log relies on it).
  ``?synchronous=normal`` in the URL trades that for speed.
- Every sqlite3 / psycopg error is raised as :class:`~storage.errors.CatalogError`
  (``from`` the driver error); no caller ever sees a driver exception. Errors that say
  the database cannot be used now (unreachable, closed, locked, busy, disk full or I/O
  error, lost connection, timeouts, serialization failures) are
  :class:`~storage.errors.CatalogUnavailable`: worth retrying.
"""

from __future__ import annotations

import os
import re
import select
import sqlite3
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from callvault.errors import ConfigError
from storage._files import fsync_dir, make_private_dirs
from storage.errors import CatalogError, CatalogUnavailable

__all__ = [
    "MAX_CURSOR_CHARS",
    "Database",
    "Dialect",
    "PostgresDatabase",
    "Row",
    "SqlTimeouts",
    "SqliteDatabase",
    "Transaction",
    "from_db_time",
    "open_database",
    "redact_url",
    "to_db_time",
]

Row = tuple[Any, ...]
Params = Sequence[Any]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_BUSY_TIMEOUT_S = 30.0
_SHORT_YEAR = re.compile(r"[0-9]{1,3}-[0-9]{2}-[0-9]{2}T")


#: The longest listing cursor taken (those the catalog hands out have about 100 characters):
#: a longer one is refused before it is decoded.
MAX_CURSOR_CHARS = 1024


def to_db_time(value: datetime) -> str:
    """Render an aware datetime as the stored text form (UTC, microseconds, ``Z``).

    Raises:
        CatalogError: ``value`` is naive (no time zone).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise CatalogError(f"naive datetime {value.isoformat()} given; use an aware UTC datetime")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise CatalogError(f"datetime {value.isoformat()} cannot be moved to UTC") from None
    # Not strftime("%Y"): glibc does not zero-pad years below 1000, which would break
    # the fixed width (and with it text order = time order and from_db_time).
    return f"{utc.year:04d}-" + utc.strftime(_TIME_FORMAT[3:])


def from_db_time(text: str) -> datetime:
    """Parse the stored text form back into an aware UTC datetime.

    Raises:
        CatalogError: the text is not in the stored form.
    """
    # The stored form is fixed-width "YYYY-MM-DDTHH:MM:SS.ffffffZ": fromisoformat is
    # ~20x faster than strptime (hot in listings and the retention sweep); anything
    # else is refused, as strptime would.
    if isinstance(text, str) and 24 <= len(text) < 27 and _SHORT_YEAR.match(text):
        text = text.zfill(27)  # written by strftime("%Y") before years were zero-padded
    if not isinstance(text, str) or len(text) != 27 or text[10] != "T" or text[-1] != "Z":
        raise CatalogError(f"malformed timestamp in the catalog: {text!r}")
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise CatalogError(f"malformed timestamp in the catalog: {text!r}") from exc


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True)
class Dialect:
    """The few places where SQLite and PostgreSQL differ."""

    name: str  # "sqlite" | "postgresql"
    bytes_type: str  # column type for raw bytes
    begin: str  # statement that opens a write transaction
    for_update: str  # suffix that row-locks a SELECT ("" where the transaction already does)
    substring_test: str  # "{column} contains the ? parameter", exactly and case-sensitively

    def contains(self, column: str) -> str:
        """SQL that is true when ``column`` contains the next ``?`` parameter verbatim."""
        return self.substring_test.format(column=column)

    def ddl(self, statement: str) -> str:
        """Fill the ``{bytes}`` type token of a migration statement."""
        return statement.replace("{bytes}", self.bytes_type)


SQLITE = Dialect(
    name="sqlite",
    bytes_type="BLOB",
    begin="BEGIN IMMEDIATE",
    for_update="",
    substring_test="instr({column}, ?) > 0",
)
POSTGRESQL = Dialect(
    name="postgresql",
    bytes_type="BYTEA",
    begin="BEGIN",
    for_update=" FOR UPDATE",
    substring_test="strpos({column}, ?) > 0",
)


class Transaction:
    """One open transaction on one thread's connection.

    Obtained from :meth:`Database.transaction`; valid only inside that ``with`` block
    and on the thread that opened it.
    """

    def __init__(self, database: Database, connection: Any) -> None:
        self._database = database
        self._connection = connection
        self._on_commit: list[Callable[[], None]] = []
        self.failed = False  # a statement failed: the transaction can only roll back

    @property
    def dialect(self) -> Dialect:
        """The database's dialect."""
        return self._database.dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the affected row count (-1 when unknown).

        Raises:
            CatalogError: the database rejected the statement.
        """
        count: int = self._guard(self._database._execute, sql, params)
        return count

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement for each parameter row (batched by the driver).

        Raises:
            CatalogError: the database rejected a row.
        """
        rows = list(rows)
        if rows:
            self._guard(self._database._executemany, sql, rows)

    def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query and return every row.

        Raises:
            CatalogError: the query failed.
        """
        result: list[Row] = self._guard(self._database._fetch_all, sql, params)
        return result

    def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """Run a query and return its first row, or ``None``.

        Raises:
            CatalogError: the query failed.
        """
        rows = self.fetch_all(sql, params)
        return rows[0] if rows else None

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after the outermost transaction commits (dropped on rollback)."""
        self._on_commit.append(callback)

    def _guard(self, operation: Callable[[Any, str, Any], Any], sql: str, params: Any) -> Any:
        if self.failed:
            raise CatalogError("an earlier statement of this transaction failed; roll it back")
        try:
            return operation(self._connection, sql, params)
        except CatalogError:
            self.failed = True
            raise


@dataclass
class _ThreadState:
    connection: Any
    transaction: Transaction | None = None
    depth: int = 0
    thread: threading.Thread = field(default_factory=threading.current_thread)


class Database(ABC):
    """A catalog database: per-thread connections, transactions, translated errors."""

    dialect: Dialect

    def __init__(self, url: str) -> None:
        self.url = redact_url(url)
        self._lock = threading.Lock()
        self._states: dict[int, _ThreadState] = {}
        self._closed = False

    # -- public -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Open (or join) this thread's write transaction; commit on success.

        Raises:
            CatalogError: the transaction could not begin or commit (it is rolled back).
        """
        state = self._state()
        if state.transaction is not None:
            state.depth += 1
            try:
                yield state.transaction
            finally:
                state.depth -= 1
            return
        connection = state.connection
        self._execute(connection, self.dialect.begin, ())
        tx = Transaction(self, connection)
        state.transaction, state.depth = tx, 1
        try:
            yield tx
        except BaseException:
            state.transaction, state.depth = None, 0
            self._rollback(connection)
            raise
        state.transaction, state.depth = None, 0
        if tx.failed:
            # A caller swallowed a failed statement; committing would silently drop work.
            self._rollback(connection)
            raise CatalogError("transaction rolled back: one of its statements failed")
        try:
            self._execute(connection, "COMMIT", ())
        except CatalogError:
            self._rollback(connection)
            raise
        for callback in tx._on_commit:
            callback()

    def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one read query (joins this thread's open transaction, if any).

        Raises:
            CatalogError: the query failed.
        """
        state = self._state()
        return self._fetch_all(state.connection, sql, params)

    def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """Like :meth:`fetch_all`, first row only (``None`` when there is none).

        Raises:
            CatalogError: the query failed.
        """
        rows = self.fetch_all(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        """Close every thread's connection. Further use raises :class:`CatalogError`."""
        with self._lock:
            self._closed = True
            states, self._states = list(self._states.values()), {}
        for state in states:
            self._close_connection(state.connection)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- connection per thread ----------------------------------------------------------

    def _state(self) -> _ThreadState:
        ident = threading.get_ident()
        current = threading.current_thread()
        state = self._states.get(ident)
        if state is not None and state.thread is current:
            if state.transaction is not None or self._is_usable(state.connection):
                return state
            self._close_connection(state.connection)  # lost (e.g. server restart): reconnect
            state.connection = self._connect()
            return state
        with self._lock:
            if self._closed:
                raise CatalogUnavailable(f"catalog database {self.url} is closed")
            # Threads of a finished pool leave their connection behind: reclaim them,
            # including one whose thread id the OS has just recycled for this thread.
            dead = [
                key for key, st in self._states.items() if key == ident or not st.thread.is_alive()
            ]
            stale = [self._states.pop(key).connection for key in dead]
        for connection in stale:
            self._close_connection(connection)
        state = _ThreadState(connection=self._connect())
        with self._lock:
            if self._closed:
                self._close_connection(state.connection)
                raise CatalogUnavailable(f"catalog database {self.url} is closed")
            self._states[ident] = state
        return state

    # -- driver specifics ---------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _close_connection(self, connection: Any) -> None: ...

    def _is_usable(self, connection: Any) -> bool:
        return True

    @abstractmethod
    def _execute(self, connection: Any, sql: str, params: Params) -> int: ...

    @abstractmethod
    def _executemany(self, connection: Any, sql: str, rows: list[Params]) -> None: ...

    @abstractmethod
    def _fetch_all(self, connection: Any, sql: str, params: Params) -> list[Row]: ...

    def _rollback(self, connection: Any) -> None:
        # The original error matters more than a failed rollback.
        with suppress(CatalogError):
            self._execute(connection, "ROLLBACK", ())


#: SQLite primary result codes that say the database cannot be used now, not that the
#: statement is wrong: BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN,
#: PROTOCOL, NOTADB.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})


def _sqlite_error(message: str, exc: Exception) -> CatalogError:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _SQLITE_UNAVAILABLE:
        return CatalogUnavailable(message)
    return CatalogError(message)


def _postgres_error(message: str, exc: Exception) -> CatalogError:
    import psycopg

    # OperationalError: connection lost, server shutting down, timeouts, serialization
    # failures and deadlocks; InterfaceError: the connection is unusable.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return CatalogUnavailable(message)
    # The server ended the session (idle-in-transaction or transaction timeout, admin
    # shutdown, crash), the connection broke, or resources ran out (disk full, too many
    # connections): whatever the driver's class, the work is worth retrying.
    state = str(getattr(exc, "sqlstate", "") or "")
    if state in ("25P03", "25P04") or state.startswith(("08", "53", "57P")):
        return CatalogUnavailable(message)
    return CatalogError(message)


def _sql_excerpt(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _private_database_file(path: Path) -> None:
    """Create the database file 0600 in a 0700 folder before SQLite does (it would use
    the umask, typically 0644), and tighten an existing one we own. SQLite creates the
    ``-wal`` and ``-shm`` files with the database file's mode."""
    if not path.parent.exists():
        # the new folders' entries made durable now: SQLite syncs the folder it
        # creates its WAL in, never the folders above it
        for parent in reversed(make_private_dirs(path.parent)):
            fsync_dir(parent)
    if not path.parent.is_dir():
        raise NotADirectoryError(f"{path.parent} is not a folder")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(FileNotFoundError, PermissionError):
            if stat.S_IMODE(file.stat().st_mode) & 0o077 and file.stat().st_uid == os.geteuid():
                os.chmod(file, 0o600)


class SqliteDatabase(Database):
    """SQLite file in WAL mode (the embedded default)."""

    dialect = SQLITE

    def __init__(self, url: str, path: Path, *, synchronous: str = "FULL") -> None:
        super().__init__(url)
        self.path = path
        self._synchronous = synchronous
        try:
            _private_database_file(path)
        except NotADirectoryError as exc:
            raise CatalogError(f"cannot create the folder for {path}: {exc}") from exc
        except OSError as exc:
            raise CatalogUnavailable(f"cannot create the catalog file {path}: {exc}") from exc
        self._close_connection(self._connect())  # fail now, not at first use

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # close() may run on another thread
            )
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self._synchronous}")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise CatalogUnavailable(f"cannot open SQLite catalog {self.path}: {exc}") from exc
        return connection

    def _close_connection(self, connection: Any) -> None:
        with suppress(sqlite3.Error):
            connection.close()

    def _execute(self, connection: Any, sql: str, params: Params) -> int:
        try:
            cursor = connection.execute(sql, tuple(params))
            count = int(cursor.rowcount)
            cursor.close()
            return count
        except sqlite3.Error as exc:
            raise _sqlite_error(f"SQLite failed on {_sql_excerpt(sql)!r}: {exc}", exc) from exc

    def _executemany(self, connection: Any, sql: str, rows: list[Params]) -> None:
        try:
            connection.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _sqlite_error(f"SQLite failed on {_sql_excerpt(sql)!r}: {exc}", exc) from exc

    def _fetch_all(self, connection: Any, sql: str, params: Params) -> list[Row]:
        try:
            cursor = connection.execute(sql, tuple(params))
            rows = cursor.fetchall()
            cursor.close()
            return [tuple(row) for row in rows]
        except sqlite3.Error as exc:
            raise _sqlite_error(f"SQLite failed on {_sql_excerpt(sql)!r}: {exc}", exc) from exc


_PLACEHOLDER_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?|%")


def _to_pyformat(sql: str) -> str:
    """``?`` -> ``%s`` outside quoted text and comments; every ``%`` -> ``%%``."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        # psycopg reads every % as a placeholder, even inside quotes: always double it.
        return token.replace("%", "%%")

    return _PLACEHOLDER_TOKENS.sub(replace, sql)


@dataclass(frozen=True)
class SqlTimeouts:
    """Bounds on every PostgreSQL connection (seconds; 0 turns one off).

    - ``statement``: ``statement_timeout``, the longest one statement may run.
    - ``lock``: ``lock_timeout``, the longest a statement waits for a row or table lock
      (a lock held by an orphaned session fails the waiter, retried, instead of
      stalling it for minutes).
    - ``idle_in_transaction``: ``idle_in_transaction_session_timeout``: the server ends
      a session idle inside a transaction that long, releasing its locks.
    - ``connect``: how long a connection attempt may take.
    - ``keepalive``: TCP keepalives on both ends (idle ``keepalive`` s, then every
      ``keepalive / 2`` s, 3 probes) and the client's ``tcp_user_timeout`` (a dead
      network fails a query in about ``keepalive * 2`` s instead of the kernel's ~15 min).
    """

    statement: float = 60.0
    lock: float = 10.0
    idle_in_transaction: float = 60.0
    connect: float = 5.0
    keepalive: float = 10.0

    def server_options(self) -> str:
        """The ``-c name=value`` options sent at connection start."""
        interval = max(1, int(self.keepalive / 2))
        settings = {
            "statement_timeout": f"{int(self.statement * 1000)}",
            "lock_timeout": f"{int(self.lock * 1000)}",
            "idle_in_transaction_session_timeout": f"{int(self.idle_in_transaction * 1000)}",
            "tcp_keepalives_idle": f"{max(1, int(self.keepalive))}",
            "tcp_keepalives_interval": f"{interval}",
            "tcp_keepalives_count": "3",
        }
        return " ".join(f"-c {name}={value}" for name, value in settings.items())

    def client_options(self) -> dict[str, Any]:
        """libpq keyword options of the client's side."""
        return {
            "connect_timeout": max(1, int(self.connect)),
            "keepalives": 1,
            "keepalives_idle": max(1, int(self.keepalive)),
            "keepalives_interval": max(1, int(self.keepalive / 2)),
            "keepalives_count": 3,
            "tcp_user_timeout": int(self.keepalive * 2 * 1000),
        }


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3 (production), every connection bounded by
    :class:`SqlTimeouts`."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, timeouts: SqlTimeouts | None = None) -> None:
        super().__init__(url)
        self._conninfo = url
        self.timeouts = timeouts or SqlTimeouts()
        self._connect_options = self._options()
        self._translated: dict[str, str] = {}
        self._close_connection(self._connect())  # fail now, not at first use

    def _sql(self, sql: str) -> str:
        translated = self._translated.get(sql)
        if translated is None:
            translated = self._translated[sql] = _to_pyformat(sql)
        return translated

    def _options(self) -> dict[str, Any]:
        """The client options, and the URL's own ``options`` followed by the timeouts."""
        from psycopg.conninfo import conninfo_to_dict

        try:
            given = conninfo_to_dict(self._conninfo)
        except Exception as exc:  # psycopg.ProgrammingError: a malformed URL
            raise ConfigError(f"catalog URL {self.url!r} is malformed: {exc}") from None
        options = " ".join(
            part
            for part in (str(given.get("options") or ""), self.timeouts.server_options())
            if part
        )
        return {**self.timeouts.client_options(), "options": options}

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self._conninfo, autocommit=True, **self._connect_options)
        except psycopg.Error as exc:
            message = str(exc).replace(self._conninfo, self.url).strip()
            raise CatalogUnavailable(
                f"cannot connect to PostgreSQL catalog {self.url}: {message}"
            ) from exc

    def _is_usable(self, connection: Any) -> bool:
        """Open, and not told off by the server while idle: an idle connection whose
        socket is readable got an EOF, a reset or a termination notice (a cut network,
        a restarted server, an idle-in-transaction timeout), so it is replaced before
        use instead of failing the next statement (no round trip: a zero-timeout poll)."""
        if connection.closed:
            return False
        try:
            fd = connection.pgconn.socket
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError, AttributeError, TypeError):
            return False
        except Exception:  # psycopg.OperationalError: no socket any more
            return False
        return not readable

    def _close_connection(self, connection: Any) -> None:
        import psycopg

        with suppress(psycopg.Error):
            connection.close()

    def _execute(self, connection: Any, sql: str, params: Params) -> int:
        import psycopg

        try:
            with connection.cursor() as cursor:
                cursor.execute(self._sql(sql), tuple(params) or None)
                return int(cursor.rowcount)
        except psycopg.Error as exc:
            raise _postgres_error(
                f"PostgreSQL failed on {_sql_excerpt(sql)!r}: {exc}", exc
            ) from exc

    def _executemany(self, connection: Any, sql: str, rows: list[Params]) -> None:
        import psycopg

        try:
            with connection.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)
        except psycopg.Error as exc:
            raise _postgres_error(
                f"PostgreSQL failed on {_sql_excerpt(sql)!r}: {exc}", exc
            ) from exc

    def _fetch_all(self, connection: Any, sql: str, params: Params) -> list[Row]:
        import psycopg

        try:
            with connection.cursor() as cursor:
                cursor.execute(self._sql(sql), tuple(params) or None)
                return [tuple(row) for row in cursor.fetchall()]
        except psycopg.Error as exc:
            raise _postgres_error(
                f"PostgreSQL failed on {_sql_excerpt(sql)!r}: {exc}", exc
            ) from exc


_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


def _open_sqlite(url: str) -> SqliteDatabase:
    rest = url[len("sqlite://") :]
    location, _, query = rest.partition("?")
    if not location.strip("/"):
        raise ConfigError(f"catalog URL {url!r} names no file; use sqlite:///abs/path.sqlite3")
    if location.strip("/") == ":memory:":
        raise ConfigError(
            "an in-memory SQLite catalog is not supported (each thread would see its own "
            "database); use sqlite:///abs/path.sqlite3"
        )
    path = Path("/" + location.lstrip("/"))
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise ConfigError(f"catalog URL {url!r}: unknown option(s) {', '.join(unknown)}")
    synchronous = options.get("synchronous", ["full"])[-1].lower()
    if synchronous not in _SYNCHRONOUS:
        raise ConfigError(
            f"catalog URL {url!r}: synchronous must be one of {', '.join(_SYNCHRONOUS)}"
        )
    return SqliteDatabase(url, path, synchronous=_SYNCHRONOUS[synchronous])


def open_database(url: str, *, timeouts: SqlTimeouts | None = None) -> Database:
    """Open the catalog database named by ``url`` (PostgreSQL connections bounded by
    ``timeouts``, default :class:`SqlTimeouts`; SQLite waits at most its busy timeout).

    Raises:
        ConfigError: the URL is empty, malformed or names an unsupported scheme.
        CatalogError: the database cannot be opened or reached.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("catalog URL is empty; use sqlite:///abs/path or postgresql://...")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        if not url.lower().startswith("sqlite:///"):
            raise ConfigError(
                f"catalog URL {redact_url(url)!r} must look like sqlite:///abs/path.sqlite3"
            )
        return _open_sqlite(url)
    if scheme in ("postgresql", "postgres"):
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ConfigError(f"catalog URL {redact_url(url)!r} is malformed: {exc}") from exc
        return PostgresDatabase(url, timeouts=timeouts)
    raise ConfigError(
        f"unsupported catalog URL {redact_url(url)!r}: expected sqlite:///abs/path.sqlite3 "
        "or postgresql://user@host/db"
    )
