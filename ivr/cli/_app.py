"""The ``ivr`` group and what every command shares: opening the store, errors,
confirmation, ``--json``, the account warning.

Data to stdout (tables for people, ``--json`` for scripts), warnings and errors to
stderr. Exit 0 on success; 1 for an expected failure, printed as one line
``ErrorName: message`` with nothing changed; 2 for a usage error, also one line.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click

from rating.errors import RatingError
from rating.store import open_store, parse_database
from rating.store.base import OperatorStore

from .. import operations as ops
from .._safe import printable
from ..ami import AmiError
from ..settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class CliError(Exception):
    """An expected failure with a message for the operator."""


class Cancelled(CliError):
    """The operator did not confirm: nothing changed."""


# OverflowError: a number past what the store holds (int64) that an option let through;
# every option is range-checked, this is the backstop that keeps it one line.
EXPECTED_ERRORS = (RatingError, CliError, SettingsError, ValueError, OSError, AmiError, OverflowError)


def _quiet_broken_pipe() -> NoReturn:
    """``ivr cdr list | head``: the reader left; stop without a traceback or a message, and
    point stdout at /dev/null so the interpreter's final flush does not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def _fail(exc: BaseException) -> NoReturn:
    click.echo(printable(f"{type(exc).__name__}: {exc}"), err=True)
    sys.exit(1)


class IvrGroup(click.Group):
    """click's group, but every error is one line on stderr: ``Name: message``
    (usage errors exit 2, a declined confirmation 1)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `ivr`, `ivr card`: show what there is
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"{type(exc).__name__}: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"{type(exc).__name__}: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Cancelled: nothing changed", err=True)
            sys.exit(1)
        except CliError as exc:  # raised by a command that needs no store (prompts, call)
            _fail(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `ivr cdr list | head`
                _quiet_broken_pipe()
            raise
        sys.exit(rv if isinstance(rv, int) else 0)


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj["settings"]  # type: ignore[no-any-return]


def run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; an expected error becomes one line and exit 1."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except BrokenPipeError:
        _quiet_broken_pipe()
    except EXPECTED_ERRORS as exc:
        _fail(exc)


# The commands that may start a database from nothing; every other command refuses a
# SQLite file that does not exist instead of creating it (and its directory) empty.
CREATING_COMMANDS = frozenset({("project", "create")})


async def _open(settings: Settings, *, must_exist: bool = True) -> OperatorStore:
    store = open_store(settings.database, must_exist=must_exist)
    await store.open()
    return store


def _creates_database(ctx: click.Context) -> bool:
    parent = ctx.parent.info_name if ctx.parent is not None else None
    return (parent, ctx.info_name) in CREATING_COMMANDS or ctx.info_name == "demo"  # demo: top level


async def warn_about_account(store: OperatorStore) -> None:
    """Every command that opens the database ends with this warning while the account
    owes more than its info limit (stderr, so ``--json`` output stays clean)."""
    state = await ops.account_state(store)
    if state.level is ops.AccountLevel.LOCKED:
        click.echo(f"warning: account locked: it owes {state.money(state.owed_cents)}, more than the lock"
                   f" limit of {state.money(state.lock_limit_cents)}; no new cards or recharges until a"
                   " payment (ivr account pay AMOUNT)"
                   + ("; new calls hear 'service suspended'" if state.suspend_calls else ""), err=True)
    elif state.level is ops.AccountLevel.INFO:
        click.echo(f"warning: the account owes {state.money(state.owed_cents)}, more than the info limit"
                   f" of {state.money(state.info_limit_cents)} (lock at"
                   f" {state.money(state.lock_limit_cents)}; pay with: ivr account pay AMOUNT)", err=True)


def with_store(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run ``fn(store, settings, **kwargs)`` with an open store, then warn about the account."""
    @functools.wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, /, **kwargs: Any) -> Any:
        settings = _settings(ctx)
        must_exist = not _creates_database(ctx)

        async def go() -> Any:
            fresh = None if must_exist else _missing_sqlite_file(settings)
            try:
                store = await _open(settings, must_exist=must_exist)
            except BaseException:
                _remove_if_fresh(fresh)
                raise
            try:
                result = await fn(store, settings, **kwargs)
                await warn_about_account(store)
            except BaseException:
                # A creating command that failed (a refusal, a declined question) leaves no
                # database behind: "changes nothing" includes not creating one. Only a file
                # this command made and that holds no project is removed.
                empty = fresh is not None and await _holds_nothing(store)
                await store.close()
                if empty:
                    _remove_if_fresh(fresh)
                raise
            await store.close()
            return result
        return run(go())
    return wrapper


def _missing_sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file the command would create, if it does not exist yet."""
    try:
        path = parse_database(settings.database).path
    except RatingError:
        return None
    return path if path is not None and not path.exists() else None


async def _holds_nothing(store: OperatorStore) -> bool:
    try:
        return not await store.projects()
    except RatingError:
        return False   # cannot tell: keep it


def _remove_if_fresh(path: Path | None) -> None:
    if path is None:
        return
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def yes_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)


def confirm(question: str, yes: bool) -> None:
    """Ask on stderr unless ``--yes``; raises Cancelled when declined (or stdin is closed)."""
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:  # stdin closed: no answer is no
        click.echo("", err=True)
        raise Cancelled("nothing changed (no answer; add --yes to confirm without asking)") from None
    if not agreed:
        raise Cancelled("nothing changed")


def emit(as_json: bool, data: Any, lines: Sequence[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in lines:
            click.echo(printable(line))  # caller IDs, notes, reasons: never terminal controls


def note(text: str) -> None:
    """A remark for the operator on stderr (never part of the data)."""
    click.echo(printable(text), err=True)


def check_new_path(path: str, yes: bool) -> Path:
    """An output file: an existing one is replaced only with ``--yes``. Raises CliError."""
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{path} is a directory")
    if target.exists() and not yes:
        raise CliError(f"{path} exists; add --yes to overwrite it")
    return target


def open_new_file(path: str, yes: bool, *, private: bool = False) -> IO[str]:
    """Open ``path`` for writing (see ``check_new_path``); ``private``: mode 0600, for PINs."""
    target = check_new_path(path, yes)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    if private:  # an existing file keeps its mode through O_TRUNC: PINs are never readable by others
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


@click.group(cls=IvrGroup)
@click.option("--database", envvar="IVR_DATABASE", metavar="FILE|URL",
              help="SQLite file (default ./ivr.sqlite3) or postgresql:// URL.")
@click.option("--config", "config_file", envvar="IVR_CONFIG", type=click.Path(dir_okay=False),
              help="TOML settings file.")
@click.version_option("0.1.0", prog_name="ivr")
@click.pass_context
def main(ctx: click.Context, database: str | None, config_file: str | None) -> None:
    """Prepaid telephony engine for Asterisk."""
    try:
        settings = load_settings(config_file, overrides={"database": database})
    except SettingsError as exc:
        click.echo(f"SettingsError: {exc}", err=True)
        sys.exit(2)
    ctx.obj = {"settings": settings}
