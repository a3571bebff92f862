"""Deployment files agree with each other and with the engine.

Covers docker-compose.yml, Dockerfile, .dockerignore, deploy/prometheus.yml and
the Asterisk drop-in configs in asterisk-conf/.  Nothing here needs Docker or
Asterisk: the files are read, parsed (tests/asterisk_conf.py reads .conf files
the way Asterisk's config parser does) and cross-checked.  The dialplan's
fail-closed behaviour is checked by walking [prepaid-in] for each outcome the
recorded transcripts show (../shared/asterisk-transcripts: d1, d6, b4k).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.asterisk_conf import (
    ConfFile,
    Dialplan,
    Priority,
    dialplan,
    exten_matches,
    goto_targets,
    parse,
    parse_app,
    run,
    split_args,
)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "asterisk-conf"
TRANSCRIPTS = REPO.parent / "shared" / "asterisk-transcripts"

# The defaults `ivr serve` uses for its ports, in ONE place.  Literal, so these
# deployment checks do not depend on the engine's code; when `ivr.settings` can
# be imported, test_engine_default_ports_match_ivr_settings compares them with
# its Settings defaults (switch to reading them from there once it has landed).
# Everything else here (compose, Prometheus, dialplan) is checked against the
# Dockerfile's ENV, and that against these.  4573 is also res_agi's AGI_PORT.
ENGINE_DEFAULT_PORTS = {"IVR_PORT": 4573, "IVR_METRICS_PORT": 9102}

ENGINE_SERVICE = "engine"

# [ivr-stamp] exactly as recorded in b4k_dial_talk_stamp.txt: the engine dials
# with U(ivr-stamp^<agi_channel>) and reads SHARED(IVR_ANSWERED) afterwards.
IVR_STAMP = [
    "exten => s,1,Set(SHARED(IVR_ANSWERED,${ARG1})=${STRFTIME(,,%s.%3q)})",
    "same => n,Return()",
]


# --- fixtures / helpers ----------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load_yaml(REPO / "docker-compose.yml")
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _dockerfile_instructions(REPO / "Dockerfile")


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (instr, _) in enumerate(instructions) if instr == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1] :]


@pytest.fixture(scope="module")
def docker_env(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    """ENV of the runtime stage of the Dockerfile."""
    env: dict[str, str] = {}
    for instr, args in _final_stage(dockerfile):
        if instr != "ENV":
            continue
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"use ENV KEY=value, not the legacy form: ENV {args}"
            env[key] = value
    return env


@pytest.fixture(scope="module")
def engine_ports(docker_env: dict[str, str]) -> dict[str, int]:
    return {key: int(docker_env[key]) for key in ENGINE_DEFAULT_PORTS}


def _conf(name: str) -> ConfFile:
    return parse((CONF_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def extensions() -> ConfFile:
    return _conf("extensions.conf")


@pytest.fixture(scope="module")
def plan(extensions: ConfFile) -> Dialplan:
    return dialplan(extensions)


@pytest.fixture(scope="module")
def pjsip() -> ConfFile:
    return _conf("pjsip.conf")


def _bind_mounts(services: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(service, host path, container path, mode) of every bind mount."""
    mounts = []
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            if isinstance(vol, dict):
                if vol.get("type") == "bind":
                    mode = "ro" if vol.get("read_only") else "rw"
                    mounts.append((name, vol["source"], vol["target"], mode))
                continue
            parts = str(vol).split(":")
            if parts[0].startswith((".", "/", "~")):
                mode = parts[2] if len(parts) > 2 else "rw"
                mounts.append((name, parts[0], parts[1], mode))
    return mounts


def _image_tag_is_pinned(image: str) -> bool:
    """A specific release: name:X.Y[...] or a digest; never latest/stable/a bare major."""
    if "@sha256:" in image:
        return True
    _, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return False
    return tag not in ("latest", "stable") and re.search(r"\d+\.\d+", tag) is not None


# --- docker-compose.yml -------------------------------------------------------------


def test_compose_has_the_three_services(services: dict[str, dict[str, Any]]) -> None:
    assert {ENGINE_SERVICE, "asterisk", "prometheus"} <= set(services)


