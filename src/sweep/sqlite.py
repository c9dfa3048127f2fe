"""SQLite as the embedded stores use it (the Optuna study, the MLflow store): write-ahead log, one fsync per
checkpoint instead of per commit.

`journal_mode=WAL` lets readers and one writer work at once (several coordinators and workers on one host),
and `synchronous=NORMAL` under WAL keeps every committed transaction through a crash or SIGKILL of any process
(only a power cut or an OS crash can lose the last ones): a commit costs about a millisecond instead of a few
fsyncs, which is most of a trial's bookkeeping. WAL needs a local disk: put shared stores on PostgreSQL, not NFS.
"""

from __future__ import annotations

_TUNED = False


def tune() -> None:
    """Apply the pragmas to every SQLite connection this process opens from now on (once per process)."""
    global _TUNED
    if _TUNED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        import sqlite3

        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    _TUNED = True
