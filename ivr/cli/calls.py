"""``ivr calls`` (live calls, through AMI) and ``ivr calls hangup UNIQUEID``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click
import structlog

from rating.store.base import OperatorStore

from ..ami import AmiClient, AmiUnavailable
from ..live import live_calls
from ..settings import Settings
from ._app import CliError, emit, json_option, main, with_store
from ._format import hms

AMI_LOGIN_WAIT_S = 5.0


class AmiNotConfigured(CliError):
    """The command needs AMI and ami_host is not set."""


def require_ami(settings: Settings, what: str) -> None:
    """Raises AmiNotConfigured (before anything changes) when AMI is not set up."""
    if not settings.ami_configured:
        raise AmiNotConfigured(f"{what} needs AMI: set ami_host and ami_secret (IVR_AMI_HOST, IVR_AMI_SECRET"
                               " or the TOML file), as for ivr serve; nothing changed")


def _drop(logger: Any, method: str, event: Any) -> Any:
    raise structlog.DropEvent


@asynccontextmanager
async def cli_ami(settings: Settings, what: str) -> AsyncIterator[AmiClient]:
    """An AMI connection for one command. Raises AmiNotConfigured, AmiUnavailable, AmiLoginRefused."""
    require_ami(settings, what)
    # The command's own one-line error says what went wrong; the client's logs stay quiet.
    quiet = structlog.wrap_logger(None, processors=[_drop])
    client = AmiClient(settings.ami_host, settings.ami_port, settings.ami_user, settings.ami_secret,
                       action_timeout_s=settings.ami_timeout_s, logger=quiet)
    await client.start()
    try:
        await client.wait_ready(AMI_LOGIN_WAIT_S)
        yield client
    finally:
        await client.close()


@main.group("calls", invoke_without_command=True)
@json_option
@click.pass_context
def calls(ctx: click.Context, as_json: bool) -> None:
    """Live calls (needs AMI): uniqueid, project, card, caller, destination, state, talk so far."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(calls_list, as_json=as_json)


@calls.command("list", hidden=True)
@json_option
@with_store
async def calls_list(store: OperatorStore, settings: Settings, *, as_json: bool) -> None:
    async with cli_ami(settings, "ivr calls") as ami:
        found = await live_calls(ami, store)
    rows = [f"{'UNIQUEID':<22} {'PROJECT':<12} {'CARD':>6} {'CALLER':<16} {'DESTINATION':<28} {'STATE':<8} TALK"]
    rows += [f"{c.uniqueid:<22} {c.project or '-':<12} {c.card_id if c.card_id is not None else '-':>6}"
             f" {c.caller:<16} {c.destination or '-':<28} {c.state:<8} {hms(c.talk_s)}" for c in found]
    emit(as_json, [c.as_json() for c in found], rows if found else ["no live calls"])


@calls.command("hangup")
@click.argument("uniqueid")
@json_option
@with_store
async def calls_hangup(store: OperatorStore, settings: Settings, *, uniqueid: str, as_json: bool) -> None:
    """End a live call: its channel is hung up; the engine settles it as the caller leaving."""
    async with cli_ami(settings, "ivr calls hangup") as ami:
        call = next((c for c in await live_calls(ami, store) if c.uniqueid == uniqueid), None)
        if call is None:
            raise CliError(f"no live call with uniqueid {uniqueid!r} (see ivr calls)")
        if not await ami.hangup(call.channel):
            raise AmiUnavailable(f"Asterisk did not hang up {call.channel!r} (gone meanwhile?)")
    emit(as_json, {"uniqueid": uniqueid, "channel": call.channel, "hung_up": True},
         [f"call {uniqueid} ({call.channel}) hung up"])
