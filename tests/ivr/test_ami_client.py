"""The engine's AMI client (panoramisk with its pitfalls handled) against the fake AMI
over real TCP: login, actions, a wrong secret, Asterisk stopped and back, frozen."""

from __future__ import annotations

import asyncio

import pytest

from asterisk_sim import AmiServer
from ivr.ami import AmiClient, AmiLoginRefused, AmiUnavailable

WAIT = 15.0


async def client_for(ami: AmiServer, *, secret: str = "secret", **options: float) -> AmiClient:
    client = AmiClient("127.0.0.1", ami.port, "ivr-engine", secret, **options)  # type: ignore[arg-type]
    await client.start()
    return client


async def test_login_actions_and_astdb() -> None:
    async with AmiServer() as ami:
        ami.astdb[("ivr-unsettled", "7")] = "v1;ANSWER"
        client = await client_for(ami)
        try:
            await client.wait_ready(WAIT)
            assert await client.channels() == []
            assert await client.db_tree("ivr-unsettled") == {"7": "v1;ANSWER"}
            assert await client.db_del("ivr-unsettled", "7") is True
            assert await client.db_tree("ivr-unsettled") == {}
            assert await client.hangup("PJSIP/nobody-00000001") is False
        finally:
            await client.close()


async def test_wrong_secret_is_reported_not_retried_silently() -> None:
    async with AmiServer() as ami:
        client = await client_for(ami, secret="wrong")
        try:
            with pytest.raises(AmiLoginRefused, match="refused the login"):
                await client.wait_ready(WAIT)
            with pytest.raises(AmiUnavailable):
                await client.channels()
        finally:
            await client.close()


async def test_no_asterisk_then_asterisk_restarted() -> None:
    ami = AmiServer()
    await ami.start()
    port = ami.port
    await ami.close()
    client = AmiClient("127.0.0.1", port, "ivr-engine", "secret")
    await client.start()
    try:
        with pytest.raises(AmiUnavailable, match="no AMI login"):
            await client.wait_ready(0.5)
        back = AmiServer(port=port)
        await back.start()
        await client.wait_ready(WAIT)       # reconnected by itself
        assert await client.channels() == []
        await back.restart()                # connection lost, Asterisk back on the same port
        await asyncio.sleep(0.2)
        await client.wait_ready(WAIT)
        assert client.logins == 2
        assert client.asterisk_uptime_s is not None and client.asterisk_uptime_s <= 5  # Uptime counts from the restart
        assert await client.channels() == []
        await back.close()
    finally:
        await client.close()


async def test_frozen_asterisk_is_detected_by_the_watchdog() -> None:
    async with AmiServer() as ami:
        client = await client_for(ami, ping_interval_s=0.2, action_timeout_s=0.5)
        try:
            await client.wait_ready(WAIT)
            ami.freeze()
            for _ in range(100):
                if not client.connected:
                    break
                await asyncio.sleep(0.05)
            assert not client.connected     # our ping went unanswered: transport aborted
            ami.thaw()
            await client.wait_ready(WAIT)   # logged in again
            assert client.logins >= 2
        finally:
            await client.close()
