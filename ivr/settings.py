"""One settings object: defaults < TOML file < environment (``IVR_…``) < command-line flags.

Every field is a key of the TOML file and an ``IVR_<NAME>`` variable (as uvicorn
maps its options onto ``Config``). A bad value raises ``SettingsError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rating.errors import InvalidDatabase
from rating.store import parse_database

__all__ = ["LOG_LEVELS", "Settings", "SettingsError", "load_settings", "peer_networks"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4573
    database: str = "ivr.sqlite3"
    secret_file: str = ""              # default: $XDG_STATE_HOME/ivr/secret (~/.local/state/ivr/secret),
                                       # apart from the database; an old <database>.secret is still used
    state_dir: str = ""                # the settlement journal; default: <database>.state next to the database
    store_budget_ms: int = 750         # a call's store write waits at most this for a lock, then fails closed
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9102           # 0 = no metrics endpoint
    sounds_dir: str = ""               # default: the packaged prompts/sounds
    grace_s: float = 30.0              # shutdown: how long live calls may go on
    pin_tries: int = 3
    pin_timeout_ms: int = 7000
    pin_throttle_failures: int = 10    # wrong PINs per line (withheld numbers have no line cap) …
    pin_throttle_window_s: int = 3600  # … within this window, then PIN entry is refused
    pin_throttle_project_failures: int = 1000  # … and for everyone once a project sees this many:
                                               # caller IDs can be spoofed, the PIN space cannot grow.
                                               # 1000/h: a lock-out takes >= 334 calls an hour, and
                                               # 12-digit PINs with 10,000 cards hold 11 years
    pin_entry_max_calls: int = 30      # callers at a PIN prompt at once, per project
    pin_delay_ms: int = 1000           # after a wrong PIN; doubles with the line's recent wrong PINs …
    pin_delay_max_ms: int = 16000      # … up to this
    allowed_peers: str = "127.0.0.0/8,::1"  # FastAGI peers (addresses or networks, comma-separated)
    max_connections: int = 2000        # FastAGI connections at once; more are closed at once
    talk_clock_cap: int = 1            # 1: talk never exceeds the engine's own clock around the Dial;
                                       # 0 only for simulations that compress time (asterisk_sim, bench)
    dial_margin_s: int = 60            # EXEC Dial gets ring timeout + talk limit + this, then the call is lost
    env_timeout_s: float = 10.0
    account_check_s: float = 30.0      # how often the engine rereads the operator's account state
    config_refresh_s: float = 1.0      # projects and blocked numbers changed by the CLI apply within this
    log_format: str = "auto"           # auto | json | console
    event_loop: str = "auto"           # auto (uvloop when installed) | uvloop | asyncio
    log_level: str = "INFO"
    # AMI (optional): live calls, reconciliation of holds left open, hang-ups by the operator.
    ami_host: str = ""                 # empty = no AMI: the engine says once what it then cannot do
    ami_port: int = 5038
    ami_user: str = "ivr-engine"
    ami_secret: str = ""               # manager.conf's secret; prefer IVR_AMI_SECRET or the TOML file
    ami_timeout_s: float = 5.0         # every AMI action is answered within this, or fails
    reconcile_s: float = 5.0           # open holds checked against Asterisk's channels this often
    # The addresses the AMI's Asterisk connects to FastAGI from (comma-separated); empty:
    # ami_host's own addresses. With several Asterisk boxes on one database, an engine
    # reconciles only the holds of calls that came from these.
    ami_asterisk_peers: str = ""

    @property
    def secret_path(self) -> Path:
        """The PIN-hashing secret: ``secret_file``, or next to a SQLite database. Engines on
        one PostgreSQL must share it, so there it has to be given. Raises SettingsError."""
        if self.secret_file:
            return Path(self.secret_file)
        db = parse_database(self.database)
        if db.path is None:
            raise SettingsError("setting 'secret_file' is needed with a PostgreSQL database: every engine"
                                " and the CLI must hash PINs with the same secret")
        legacy = Path(db.target + ".secret")
        if legacy.exists():  # installs from before issue 9 keep their secret (with a warning)
            return legacy
        return state_dir() / "secret"

    @property
    def secret_beside_database(self) -> bool:
        """The secret is the old ``<database>.secret``: one backup of the directory holds both."""
        return not self.secret_file and self.secret_path.name.endswith(".secret")

    @property
    def state_path(self) -> Path:
        """``state_dir``, else ``<database>.state`` beside a SQLite file; for PostgreSQL (a URL,
        never a file name) a directory of its own per database under ``$XDG_STATE_HOME/ivr``."""
        if self.state_dir:
            return Path(self.state_dir)
        db = parse_database(self.database)
        if db.path is not None:
            return Path(db.target + ".state")
        digest = hashlib.sha256(db.shown().encode()).hexdigest()[:16]  # no password in the name's source
        return state_dir() / f"{db.kind}-{digest}"

    @property
    def ami_configured(self) -> bool:
        return bool(self.ami_host)

    def masked(self) -> dict[str, Any]:
        """The settings to show: the AMI secret masked (the PIN-hashing secret lives in
        the file ``secret_file`` names)."""
        data = dataclasses.asdict(self)
        if data["ami_secret"]:
            data["ami_secret"] = "********"
        return data


def state_dir() -> Path:
    """Where the engine keeps its own state apart from the database: ``$XDG_STATE_HOME/ivr``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ivr"


