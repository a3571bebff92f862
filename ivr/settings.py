"""One settings object: defaults < TOML file < environment (``IVR_…``) < command-line flags.

Every field is a key of the TOML file and an ``IVR_<NAME>`` variable (as uvicorn
maps its options onto ``Config``). A bad value raises ``SettingsError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["LOG_LEVELS", "Settings", "SettingsError", "database_location", "load_settings"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4573
    database: str = "ivr.sqlite3"
    secret_file: str = ""              # default: <database>.secret next to the database
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9102           # 0 = no metrics endpoint
    sounds_dir: str = ""               # default: the packaged prompts/sounds
    grace_s: float = 30.0              # shutdown: how long live calls may go on
    pin_tries: int = 3
    pin_timeout_ms: int = 7000
    pin_throttle_failures: int = 10    # wrong PINs per caller (or all anonymous callers) …
    pin_throttle_window_s: int = 3600  # … within this window, then PIN entry is refused
    pin_throttle_project_failures: int = 300  # … and for everyone once a project sees this many:
                                              # caller IDs can be spoofed, the PIN space cannot grow
    env_timeout_s: float = 10.0
    account_check_s: float = 30.0      # how often the engine rereads the operator's account state
    config_refresh_s: float = 1.0      # projects and blocked numbers changed by the CLI apply within this
    log_format: str = "auto"           # auto | json | console
    event_loop: str = "auto"           # auto (uvloop when installed) | uvloop | asyncio
    log_level: str = "INFO"

    @property
    def secret_path(self) -> Path:
        return Path(self.secret_file) if self.secret_file else Path(self.database + ".secret")

    def masked(self) -> dict[str, Any]:
        """The settings to show. None holds a secret itself: the PIN-hashing secret lives
        in the file ``secret_file`` names, so there is nothing to mask yet."""
        return dataclasses.asdict(self)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    try:
        if kind in (int, "int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind in (float, "float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name!r}: {value!r} is not a valid {kind}") from None


def load_settings(config_file: str | None = None, *, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(Settings)}
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file {config_file!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file!r}: {exc}") from None
        for key, value in data.items():
            if key not in known:
                raise SettingsError(f"setting {key!r} in {config_file} is unknown")
            values[key] = value
    for name in known:
        env_value = environ.get(f"IVR_{name.upper()}")
        if env_value is not None:
            values[name] = env_value
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    typed = {name: _coerce(name, known[name].type, value) for name, value in values.items()}
    settings = Settings(**typed)
    _validate(settings)
    return settings


def database_location(value: str) -> str:
    """What the ``database`` setting names: the one place that decides (a SQLite file
    path today). Returns the value to open; raises SettingsError for one that names
    nothing — an empty ``IVR_DATABASE=`` would otherwise open a throw-away database
    (SQLite's "" is a private temporary file) and lose everything written to it."""
    if not value.strip():
        raise SettingsError("setting 'database' is empty; give a SQLite file such as ivr.sqlite3")
    return value


def _validate(s: Settings) -> None:
    database_location(s.database)
    if s.log_level.upper() not in LOG_LEVELS:
        raise SettingsError(f"setting 'log_level': {s.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if not 0 < s.port < 65536:
        raise SettingsError(f"setting 'port': {s.port} is not a TCP port")
    if not 0 <= s.metrics_port < 65536:
        raise SettingsError(f"setting 'metrics_port': {s.metrics_port} is not a TCP port")
    if not 0 <= s.config_refresh_s <= 60:
        raise SettingsError("setting 'config_refresh_s' must be between 0 and 60 seconds")
    if s.grace_s < 0:
        raise SettingsError("setting 'grace_s' must be >= 0")
    if not 0 < s.pin_throttle_window_s <= 7 * 86400:
        raise SettingsError("setting 'pin_throttle_window_s' must be between 1 s and 7 days")
    if s.pin_tries < 1:
        raise SettingsError("setting 'pin_tries' must be >= 1")
    if s.event_loop not in ("auto", "uvloop", "asyncio"):
        raise SettingsError("setting 'event_loop' must be auto, uvloop or asyncio")
    if s.log_format not in ("auto", "json", "console"):
        raise SettingsError("setting 'log_format' must be auto, json or console")
