"""A small reader for Asterisk ``.conf`` files, enough to check our drop-in configs.

How this works
--------------
Asterisk reads every ``.conf`` file with the same parser (``main/config.c``):

* ``;`` starts a comment unless escaped as ``\\;``; ``;--`` ... ``--;`` is a
  block comment, possibly over several lines.
* ``[name]`` opens a section; ``[name](!)`` declares a template and
  ``[name](a,b)`` inherits from templates.  A name may repeat: in
  ``pjsip.conf`` one endpoint, its aor and its identify share a name and
  differ by ``type``.
* ``key = value`` and ``key => value`` mean the same to the reader.
* ``#include`` / ``#tryinclude`` / ``#exec`` lines are directives.

Anything else is a syntax error, and :func:`parse` raises :class:`ConfError`
for it, so a test built on it also catches what Asterisk would refuse.

``extensions.conf`` adds the dialplan on top (``pbx/pbx_config.c``)::

    exten => <ext>,<prio>[(<label>)],<App>(<args>)
     same => <prio>[(<label>)],<App>(<args>)      ; continues the last exten

:func:`dialplan` turns the sections into contexts, and :func:`run` walks one
extension for a given AGI outcome, evaluating the small subset of dialplan
this project uses (``Set``, ``Goto``, ``GotoIf`` with string comparisons,
``${VAR}`` and ``${ENV(...)}``), so a test can assert where a call ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ConfError",
    "ConfFile",
    "Context",
    "Dialplan",
    "Entry",
    "Priority",
    "Section",
    "Step",
    "dialplan",
    "exten_matches",
    "goto_targets",
    "parse",
    "parse_app",
    "run",
    "split_args",
]


class ConfError(ValueError):
    """A line Asterisk's config parser or pbx_config would not accept."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    lineno: int
    arrow: bool  # written as ``=>``


@dataclass
class Section:
    name: str
    lineno: int
    template: bool = False
    inherits: tuple[str, ...] = ()
    entries: list[Entry] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        """Return the last value of ``key`` (as Asterisk's option parsers do), or None."""
        values = self.getall(key)
        return values[-1] if values else None

    def getall(self, key: str) -> list[str]:
        """Return every value of ``key`` in file order (``match``, ``allow``...)."""
        return [e.value for e in self.entries if e.key.lower() == key.lower()]


@dataclass
class ConfFile:
    sections: list[Section]
    directives: list[str]

    def named(self, name: str) -> list[Section]:
        """Return every section called ``name`` (pjsip.conf repeats names)."""
        return [s for s in self.sections if s.name == name]

    def of_type(self, type_: str) -> list[Section]:
        """Return the pjsip-style sections whose ``type`` option is ``type_``."""
        return [s for s in self.sections if s.get("type") == type_]


_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:\((?P<opts>[^)]*)\))?\s*$")
_ENTRY = re.compile(r"^(?P<key>[^=\s][^=]*?)\s*(?P<op>=>?)\s*(?P<value>.*)$")


def _strip_comment(line: str) -> str:
    r"""Cut a ``;`` comment, keeping an escaped ``\;`` as a literal ``;``."""
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if c == ";":
            break
        out.append(c)
        i += 1
    return "".join(out)