def peer_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"127.0.0.0/8, 172.28.0.0/16, ::1"`` as networks (a bare address is a /32 or /128).
    Raises ValueError for anything else or an empty list."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("no address or network given (the engine would accept nobody)")
    try:
        return tuple(ipaddress.ip_network(p, strict=False) for p in parts)
    except ValueError as exc:
        raise ValueError(f"{exc}") from None


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


def _validate(s: Settings) -> None:
    try:
        parse_database(s.database)
    except InvalidDatabase as exc:
        raise SettingsError(f"setting 'database': {exc}") from None
    if s.log_level.upper() not in LOG_LEVELS:
        raise SettingsError(f"setting 'log_level': {s.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if not 0 < s.port < 65536:
        raise SettingsError(f"setting 'port': {s.port} is not a TCP port")
    if not 0 <= s.metrics_port < 65536:
        raise SettingsError(f"setting 'metrics_port': {s.metrics_port} is not a TCP port")
    if not 0 <= s.config_refresh_s <= 60:
        raise SettingsError("setting 'config_refresh_s' must be between 0 and 60 seconds")
    if not 0 < s.store_budget_ms <= 60_000:
        raise SettingsError("setting 'store_budget_ms' must be between 1 and 60000 ms")
    if s.grace_s < 0:
        raise SettingsError("setting 'grace_s' must be >= 0")
    if not 0 < s.pin_throttle_window_s <= 7 * 86400:
        raise SettingsError("setting 'pin_throttle_window_s' must be between 1 s and 7 days")
    if s.pin_throttle_failures < 1 or s.pin_throttle_project_failures < 1 or s.pin_entry_max_calls < 1:
        raise SettingsError("settings 'pin_throttle_failures', 'pin_throttle_project_failures' and"
                            " 'pin_entry_max_calls' must be >= 1")
    if not 0 <= s.pin_delay_ms <= s.pin_delay_max_ms <= 120_000:
        raise SettingsError("settings 'pin_delay_ms' <= 'pin_delay_max_ms' must be between 0 and 120000")
    if s.max_connections < 1:
        raise SettingsError("setting 'max_connections' must be >= 1")
    if s.dial_margin_s < 1:
        raise SettingsError("setting 'dial_margin_s' must be >= 1")
    try:
        peer_networks(s.allowed_peers)
    except ValueError as exc:
        raise SettingsError(f"setting 'allowed_peers': {exc}") from None
    if s.pin_tries < 1:
        raise SettingsError("setting 'pin_tries' must be >= 1")
    if not 0 < s.ami_port < 65536:
        raise SettingsError(f"setting 'ami_port': {s.ami_port} is not a TCP port")
    if s.ami_host and not s.ami_secret:
        raise SettingsError("setting 'ami_secret' is empty while 'ami_host' is set (manager.conf's secret)")
    if not 0 < s.ami_timeout_s <= 60:
        raise SettingsError("setting 'ami_timeout_s' must be between 0 and 60 seconds")
    try:
        for address in filter(None, (a.strip() for a in s.ami_asterisk_peers.split(","))):
            ipaddress.ip_address(address)
    except ValueError as exc:
        raise SettingsError(f"setting 'ami_asterisk_peers': {exc}") from None
    if not 0.5 <= s.reconcile_s <= 300:
        raise SettingsError("setting 'reconcile_s' must be between 0.5 and 300 seconds")
    if s.event_loop not in ("auto", "uvloop", "asyncio"):
        raise SettingsError("setting 'event_loop' must be auto, uvloop or asyncio")
    if s.log_format not in ("auto", "json", "console"):
        raise SettingsError("setting 'log_format' must be auto, json or console")
    if s.log_level.upper() not in LOG_LEVELS:
        raise SettingsError(f"setting 'log_level': {s.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