def test_every_bind_mounted_host_path_exists(services: dict[str, dict[str, Any]]) -> None:
    mounts = _bind_mounts(services)
    assert mounts, "expected bind mounts of asterisk-conf/ and deploy/"
    missing = [f"{svc}: {src}" for svc, src, _, _ in mounts if not (REPO / src).exists()]
    assert not missing, f"bind-mounted paths missing from the repository: {missing}"


def test_bind_mounts_are_read_only(services: dict[str, dict[str, Any]]) -> None:
    # The Asterisk image's entrypoint chowns its config and data directories:
    # a writable bind mount would let it change files in the repository.
    writable = [f"{svc}: {src}" for svc, src, _, mode in _bind_mounts(services) if "ro" not in mode]
    assert not writable


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.get("source") if isinstance(vol, dict) else str(vol).split(":")[0]
            if source and not str(source).startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source!r} not declared"


def test_build_contexts_have_their_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = {name: svc["build"] for name, svc in services.items() if "build" in svc}
    assert ENGINE_SERVICE in built
    for name, build in built.items():
        context, dockerfile_name = (
            (build, "Dockerfile")
            if isinstance(build, str)
            else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        )
        assert (REPO / context / dockerfile_name).is_file(), (
            f"{name}: no {context}/{dockerfile_name}"
        )
        assert (REPO / context / ".dockerignore").is_file(), (
            f"{name}: no .dockerignore in {context}"
        )


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc}
    assert {"asterisk", "prometheus"} <= set(images)
    loose = {name: image for name, image in images.items() if not _image_tag_is_pinned(image)}
    assert not loose, f"pin a release tag (not latest/stable/a major): {loose}"


def test_dockerfile_base_images_are_pinned(dockerfile: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for instr, args in dockerfile if instr == "FROM"]
    assert bases
    for base in bases:
        assert base.startswith("python:3.11"), base
        assert _image_tag_is_pinned(base), base


def test_engine_database_lives_in_a_named_volume(
    services: dict[str, dict[str, Any]],
    dockerfile: list[tuple[str, str]],
    docker_env: dict[str, str],
) -> None:
    volume_dirs = [
        d
        for instr, args in _final_stage(dockerfile)
        if instr == "VOLUME"
        for d in (yaml.safe_load(args) if args.startswith("[") else args.split())
    ]
    db = docker_env["IVR_DATABASE"]
    secret = docker_env["IVR_SECRET_FILE"]
    data_dir = next(d for d in volume_dirs if db.startswith(d.rstrip("/") + "/"))
    # The secret persists too, but apart from the database: one backup must not hold both.
    secret_dir = next(d for d in volume_dirs if secret.startswith(d.rstrip("/") + "/"))
    assert secret_dir != data_dir, "the secret must not live in the database's volume"
    targets = {
        str(v).split(":")[1]
        for v in services[ENGINE_SERVICE].get("volumes", [])
        if isinstance(v, str)
    }
    assert data_dir in targets, f"mount a named volume at {data_dir}"
    assert secret_dir in targets, f"mount a named volume at {secret_dir}"