def parse(text: str) -> ConfFile:
    """Parse the text of an Asterisk ``.conf`` file.

    Returns the sections in file order.  Raises :class:`ConfError` for an
    option outside any section, an unterminated block comment or a line
    that is neither a section header, an option nor a directive.
    """
    sections: list[Section] = []
    directives: list[str] = []
    in_block = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw
        if in_block:
            end = line.find("--;")
            if end < 0:
                continue
            line = line[end + 3 :]
            in_block = False
        start = line.find(";--")
        if start >= 0:
            end = line.find("--;", start + 3)
            if end < 0:
                line = line[:start]
                in_block = True
            else:
                line = line[:start] + line[end + 3 :]
        line = _strip_comment(line).strip()
        if not line:
            continue
        if line.startswith("#"):
            if not re.match(r"^#(include|tryinclude|exec)\s+\S", line):
                raise ConfError(f"line {lineno}: unknown directive {line!r}")
            directives.append(line)
            continue
        header = _SECTION.match(line)
        if header:
            opts = tuple(o.strip() for o in (header.group("opts") or "").split(",") if o.strip())
            sections.append(
                Section(
                    name=header.group("name").strip(),
                    lineno=lineno,
                    template="!" in opts,
                    inherits=tuple(o for o in opts if o != "!"),
                )
            )
            continue
        entry = _ENTRY.match(line)
        if not entry:
            raise ConfError(f"line {lineno}: not a section, option or directive: {raw!r}")
        if not sections:
            raise ConfError(f"line {lineno}: option outside any section: {raw!r}")
        sections[-1].entries.append(
            Entry(
                key=entry.group("key").strip(),
                value=entry.group("value").strip(),
                lineno=lineno,
                arrow=entry.group("op") == "=>",
            )
        )
    if in_block:
        raise ConfError("unterminated ;-- block comment")
    return ConfFile(sections=sections, directives=directives)


# --- dialplan ----------------------------------------------------------------

_OPEN = {"(": ")", "[": "]", "{": "}"}


