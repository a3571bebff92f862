"""The three call scenarios, captured word for word from the fake Asterisk.

Before any load, one call of each scenario is played against the engine process by
``asterisk_sim.place_call`` (the peer built from the Asterisk 22 transcripts).
Its transcript becomes a :class:`Script`: the ``agi_*`` block, then per command the
command's first words (checked on every later call) and the exact reply lines the
fake gave, including the unprompted ``HANGUP`` line after the engine's ``HANGUP``.
The light peer in ``_driver`` replays these scripts on thousands of sockets, and
the references send the recorded command lines, so all three servers face the same
dialogue.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from asterisk_sim import CallRecord, CallScript, DialScript, place_call

from ._prepare import Plan, new_caller

__all__ = ["SCENARIOS", "Script", "Step", "capture"]

#: scenario -> (what it is, the CDR outcome it must leave)
SCENARIOS: dict[str, tuple[str, str]] = {
    "bound": ("(a) bound caller: announcement, Dial answered, settle, CDR", "ANSWERED"),
    "first_pin": ("(b) first call: PIN entry, binding, announcement, Dial, settle, CDR", "ANSWERED"),
    "blocked": ("(c) blocked caller: refusal prompt, CDR", "BLOCKED_CALLER"),
}
PIN_MARK = "{pin}"
#: Ringing and talk time the callee side reports (virtual; nobody waits for it).
DIAL = DialScript(outcome="answer", ring_ms=2000, talk_ms=5000)
#: First-time callers used by the capture calls, far from the drivers' ranges.
CAPTURE_NEW_CALLER = 8_999_000


@dataclass(frozen=True)
class Step:
    key: str          # the command's first words, e.g. 'EXEC "Dial"' or 'SET VARIABLE "IVR_RESULT"'
    command: str      # the whole command line the engine sent (the references send it as is)
    reply: str        # the reply lines, each ending in "\n"; PIN_MARK where the typed PIN goes
    dial: bool        # EXEC Dial: the reply a parked call holds back
    setup_end: bool   # the call is "set up" when this command arrives


@dataclass(frozen=True)
class Script:
    scenario: str
    env: tuple[tuple[str, str], ...]   # the agi_* block as the fake sent it
    steps: tuple[Step, ...]
    outcome: str                       # the CDR outcome the engine must write

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Script:
        return cls(scenario=data["scenario"], env=tuple((k, v) for k, v in data["env"]),
                   steps=tuple(Step(**s) for s in data["steps"]), outcome=data["outcome"])

    @property
    def commands(self) -> list[str]:
        return [s.command for s in self.steps]


def command_key(command: str) -> str:
    """What every call's command must start with: ``EXEC <app>``, else the first three words."""
    words = command.split(" ")
    return " ".join(words[:2] if words[0] == "EXEC" else words[:3])


def script_from_record(scenario: str, record: CallRecord, *, pin: str | None, outcome: str) -> Script:
    env: list[tuple[str, str]] = []
    steps: list[Step] = []
    command: str | None = None
    reply: list[str] = []

    def flush() -> None:
        if command is not None:
            text = "".join(f"{line}\n" for line in reply)
            if pin:
                text = text.replace(pin, PIN_MARK)
            key = command_key(command)
            steps.append(Step(key=key, command=command, reply=text, dial=key == 'EXEC "Dial"',
                              setup_end=False))

    for direction, _, text in record.lines:
        if direction == "##":
            continue
        if direction == "<<":
            flush()
            command, reply = text, []
        elif command is None:
            if text:
                key, _, value = text.partition(": ")
                env.append((key, value))
        else:
            reply.append(text)
    flush()
    end = next((i for i, s in enumerate(steps) if s.dial), len(steps) - 1)
    steps[end] = Step(**{**asdict(steps[end]), "setup_end": True})
    return Script(scenario=scenario, env=tuple(env), steps=tuple(steps), outcome=outcome)


async def capture(host: str, port: int, plan: Plan) -> tuple[dict[str, Script], list[CallRecord]]:
    """Play one call of each scenario through the fake Asterisk and keep its dialogue.

    Raises:
        RuntimeError: the fake saw a protocol violation, or the call did not end by the
            engine closing the connection.
    """
    calls = {
        "bound": (plan.bound_callers[0], [], None),
        "first_pin": (new_caller(CAPTURE_NEW_CALLER), [plan.pins[0] + "#"], plan.pins[0]),
        "blocked": (plan.blocked_callers[0], [], None),
    }
    scripts: dict[str, Script] = {}
    records: list[CallRecord] = []
    for scenario, (caller, digits, pin) in calls.items():
        record = await place_call(host, port, CallScript(
            caller_id=caller, extension=plan.access, args=(plan.access,), digits=list(digits),
            dials=[DIAL], idle_timeout_s=10.0))
        if record.violations or record.closed_by != "server":
            raise RuntimeError(f"capture of {scenario}: violations {record.violations},"
                               f" closed by {record.closed_by}")
        records.append(record)
        scripts[scenario] = script_from_record(scenario, record, pin=pin, outcome=SCENARIOS[scenario][1])
    return scripts, records