def compose_networks_default_ipam(services: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    compose = _load_yaml(REPO / "docker-compose.yml")
    return list(((compose.get("networks") or {}).get("default") or {}).get("ipam", {}).get("config", []))


def test_engine_environment_agrees_with_the_dockerfile(
    services: dict[str, dict[str, Any]], docker_env: dict[str, str]
) -> None:
    env = services[ENGINE_SERVICE].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    merged = {**docker_env, **{k: str(v) for k, v in env.items()}}
    assert merged["IVR_HOST"] == "0.0.0.0"
    # Listening everywhere is paired with allowed_peers: loopback in the image, the compose
    # network's subnet here, and nothing wider.
    import ipaddress

    assert docker_env["IVR_ALLOWED_PEERS"] == "127.0.0.0/8,::1"
    subnets = {ipaddress.ip_network(c["subnet"])
               for c in compose_networks_default_ipam(services)}
    allowed = {ipaddress.ip_network(p.strip()) for p in merged["IVR_ALLOWED_PEERS"].split(",")}
    assert allowed - subnets <= {ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")}, allowed
    assert subnets and subnets <= allowed
    assert merged["IVR_METRICS_HOST"] == "0.0.0.0"
    for key, default in ENGINE_DEFAULT_PORTS.items():
        assert int(merged[key]) == default, key
    # FastAGI must never be published on the host: whoever connects plays Asterisk.
    published = [str(p) for p in services[ENGINE_SERVICE].get("ports", [])]
    assert not any(str(ENGINE_DEFAULT_PORTS["IVR_PORT"]) in p for p in published), published


def test_asterisk_reaches_the_engine_service(
    services: dict[str, dict[str, Any]], engine_ports: dict[str, int]
) -> None:
    env = services["asterisk"].get("environment") or {}
    assert env.get("IVR_ENGINE") == f"{ENGINE_SERVICE}:{engine_ports['IVR_PORT']}"


def test_asterisk_gets_the_configs_and_the_prompts(services: dict[str, dict[str, Any]]) -> None:
    mounts = {dst: src for svc, src, dst, _ in _bind_mounts(services) if svc == "asterisk"}
    for name in ("extensions.conf", "pjsip.conf", "manager.conf", "modules.conf"):
        assert mounts.get(f"/etc/asterisk/{name}") == f"./asterisk-conf/{name}", name
    assert mounts.get("/var/lib/asterisk/sounds") == "./prompts/sounds"


# --- Dockerfile / .dockerignore -----------------------------------------------------------


def test_engine_default_ports_match_ivr_settings() -> None:
    # Cross-check of ENGINE_DEFAULT_PORTS against the engine, where it exists.
    settings = pytest.importorskip("ivr.settings")
    defaults = settings.Settings()
    assert ENGINE_DEFAULT_PORTS == {
        "IVR_PORT": defaults.port,
        "IVR_METRICS_PORT": defaults.metrics_port,
    }


def test_dockerfile_matches_the_engine_defaults(
    dockerfile: list[tuple[str, str]], docker_env: dict[str, str], engine_ports: dict[str, int]
) -> None:
    assert engine_ports == ENGINE_DEFAULT_PORTS
    assert docker_env["IVR_HOST"] == "0.0.0.0"
    assert docker_env["IVR_METRICS_HOST"] == "0.0.0.0"
    final = _final_stage(dockerfile)
    exposed = {p.split("/")[0] for instr, args in final if instr == "EXPOSE" for p in args.split()}
    assert {str(p) for p in engine_ports.values()} <= exposed
    users = [args for instr, args in final if instr == "USER"]
    assert users and users[-1] not in ("root", "0"), "run the engine as a non-root user"
    cmd = [args for instr, args in final if instr == "CMD"]
    assert cmd and yaml.safe_load(cmd[-1]) == ["ivr", "serve"], "exec form, so SIGTERM reaches ivr"


def test_dockerfile_copies_every_package(dockerfile: list[tuple[str, str]]) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {
        src.rstrip("/")
        for instr, args in dockerfile
        if instr == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    assert packages <= copied, f"Dockerfile does not COPY {sorted(packages - copied)}"
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied


def test_dockerignore_keeps_secrets_out_but_not_the_package(
    dockerfile: list[tuple[str, str]],
) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)

    # The database (and its WAL) and the PIN-hashing secret (default
    # <database>.secret) must never end up in an image layer.
    for path in (".git", ".venv", "ivr.sqlite3", "ivr.sqlite3-wal", "ivr.sqlite3.secret"):
        assert ignored(path), path
    copied = {
        src.rstrip("/")
        for instr, args in dockerfile
        if instr == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    }
    assert not [src for src in copied if ignored(src)], "a COPY source is ignored"


# --- deploy/prometheus.yml --------------------------------------------------------------------


def test_prometheus_scrapes_the_engine_metrics_port(
    services: dict[str, dict[str, Any]], engine_ports: dict[str, int]
) -> None:
    mounts = {dst: src for svc, src, dst, _ in _bind_mounts(services) if svc == "prometheus"}
    assert mounts.get("/etc/prometheus/prometheus.yml") == "./deploy/prometheus.yml"
    config = _load_yaml(REPO / "deploy" / "prometheus.yml")
    # The alert rules (PIN guessing, unlisted peers) are mounted where rule_files says.
    assert mounts.get("/etc/prometheus/alerts.yml") == "./deploy/prometheus-alerts.yml"
    assert config.get("rule_files") == ["/etc/prometheus/alerts.yml"]
    rules = _load_yaml(REPO / "deploy" / "prometheus-alerts.yml")
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for metric in ("ivr_pin_failures_total", "ivr_pin_throttled_total", "ivr_agi_peers_refused_total"):
        assert metric in exprs, metric
        assert metric in (REPO / "ivr" / "metrics.py").read_text(), metric
    wanted = f"{ENGINE_SERVICE}:{engine_ports['IVR_METRICS_PORT']}"
    jobs = [
        job
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        if wanted in static.get("targets", [])
    ]
    assert jobs, f"no scrape job targets {wanted}"
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)


# --- asterisk-conf/extensions.conf -----------------------------------------------------------------


def test_all_confs_parse() -> None:
    for path in sorted(CONF_DIR.glob("*.conf")) + sorted((REPO / "deploy").rglob("*.conf")):
        parse(path.read_text(encoding="utf-8"))  # raises on a line Asterisk would refuse


def test_contexts_exist(plan: Dialplan, extensions: ConfFile) -> None:
    assert extensions.named("globals")
    for name in ("prepaid-in", "ivr-stamp", "prepaid-service"):
        assert name in plan, name
    assert "h" in plan["prepaid-in"].extensions


def test_access_numbers_match_prepaid_in(plan: Dialplan) -> None:
    # E.164 with "+" (a5: the "+" is kept in agi_extension) and national format.
    for number in ("+4930123456", "08005550100", "8005550100"):
        assert plan["prepaid-in"].find(number), number
    assert exten_matches("_[+0-9].", "+4915112345678")
    assert not exten_matches("_[+0-9].", "s")


def test_ivr_stamp_is_b4k_plus_the_end_stamp(extensions: ConfFile) -> None:
    from ivr import dialplan as names

    (section,) = extensions.named(names.STAMP_CONTEXT)
    lines = [f"{e.key} => {e.value}" for e in section.entries]
    # b4k's answer stamp, then the callee's hangup handler that stamps the end.
    assert lines == [IVR_STAMP[0],
                     f"same => n,Set(CHANNEL(hangup_handler_push)={names.STAMP_END_CONTEXT},s,1(${{ARG1}}))",
                     IVR_STAMP[1]]
    (end,) = extensions.named(names.STAMP_END_CONTEXT)
    assert [f"{e.key} => {e.value}" for e in end.entries] == [
        IVR_STAMP[0].replace(names.ANSWERED_STAMP, names.ENDED_STAMP), IVR_STAMP[1]]


def test_ivr_stamp_constant_matches_the_transcript() -> None:
    path = TRANSCRIPTS / "b4k_dial_talk_stamp.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (shared/ lives beside the repository)")
    header = [
        line.lstrip("#").strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("#") and ("exten =>" in line or "same =>" in line)
    ]
    assert header == IVR_STAMP


