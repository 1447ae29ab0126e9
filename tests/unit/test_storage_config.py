"""The [database] section: which engine and connection it gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from transport.config import load_text
from transport.storage.database import open_from_config, postgresql_conninfo


def test_postgresql_conninfo_from_keys() -> None:
    config = load_text("[database]\ntype = postgresql\ndatabase = my db\nserver = 127.0.0.1\nport = 5433\n"
                       "user = gw\npassword = p'w\n", "/etc/transport/transport.ini")
    conninfo = postgresql_conninfo(config["database"])
    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict(conninfo) == {"dbname": "my db", "host": "127.0.0.1", "port": "5433",
                                          "user": "gw", "password": "p'w"}


def test_postgresql_conninfo_passthrough() -> None:
    for given in ("host=/run/postgresql dbname=transport", "postgresql://gw@db.example/transport?sslmode=require"):
        config = load_text(f"[database]\ntype = pqxx\ndatabase = {given}\nserver = ignored\n", "/x.ini")
        assert postgresql_conninfo(config["database"]) == given


def test_open_from_config_postgresql_is_not_connected_yet() -> None:
    config = load_text("[database]\ntype = postgresql\ndatabase = transport\n", "/x.ini")
    db = open_from_config(config)
    assert db.dialect.name == "postgresql"


@pytest_twisted.inlineCallbacks
def test_open_from_config_sqlite_relative_to_state_dir(tmp_path: Path) -> Any:
    ini = tmp_path / "transport.ini"
    config = load_text("[service]\nstate_dir = state\n[database]\ndatabase = gw.sqlite3\n", str(ini))
    db = open_from_config(config)
    assert db.dialect.name == "sqlite"
    db.start()
    try:
        rows = yield db.run_query("PRAGMA journal_mode")
        assert rows == [("wal",)]
    finally:
        yield db.close()
    assert (tmp_path / "state" / "gw.sqlite3").exists()
