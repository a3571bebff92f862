from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from ivr.logs import configure
from ivr.settings import Settings, SettingsError, load_settings


def test_layers_defaults_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text('port = 5000\ndatabase = "from-toml.sqlite3"\ngrace_s = 12.5\nlog_level = "DEBUG"\n')
    s = load_settings(str(toml), environ={"IVR_PORT": "6000", "IVR_METRICS_PORT": "0"},
                      overrides={"port": 7000, "host": None})
    assert (s.port, s.database, s.grace_s, s.metrics_port, s.host) == (7000, "from-toml.sqlite3", 12.5, 0,
                                                                         "127.0.0.1")
    s = load_settings(str(toml), environ={"IVR_PORT": "6000"})
    assert s.port == 6000
    assert load_settings(None, environ={}).port == 4573


@pytest.mark.parametrize("toml,env,key", [
    ("port = 'abc'\n", {}, "port"),
    ("", {"IVR_PORT": "70000"}, "port"),
    ("colour = 'red'\n", {}, "colour"),
    ("", {"IVR_GRACE_S": "-1"}, "grace_s"),
    ("", {"IVR_LOG_FORMAT": "xml"}, "log_format"),
])
def test_bad_values_name_the_key(tmp_path: Path, toml: str, env: dict[str, str], key: str) -> None:
    path = tmp_path / "ivr.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError, match=key):
        load_settings(str(path), environ=env)


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(str(tmp_path / "nope.toml"), environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = \n")
    with pytest.raises(SettingsError, match="bad.toml"):
        load_settings(str(bad), environ={})


def test_stdlib_and_structlog_lines_share_the_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        configure(json=True, cache=False)
        structlog.contextvars.bind_contextvars(uniqueid="1795438347.1")
        structlog.get_logger("ivr.test").info("pin_accepted", card="7")
        logging.getLogger("asyncio").warning("socket.send() raised exception.")
        structlog.contextvars.clear_contextvars()
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [line["event"] for line in lines] == ["pin_accepted", "socket.send() raised exception."]
        assert all(line["uniqueid"] == "1795438347.1" for line in lines)
        assert {"timestamp", "level", "logger"} <= set(lines[1])
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_the_journal_of_a_postgresql_engine_is_never_a_directory_named_after_its_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    url = "postgresql://ivr:secret@127.0.0.1:5432/ivr"
    path = Settings(database=url).state_path
    assert path.parent == tmp_path / "state" / "ivr" and path.name.startswith("postgresql-")
    assert "secret" not in str(path) and "127.0.0.1" not in str(path)
    assert Settings(database="postgresql://ivr@127.0.0.1:5433/ivr").state_path != path  # one per database
    assert Settings(database=str(tmp_path / "x.sqlite3")).state_path == tmp_path / "x.sqlite3.state"
    assert Settings(database=url, state_dir=str(tmp_path / "j")).state_path == tmp_path / "j"