def _agi_calls(plan: Dialplan, context: str) -> list[Priority]:
    return [p for prios in plan[context].extensions.values() for p in prios if p.app == "AGI"]


def test_agi_url_uses_the_engine_port_and_the_prepaid_script(
    plan: Dialplan, engine_ports: dict[str, int]
) -> None:
    (agi,) = _agi_calls(plan, "prepaid-in")
    url, *args = split_args(agi.args)
    assert url == "agi://${IVR_ENGINE}/prepaid"
    assert args == ["${EXTEN}"]
    host, _, port = plan.globals["IVR_ENGINE"].rpartition(":")
    assert host and int(port) == engine_ports["IVR_PORT"]
    # The SRV variant runs the same script; its port comes from the SRV records.
    (hagi,) = _agi_calls(plan, "prepaid-in-srv")
    assert re.fullmatch(r"hagi://[^:/]+/prepaid", split_args(hagi.args)[0])


def test_prepaid_in_does_not_answer(plan: Dialplan) -> None:
    # Answering makes the call billable for the caller: that is the engine's decision.
    prios = plan["prepaid-in"].find("+4930123456")
    assert prios is not None
    before_agi = prios[: next(i for i, p in enumerate(prios) if p.app == "AGI")]
    assert not [p for p in before_agi if p.app in ("Answer", "Playback", "Background")]