def _depth_split(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split ``text`` on ``sep`` outside brackets and double quotes."""
    parts: list[str] = []
    stack: list[str] = []
    quoted = False
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted:
            if c in _OPEN:
                stack.append(_OPEN[c])
            elif stack and c == stack[-1]:
                stack.pop()
            elif c == sep and not stack and maxsplit != 0:
                parts.append("".join(current))
                current = []
                maxsplit -= 1
                i += 1
                continue
        current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def split_args(args: str) -> list[str]:
    """Split application arguments on top-level commas (as ``AST_STANDARD_APP_ARGS``)."""
    return [a.strip() for a in _depth_split(args, ",")]


def _balanced(text: str) -> bool:
    stack: list[str] = []
    quoted = False
    for c in text:
        if c == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif c in _OPEN:
            stack.append(_OPEN[c])
        elif c in ")]}" and (not stack or stack.pop() != c):
            return False
    return not stack and not quoted


def parse_app(text: str) -> tuple[str, str]:
    """Split ``App(args)`` into ``("App", "args")``.

    Raises :class:`ConfError` for unbalanced brackets or text after the
    closing parenthesis.
    """
    text = text.strip()
    m = re.match(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<args>.*)\))?$", text, re.DOTALL)
    if not m or not _balanced(text):
        raise ConfError(f"not an application call: {text!r}")
    return m.group("name"), m.group("args") or ""


@dataclass(frozen=True)
class Priority:
    context: str
    exten: str
    number: int
    label: str | None
    app: str
    args: str
    lineno: int


@dataclass
class Context:
    name: str
    extensions: dict[str, list[Priority]] = field(default_factory=dict)
    includes: list[str] = field(default_factory=list)

    def find(self, exten: str) -> list[Priority] | None:
        """Return the priorities of the extension ``exten`` dials into, or None.

        An exact name wins over a pattern, as in Asterisk; among patterns the
        first one in the file is taken (close enough for the few used here).
        """
        if exten in self.extensions:
            return self.extensions[exten]
        for name, prios in self.extensions.items():
            if name.startswith("_") and exten_matches(name, exten):
                return prios
        return None


@dataclass
class Dialplan:
    contexts: dict[str, Context]
    globals: dict[str, str]

    def __getitem__(self, name: str) -> Context:
        return self.contexts[name]

    def __contains__(self, name: object) -> bool:
        return name in self.contexts

    def priorities(self) -> Iterator[Priority]:
        for ctx in self.contexts.values():
            for prios in ctx.extensions.values():
                yield from prios


_SPECIAL_SECTIONS = {"general", "globals"}
_PRIO = re.compile(r"^(?P<prio>\d+|n|same|hint)(?:\((?P<label>[A-Za-z0-9_-]+)\))?$")


def dialplan(conf: ConfFile) -> Dialplan:
    """Build contexts from a parsed extensions.conf.

    Raises :class:`ConfError` for a ``same`` without a preceding ``exten``,
    a priority that does not follow on, a repeated label, or an
    application that does not parse.
    """
    contexts: dict[str, Context] = {}
    globals_: dict[str, str] = {}
    for section in conf.sections:
        if section.name == "globals":
            for e in section.entries:
                globals_[e.key] = e.value
            continue
        if section.name in _SPECIAL_SECTIONS:
            continue
        ctx = contexts.setdefault(section.name, Context(section.name))
        current: str | None = None
        for e in section.entries:
            key = e.key.lower()
            if key == "include":
                ctx.includes.append(e.value)
                continue
            if key not in ("exten", "same"):
                raise ConfError(f"line {e.lineno}: unexpected {e.key!r} in context [{ctx.name}]")
            if key == "exten":
                parts = _depth_split(e.value, ",", maxsplit=2)
                if len(parts) != 3:
                    raise ConfError(f"line {e.lineno}: exten needs <ext>,<prio>,<app>: {e.value!r}")
                current, prio_text, app_text = (p.strip() for p in parts)
            else:
                if current is None:
                    raise ConfError(f"line {e.lineno}: 'same' without a preceding 'exten'")
                parts = _depth_split(e.value, ",", maxsplit=1)
                if len(parts) != 2:
                    raise ConfError(f"line {e.lineno}: same needs <prio>,<app>: {e.value!r}")
                prio_text, app_text = (p.strip() for p in parts)
            m = _PRIO.match(prio_text)
            if not m or m.group("prio") in ("same", "hint"):
                raise ConfError(f"line {e.lineno}: bad priority {prio_text!r}")
            prios = ctx.extensions.setdefault(current, [])
            if m.group("prio") == "n":
                if not prios:
                    raise ConfError(f"line {e.lineno}: priority 'n' before priority 1")
                number = prios[-1].number + 1
            else:
                number = int(m.group("prio"))
                expected = prios[-1].number + 1 if prios else 1
                if number != expected:
                    raise ConfError(
                        f"line {e.lineno}: priority {number} of {current}@{ctx.name},"
                        f" expected {expected}"
                    )
            label = m.group("label")
            if label and any(p.label == label for p in prios):
                raise ConfError(f"line {e.lineno}: label {label!r} repeated in {current}")
            try:
                app, args = parse_app(app_text)
            except ConfError as exc:
                raise ConfError(f"line {e.lineno}: {exc}") from exc
            prios.append(Priority(ctx.name, current, number, label, app, args, e.lineno))
    return Dialplan(contexts=contexts, globals=globals_)


def exten_matches(pattern: str, exten: str) -> bool:
    """Return whether the extension pattern ``pattern`` (``_X.``, ``_[+0-9].``) matches ``exten``."""
    if not pattern.startswith("_"):
        return pattern == exten
    out = []
    i = 1
    while i < len(pattern):
        c = pattern[i]
        if c in "Xx":
            out.append("[0-9]")
        elif c in "Zz":
            out.append("[1-9]")
        elif c in "Nn":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            end = pattern.index("]", i)
            body = pattern[i + 1 : end]
            out.append("[" + "".join(ch if ch == "-" else re.escape(ch) for ch in body) + "]")
            i = end
        elif c == "-":
            pass  # dashes are ignored in patterns (_555-1234)
        else:
            out.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(out), exten) is not None


def goto_targets(prio: Priority) -> list[tuple[str | None, str | None, str]]:
    """Return the (context, exten, priority-or-label) targets of a Goto-like priority.

    ``None`` means "the current one".  Covers Goto, GotoIf, Gosub, GosubIf;
    other applications have no targets.  Raises :class:`ConfError` for a
    target with more than three parts.
    """
    app = prio.app.lower()
    if app in ("goto", "gosub"):
        labels = [prio.args]
    elif app in ("gotoif", "gosubif"):
        parts = _depth_split(prio.args, "?", maxsplit=1)
        if len(parts) != 2:
            raise ConfError(f"line {prio.lineno}: {prio.app} without '?': {prio.args!r}")
        labels = [t for t in _depth_split(parts[1], ":", maxsplit=1) if t.strip()]
    else:
        return []
    targets: list[tuple[str | None, str | None, str]] = []
    for label in labels:
        # Gosub(ctx,exten,prio(arg1,arg2)): arguments are not part of the target.
        bits = split_args(re.sub(r"\(.*\)$", "", label.strip()))
        if len(bits) == 1:
            targets.append((None, None, bits[0]))
        elif len(bits) == 2:
            targets.append((None, bits[0], bits[1]))
        elif len(bits) == 3:
            targets.append((bits[0], bits[1], bits[2]))
        else:
            raise ConfError(f"line {prio.lineno}: bad target {label!r}")
    return targets


# --- a tiny dialplan walker ----------------------------------------------------


@dataclass(frozen=True)
class Step:
    context: str
    exten: str
    number: int
    app: str
    args: str  # after variable substitution
    in_handler: bool = False  # run by a hangup handler, after the channel is gone


_VAR = re.compile(r"\$\{([^${}]*)\}")
_FUNC = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*)\((?P<args>.*)\)$")
_COMPARE = re.compile(r'^\s*"(?P<a>[^"]*)"\s*(?P<op>=|!=)\s*"(?P<b>[^"]*)"\s*$')
_TERMINAL = {"hangup", "busy", "congestion"}


def _substitute(text: str, variables: Mapping[str, str], env: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${ENV(X)}``; other functions read as empty."""
    while True:
        m = _VAR.search(text)
        if not m:
            return text
        inner = m.group(1)
        func = _FUNC.match(inner)
        if func:
            value = env.get(func.group("args"), "") if func.group("name") == "ENV" else ""
        else:
            value = variables.get(inner, "")
        text = text[: m.start()] + value + text[m.end() :]


def _condition(expr: str) -> bool:
    """Evaluate ``$["a" = "b"]`` / ``$["a" != "b"]`` (already substituted)."""
    m = re.fullmatch(r"\s*\$\[(.*)\]\s*", expr, re.DOTALL)
    if not m:
        raise ConfError(f"condition is not a $[...] expression: {expr!r}")
    cmp = _COMPARE.match(m.group(1))
    if not cmp:
        raise ConfError(f"condition outside the supported subset: {expr!r}")
    equal = cmp.group("a") == cmp.group("b")
    return equal if cmp.group("op") == "=" else not equal


def _jump(plan: Dialplan, ctx_name: str, ext: str, where: str) -> tuple[str, str, list[Priority], int]:
    if ctx_name not in plan:
        raise ConfError(f"jump to missing context [{ctx_name}]")
    found = plan[ctx_name].find(ext)
    if found is None:
        raise ConfError(f"jump to missing extension {ext}@{ctx_name}")
    matches = [i for i, p in enumerate(found) if p.label == where or str(p.number) == where]
    if not matches:
        raise ConfError(f"jump to missing priority {where!r} in {ext}@{ctx_name}")
    return ctx_name, ext, found, matches[0]


def _target(text: str, ctx_name: str, ext: str) -> tuple[str, str, str, list[str]]:
    """``[[ctx,]exten,]prio[(arg1,...)]`` -> (ctx, exten, prio, args)."""
    args: list[str] = []
    m = re.fullmatch(r"(?P<target>[^(]*)\((?P<args>.*)\)\s*", text, re.DOTALL)
    if m:
        text, args = m.group("target"), split_args(m.group("args"))
    bits = [b.strip() for b in split_args(text)]
    if len(bits) == 3:
        ctx_name, ext = bits[0], bits[1]
    elif len(bits) == 2:
        ext = bits[0]
    return ctx_name, ext, bits[-1], args


def run(
    plan: Dialplan,
    context: str,
    exten: str,
    *,
    agi: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    settle: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    max_steps: int = 200,
) -> list[Step]:
    """Walk ``exten@context`` from priority 1 and return the priorities executed,
    then the hangup handlers the walk pushed (``CHANNEL(hangup_handler_push)``),
    last pushed first, as Asterisk runs them once the channel is gone.

    ``agi`` is what an AGI() call leaves behind (``AGISTATUS``, maybe
    ``IVR_RESULT``, ``IVR_HOLD``, ``DIALSTATUS``); ``AGISTATUS=HANGUP`` ends the
    walk there, as the channel is gone. ``settle`` is what an AGI() of the settle
    route (``…/settle``) leaves (default: reached, hold cleared). ``variables``
    are channel variables at the start (``UNIQUEID``, ``EPOCH``). ``env`` is the
    Asterisk process environment for ``ENV()``. Gosub/Return are followed. The
    walk ends at Hangup/Busy/Congestion or when the extension runs out
    (autofallthrough). Raises :class:`ConfError` for a jump to a missing target
    or a condition outside the supported subset.
    """
    env = env or {}
    settle = {"AGISTATUS": "SUCCESS", "IVR_HOLD": ""} if settle is None else settle
    chan: dict[str, str] = dict(plan.globals)
    chan.update(variables or {})
    chan["EXTEN"] = exten
    steps: list[Step] = []
    handlers: list[str] = []
    budget = [max_steps]

    def walk(ctx_name: str, ext: str, prios: list[Priority], index: int, arguments: list[str],
             *, in_handler: bool) -> str:
        """Run until Return ("return"), a terminal application or the end ("end")."""
        stack: list[tuple[str, str, list[Priority], int, list[str]]] = []
        local = {f"ARG{n}": a for n, a in enumerate(arguments, start=1)}
        while True:
            budget[0] -= 1
            if budget[0] < 0:
                raise ConfError(f"more than {max_steps} steps from {exten}@{context}: a loop?")
            if index >= len(prios):
                return "end"  # autofallthrough: the call is hung up
            prio = prios[index]
            args = _substitute(prio.args, {**chan, **local, "EXTEN": ext}, env)
            steps.append(Step(ctx_name, ext, prio.number, prio.app, args, in_handler))
            app = prio.app.lower()
            if app in _TERMINAL and not in_handler:
                return "end"
            if app == "set":
                name, _, value = args.partition("=")
                name = name.strip()
                if name.upper() == "CHANNEL(HANGUP_HANDLER_PUSH)":
                    handlers.append(value)
                elif value:
                    chan[name] = value
                else:
                    chan.pop(name, None)
            elif app in ("agi", "eagi"):
                chan.pop("IVR_RESULT", None)
                url = split_args(args)[0] if args else ""
                result = settle if url.rstrip("/").endswith("/settle") else agi
                chan.update(result)
                if result.get("AGISTATUS") == "HANGUP" and not in_handler:
                    return "end"
            elif app == "gosub":
                stack.append((ctx_name, ext, prios, index + 1, list(local.values())))
                c, e, where, sub_args = _target(args, ctx_name, ext)
                ctx_name, ext, prios, index = _jump(plan, c, e, where)
                local = {f"ARG{n}": a for n, a in enumerate(sub_args, start=1)}
                continue
            elif app == "return":
                if not stack:
                    return "return"
                ctx_name, ext, prios, index, back = stack.pop()
                local = {f"ARG{n}": a for n, a in enumerate(back, start=1)}
                continue
            elif app in ("goto", "gotoif"):
                if app == "gotoif":
                    cond, _, branches = args.partition("?")
                    choices = _depth_split(branches, ":", maxsplit=1) + [""]
                    target = choices[0] if _condition(cond) else choices[1]
                    if not target.strip():
                        index += 1
                        continue
                else:
                    target = args
                c, e, where, _ = _target(target, ctx_name, ext)
                ctx_name, ext, prios, index = _jump(plan, c, e, where)
                continue
            index += 1

    prios = plan[context].find(exten)
    if prios is None:
        raise ConfError(f"no extension {exten!r} in [{context}]")
    walk(context, exten, prios, 0, [], in_handler=False)
    while handlers:  # the channel is gone: its hangup handlers run, last pushed first
        c, e, where, args = _target(handlers.pop(), context, exten)
        ctx_name, ext, found, index = _jump(plan, c, e, where)
        walk(ctx_name, ext, found, index, args, in_handler=True)
    return steps