def test_every_jump_target_exists(plan: Dialplan) -> None:
    for prio in plan.priorities():
        for context, exten, where in goto_targets(prio):
            ctx = plan[context] if context else plan[prio.context]
            assert context is None or context in plan, f"line {prio.lineno}: no [{context}]"
            name = exten or prio.exten
            if "${" in name:  # e.g. Goto(prepaid-in,${EXTEN},checks): any access number
                prios = ctx.find("+4930123456")
            else:
                prios = ctx.find(name)
            assert prios, f"line {prio.lineno}: no extension {name} in [{ctx.name}]"
            assert any(p.label == where or str(p.number) == where for p in prios), (
                f"line {prio.lineno}: no priority {where!r} in {name}@{ctx.name}"
            )


def test_both_agistatus_and_ivr_result_are_checked(plan: Dialplan) -> None:
    conditions = [
        split_args(p.args)[0]
        for prios in plan["prepaid-in"].extensions.values()
        for p in prios
        if p.app == "GotoIf"
    ]
    assert any("${AGISTATUS}" in c and "FAILURE" in c for c in conditions)
    assert any("${IVR_RESULT}" in c and "error" in c for c in conditions)


UNAVAILABLE = "ivr/service-unavailable"

# What the dialplan sees after AGI() returns (AGISTATUS from res_agi, IVR_RESULT
# set by the engine) and whether the caller must hear the announcement.
OUTCOMES = {
    # d1: nothing listening -> AGISTATUS=FAILURE, dialplan continues.
    "engine_unreachable": ({"AGISTATUS": "FAILURE"}, True),
    # internal fault: IVR_RESULT=error, close without HANGUP.
    "engine_error": ({"AGISTATUS": "SUCCESS", "IVR_RESULT": "error"}, True),
    # d2/d3: the engine went away without a result (crash, restart).
    "engine_closed_without_result": ({"AGISTATUS": "SUCCESS"}, True),
    # b2: a missing prompt turns AGISTATUS into FAILURE even though the session went on.
    "failure_with_error_result": ({"AGISTATUS": "FAILURE", "IVR_RESULT": "error"}, True),
    # Normal results that, exceptionally, came without HANGUP: end quietly.
    "ok_without_hangup": ({"AGISTATUS": "SUCCESS", "IVR_RESULT": "ok"}, False),
    "rejected_without_hangup": ({"AGISTATUS": "SUCCESS", "IVR_RESULT": "rejected"}, False),
}


@pytest.mark.parametrize("context", ["prepaid-in", "prepaid-in-srv"])
@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_fail_closed(plan: Dialplan, context: str, outcome: str) -> None:
    agi, announce = OUTCOMES[outcome]
    steps = [s for s in run(plan, context, "+4930123456", agi=agi) if not s.in_handler]
    apps = [s.app for s in steps]
    played = [s.args for s in steps if s.app == "Playback"]
    assert apps[-1] in ("Hangup", "Busy", "Congestion"), apps
    if announce:
        assert played and played[0].split(",")[0] == UNAVAILABLE, apps
        # Early media: the dialplan must not answer (the caller is not billed).
        assert "Answer" not in apps and "noanswer" in played[0].split(",")[1:]
    else:
        assert not played, apps


def test_engine_hangup_ends_the_dialplan(plan: Dialplan) -> None:
    # d6: HANGUP then close -> AGISTATUS=HANGUP, only the h extension runs.
    steps = [s for s in run(plan, "prepaid-in", "+4930123456", agi={"AGISTATUS": "HANGUP"}) if not s.in_handler]
    assert steps[-1].app == "AGI"


def test_ivr_engine_environment_overrides_globals(plan: Dialplan) -> None:
    def url(env: dict[str, str]) -> str:
        steps = run(plan, "prepaid-in", "8005550100", agi={"AGISTATUS": "HANGUP"}, env=env)
        return [s for s in steps if not s.in_handler][-1].args

    assert url({}) == f"agi://{plan.globals['IVR_ENGINE']}/prepaid,8005550100"
    assert url({"IVR_ENGINE": "engine:4573"}) == "agi://engine:4573/prepaid,8005550100"


def test_dialplan_prompts_exist_in_every_language(plan: Dialplan) -> None:
    sounds = REPO / "prompts" / "sounds"
    prompts = {
        split_args(p.args)[0]
        for p in plan.priorities()
        if p.app == "Playback" and split_args(p.args)[0].startswith("ivr/")
    }
    assert prompts == {UNAVAILABLE}
    languages = sorted(d for d in sounds.glob("*") if d.is_dir()) if sounds.is_dir() else []
    assert languages, f"no built prompts under {sounds.relative_to(REPO)}/<lang>/"
    missing = [
        f"{lang.name}/{prompt}.wav"
        for lang in languages
        for prompt in prompts
        if not (lang / f"{prompt}.wav").is_file()
    ]
    assert not missing, missing


# --- modules.conf, manager.conf, pjsip.conf --------------------------------------------------

# Where the applications and functions used in extensions.conf come from;
# None = built into the core (pbx_builtins, pbx_variables, core_local).
APP_MODULES: dict[str, str | None] = {
    "AGI": "res_agi.so",
    "Dial": "app_dial.so",
    "Playback": "app_playback.so",
    "Return": "app_stack.so",
    "Gosub": "app_stack.so",
    "NoOp": None,
    "Set": None,
    "Goto": None,
    "GotoIf": None,
    "Progress": None,
    "Hangup": None,
    "Busy": None,
    "Congestion": None,
}
FUNCTION_MODULES = {
    "SHARED": "func_global.so",
    "STRFTIME": "func_strings.so",
    "ENV": "func_env.so",
    "CALLERID": "func_callerid.so",
    "CDR": "func_cdr.so",
    "CHANNEL": "func_channel.so",
    "DB": "func_db.so",
}


def test_modules_conf_requires_what_the_dialplan_uses(plan: Dialplan) -> None:
    conf = _conf("modules.conf")
    (section,) = conf.named("modules")
    allowed = {"autoload", "preload", "preload-require", "load", "require", "noload"}
    # loader.c stops at any other key ("Unknown configuration option").
    assert {e.key for e in section.entries} <= allowed
    assert section.get("autoload") == "yes"
    required = set(section.getall("require"))
    # Dial U() needs app_stack; the engine reads CDR(answer,u) (b4k).
    assert {"app_stack.so", "func_cdr.so"} <= required
    for prio in plan.priorities():
        assert prio.app in APP_MODULES, f"line {prio.lineno}: add {prio.app} to APP_MODULES"
        module = APP_MODULES[prio.app]
        assert module is None or module in required, f"{prio.app}: require {module}"
        written = re.findall(r"^([A-Z_]+)\(", prio.args) if prio.app == "Set" else []  # Set(DB(...)=...)
        for func in re.findall(r"\$\{([A-Z_]+)\(", prio.args) + written:
            assert FUNCTION_MODULES[func] in required, f"{func}: require {FUNCTION_MODULES[func]}"
    assert not required & set(section.getall("noload"))


def test_manager_is_loopback_only_with_minimal_rights() -> None:
    conf = _conf("manager.conf")
    (general,) = conf.named("general")
    assert general.get("enabled") == "yes"
    assert general.get("bindaddr") == "127.0.0.1"
    assert general.get("webenabled") == "no"
    users = [s for s in conf.sections if s.name != "general"]
    assert [u.name for u in users] == ["ivr-engine"]
    (user,) = users
    assert user.getall("deny") == ["0.0.0.0/0.0.0.0"]
    assert user.getall("permit") == ["127.0.0.1/255.255.255.255"]
    read = set((user.get("read") or "").split(","))
    write = set((user.get("write") or "").split(","))
    assert read <= {"call", "user", "cdr"}
    # system: DBGetTree/DBDel of the facts kept in AstDB (main/db.c registers them so)
    assert "call" in write and write <= {"call", "reporting", "system", "originate"}


def test_pjsip_endpoints_land_in_existing_contexts(pjsip: ConfFile, plan: Dialplan) -> None:
    endpoints = {s.name: s for s in pjsip.of_type("endpoint")}
    assert endpoints["carrier-trunk"].get("context") == "prepaid-in"
    for name, ep in endpoints.items():
        assert ep.get("context") in plan, f"{name}: context {ep.get('context')} missing"
        assert ep.get("dtmf_mode") == "rfc4733", f"{name}: the IVR needs RFC 4733 DTMF"


def test_pjsip_references_resolve(pjsip: ConfFile) -> None:
    names = {
        t: {s.name for s in pjsip.of_type(t)} for t in ("transport", "aor", "auth", "endpoint")
    }
    for ep in pjsip.of_type("endpoint"):
        assert ep.get("transport") in names["transport"], ep.name
        for aor in (ep.get("aors") or "").split(","):
            assert aor.strip() in names["aor"], f"{ep.name}: aor {aor}"
        for key in ("auth", "outbound_auth"):
            if ep.get(key):
                assert ep.get(key) in names["auth"], f"{ep.name}: {key}"
    for ident in pjsip.of_type("identify"):
        assert ident.get("endpoint") in names["endpoint"], ident.name
        assert ident.getall("match"), ident.name


def test_prepaid_service_dials_a_configured_endpoint(plan: Dialplan, pjsip: ConfFile) -> None:
    endpoints = {s.name for s in pjsip.of_type("endpoint")}
    dials = [
        p for prios in plan["prepaid-service"].extensions.values() for p in prios if p.app == "Dial"
    ]
    assert dials
    for dial in dials:
        for target in split_args(dial.args)[0].split("&"):
            tech, _, rest = target.partition("/")
            if tech == "PJSIP":
                assert rest.rpartition("@")[2] in endpoints, target


def test_parse_app_rejects_unbalanced_calls() -> None:
    with pytest.raises(ValueError):
        parse_app("Playback(ivr/foo")
    assert parse_app("Return()") == ("Return", "")


# --- no call lost: the settle route, the hangup handler, AstDB (issue 8) -------------------

HOLD = "r42 Local/100@prepaid-service/n"
CHANNEL_VARS = {"UNIQUEID": "1796193853.3", "EPOCH": "1796193860"}


def _settle_calls(steps: list[Any]) -> list[tuple[bool, str]]:
    return [(s.in_handler, s.args) for s in steps if s.app == "AGI" and "/settle" in s.args]


def _db_writes(steps: list[Any]) -> list[str]:
    return [s.args for s in steps if s.app == "Set" and s.args.startswith("DB(")]


def test_settle_names_agree_with_the_engine(plan: Dialplan) -> None:
    from ivr import dialplan as names

    assert names.SETTLE_CONTEXT in plan and names.STAMP_END_CONTEXT in plan
    (write,) = [p for p in plan.priorities() if p.app == "Set" and p.args.startswith("DB(")]
    assert write.context == names.SETTLE_CONTEXT
    assert write.args == f"DB({names.UNSETTLED_FAMILY}/${{UNIQUEID}})={names.UNSETTLED_VALUE}"
    pushes = [p.args for p in plan.priorities() if p.args.startswith("CHANNEL(hangup_handler_push)=")]
    assert f"CHANNEL(hangup_handler_push)={names.SETTLE_CONTEXT},s,1(hangup-handler,${{EXTEN}})" in pushes
    assert set(names.SETTLE_MODES) == {"after-agi", "hangup-handler"}


@pytest.mark.parametrize("context", ["prepaid-in", "prepaid-in-srv"])
def test_engine_died_during_the_dial_settle_route_after_agi(plan: Dialplan, context: str) -> None:
    # e1: AGI() returns SUCCESS after the Dial ran to its end; IVR_HOLD still set.
    agi = {"AGISTATUS": "SUCCESS", "IVR_HOLD": HOLD, "DIALSTATUS": "ANSWER"}
    steps = run(plan, context, "+4930123456", agi=agi, variables=CHANNEL_VARS)
    scheme = "agi://127.0.0.1:4573" if context == "prepaid-in" else "hagi://ivr.example.net"
    assert _settle_calls(steps) == [(False, f"{scheme}/settle,after-agi,+4930123456")]
    main = [s for s in steps if not s.in_handler]
    assert (main[-1].app, main[-1].args) == ("Hangup", "")  # the caller was connected: no announcement
    assert not [s for s in steps if s.app == "Playback"] and not _db_writes(steps)
    # The hangup handler runs afterwards and finds nothing left to do.
    assert [s.app for s in steps if s.in_handler] == ["GotoIf", "Return"]


def test_engine_died_before_the_callee_answered(plan: Dialplan) -> None:
    agi = {"AGISTATUS": "SUCCESS", "IVR_HOLD": HOLD, "DIALSTATUS": "BUSY"}
    steps = [s for s in run(plan, "prepaid-in", "+4930123456", agi=agi) if not s.in_handler]
    assert [s.args for s in steps if s.app == "Playback"] == [f"{UNAVAILABLE},noanswer"]
    assert (steps[-1].app, steps[-1].args) == ("Hangup", "41")


def test_caller_hung_up_while_the_engine_was_gone_hangup_handler_settles(plan: Dialplan) -> None:
    # e2: the channel is gone, only the hangup handler runs; it calls the settle route.
    agi = {"AGISTATUS": "HANGUP", "IVR_HOLD": HOLD, "DIALSTATUS": "ANSWER"}
    steps = run(plan, "prepaid-in", "+4930123456", agi=agi, variables=CHANNEL_VARS)
    assert _settle_calls(steps) == [(True, "agi://127.0.0.1:4573/settle,hangup-handler,+4930123456")]
    assert not _db_writes(steps)


def test_normal_end_leaves_the_hangup_handler_nothing(plan: Dialplan) -> None:
    # e3: the engine settled and cleared IVR_HOLD, then HANGUP: the handler returns at once.
    steps = run(plan, "prepaid-in", "+4930123456", agi={"AGISTATUS": "HANGUP", "IVR_HOLD": ""})
    assert [s.app for s in steps if s.in_handler] == ["GotoIf", "Return"]


@pytest.mark.parametrize("agistatus", ["SUCCESS", "HANGUP"])
def test_no_engine_answers_the_facts_go_to_astdb_once(plan: Dialplan, agistatus: str) -> None:
    from ivr.dialplan import parse_unsettled

    agi = {"AGISTATUS": agistatus, "IVR_HOLD": HOLD, "DIALSTATUS": "ANSWER", "ANSWEREDTIME_MS": "6505",
           "HANGUPCAUSE": "16"}
    steps = run(plan, "prepaid-in", "+4930123456", agi=agi, settle={"AGISTATUS": "FAILURE"},
                variables=CHANNEL_VARS)
    (write,) = _db_writes(steps)  # once, although both the Gosub and the handler may run
    key, _, value = write.partition("=")
    assert key == "DB(ivr-unsettled/1796193853.3)"
    facts = parse_unsettled(value)  # SHARED() and CDR() read as empty in this walker
    assert (facts.hold_id, facts.destination, facts.dial.status, facts.dial.answered_time_ms,
            facts.hangup_cause, facts.written_epoch) == (42, "Local/100@prepaid-service/n", "ANSWER", 6505,
                                                         "16", 1796193860)


def test_engine_unreachable_at_the_start_still_fails_closed_and_settles_nothing(plan: Dialplan) -> None:
    steps = run(plan, "prepaid-in", "+4930123456", agi={"AGISTATUS": "FAILURE"})
    main = [s for s in steps if not s.in_handler]
    assert (main[-1].app, main[-1].args) == ("Hangup", "41")
    assert not _settle_calls(steps)
