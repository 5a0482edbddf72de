"""The deploy files agree with the code: compose commands, settings, ports, the Dockerfile, livekit.yaml."""

from __future__ import annotations

import re
import shlex
import tomllib
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices

from orchestrator.api.secret_policy import check_served_secrets, is_loopback
from orchestrator.config import PROMPTS_DIR, REPO_ROOT, Settings

pytestmark = pytest.mark.unit

DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Variables compose sets that are not ours, each read by the program named.
THIRD_PARTY_ENV = {
    "HF_HUB_OFFLINE": "huggingface_hub: never fetch model files at run time",
    "PATH": "the shell: the image's virtualenv first",
    "PYTHONUNBUFFERED": "python: logs reach `docker logs` at once",
    "UV_COMPILE_BYTECODE": "uv (build stage)",
    "UV_LINK_MODE": "uv (build stage)",
    "UV_PYTHON_DOWNLOADS": "uv (build stage): use the image's Python",
    "POSTGRES_PASSWORD": "the postgres image",
    "POSTGRES_DB": "the postgres image",
    "LIVEKIT_KEYS": "livekit-server: `key: secret` pairs",
    "SIP_CONFIG_BODY": "livekit/sip: its whole YAML config",
    "SENTINEL_PORT": "the sentinels' own start command: the port each one listens on",
}
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# ---------------------------------------------------------------------- readers
@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def ours() -> dict[str, dict[str, Any]]:
    """The services that run the Switchboard image (they build it)."""
    return {name: svc for name, svc in services().items() if "build" in svc}


def expand(value: str) -> str:
    """Compose interpolation with stand-in values: defaults where given, else a long URL-safe placeholder."""

    def one(match: re.Match[str]) -> str:
        if match["op"] in {"-", ":-"}:
            return match["arg"]
        return f"test-{match['name'].lower().replace('_', '-')}-{'x' * 32}"

    return _INTERPOLATION.sub(one, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): expand(str(v)) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> set[str]:
    deps = service.get("depends_on") or []
    return set(deps)


@cache
def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of deploy/Dockerfile, continuation lines joined, comments dropped."""
    lines = [
        ln for ln in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), " ".join(args.split())))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (ins, _) in enumerate(steps) if ins == "FROM")
    return steps[last_from:]


def env_template() -> dict[str, str]:
    """The `.env` deploy/README.md tells operators to write (commented lines are the optional ones)."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    block = re.search(r"cat > \.env <<'X'\n(?P<body>.*?)\nX\n", readme, re.S)
    assert block is not None, "deploy/README.md lost its .env template"
    found = {}
    for line in block["body"].splitlines():
        for name, value in re.findall(r"(?:^|\s|#\s*)([A-Z][A-Z0-9_]+)=(\S*)", line):
            found[name] = value
    return found


class NotTheCli(Exception):
    """Arguments the `switchboard` CLI would refuse."""


@cache
def cli() -> Any:
    from orchestrator.cli import app

    # Typer's own (vendored) click: duck-typed here, so a typer upgrade does not break the check.
    return typer.main.get_command(app)


def parse_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``switchboard <args>`` the way the CLI would (no command runs): its path and its parameters.

    Raises:
        NotTheCli: Not a subcommand, or options it does not take.
    """
    command = cli()
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "list_commands"):  # a group: the next word names a subcommand
        if not rest or rest[0].startswith("-"):
            raise NotTheCli(f"`switchboard {' '.join(args)}` names no subcommand")
        sub = command.get_command(typer.Context(command), rest[0])
        if sub is None:
            raise NotTheCli(f"`switchboard {' '.join([*path, rest[0]])}` is not a command")
        path.append(rest.pop(0))
        command = sub
    try:
        ctx = command.make_context(" ".join(["switchboard", *path]), rest)
    except Exception as exc:  # noqa: BLE001 - click's UsageError family, whichever click typer vendors
        raise NotTheCli(f"`switchboard {' '.join(args)}`: {exc}") from exc
    return " ".join(path), dict(ctx.params)


def settings_env_names() -> set[str]:
    """Every environment variable Settings reads: ``SWITCHBOARD_<FIELD>`` or a field's aliases."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = set()
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def serve_params() -> dict[str, Any]:
    path, params = parse_cli(list(services()["api"]["command"]))
    assert path == "serve"
    return params


# ---------------------------------------------------------------------- compose ▸ image
def test_the_switchboard_services_build_deploy_dockerfile_from_the_repository_root() -> None:
    assert set(ours()) == {"api", "queue-worker", "agent-worker"}
    builds = {str(svc["build"]) for svc in ours().values()}
    assert len(builds) == 1, "the three services must run one image"
    for svc in ours().values():
        build = svc["build"]
        assert isinstance(build, dict), "a bare `build: ..` would look for ../Dockerfile, which does not exist"
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == REPO_ROOT
        assert (context / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    # BuildKit reads <Dockerfile>.dockerignore in place of a root .dockerignore.
    assert (DEPLOY / "Dockerfile.dockerignore").is_file()
    assert not (REPO_ROOT / "Dockerfile").exists()


def test_every_compose_command_is_a_switchboard_subcommand() -> None:
    entrypoint = [args for ins, args in final_stage() if ins == "ENTRYPOINT"]
    assert entrypoint == ['["switchboard"]'], "compose commands are arguments of the `switchboard` entry point"
    assert PYPROJECT["project"]["scripts"]["switchboard"] == "orchestrator.cli:main"
    seen = {}
    for name, svc in ours().items():
        command = svc["command"]
        assert isinstance(command, list), f"{name}: use the exec form, a list"
        seen[name], _ = parse_cli([str(a) for a in command])
    assert seen == {"api": "serve", "queue-worker": "worker", "agent-worker": "agent-worker"}


def test_the_commands_deploy_readme_runs_in_the_image_are_subcommands_too() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    runs = re.findall(r"docker compose run --rm api ([^\n#`]+)", readme)
    assert len(runs) >= 2
    for run in runs:
        parse_cli(shlex.split(run))


def test_a_command_that_is_not_the_clis_is_caught() -> None:
    with pytest.raises(NotTheCli):
        parse_cli(["switchboard", "serve"])  # the entry point is already `switchboard`
    with pytest.raises(NotTheCli):
        parse_cli(["worker", "--no-such-option"])
    with pytest.raises(NotTheCli):
        parse_cli(["users"])


# ---------------------------------------------------------------------- compose ▸ settings
def test_every_variable_compose_sets_is_a_setting_or_a_documented_third_party_one() -> None:
    known = settings_env_names()
    assert {
        "REDIS_URL",
        "DATABASE_URL",
        "LIVEKIT_URL",
        "SWITCHBOARD_AGENT_SLOTS",
        "SWITCHBOARD_CONSOLE_SECRET",
    } <= known
    unknown = {}
    for name, svc in services().items():
        allowed = known | set(THIRD_PARTY_ENV) if name in ours() else set(THIRD_PARTY_ENV)
        extra = set(environment(svc)) - allowed
        if extra:
            unknown[name] = sorted(extra)
    image_env = {
        m.group(1)
        for ins, args in dockerfile()
        if ins == "ENV"
        for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=", args)
    }
    if image_env - known - set(THIRD_PARTY_ENV):
        unknown["Dockerfile"] = sorted(image_env - known - set(THIRD_PARTY_ENV))
    assert unknown == {}


def test_the_environment_of_each_service_makes_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, svc in ours().items():
        with monkeypatch.context() as env:
            for key in settings_env_names():
                env.delenv(key, raising=False)
            for key, value in environment(svc).items():
                env.setenv(key, value)
            settings = Settings(_env_file=None)
            assert settings.redis_url == "redis://127.0.0.1:6379/0", name
            assert settings.sqlalchemy_url.startswith("postgresql+psycopg://"), name
            assert settings.livekit_url == "ws://127.0.0.1:7880", name
            # The secrets are required, so the API never runs on the public development defaults.
            serve = serve_params()
            assert check_served_secrets(settings, host=serve["host"]) == [], name


def test_every_interpolated_variable_is_in_the_env_template_of_deploy_readme() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    needed = {m["name"] for m in _INTERPOLATION.finditer(text) if m["op"] not in {"-", ":-"}}
    assert needed >= {"POSTGRES_PASSWORD", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "SWITCHBOARD_CONSOLE_SECRET"}
    assert needed - set(env_template()) == set()
    # Secrets without a default are required (`:?`): compose stops with the message rather than start weak.
    for m in _INTERPOLATION.finditer(text):
        if m["name"].endswith(("SECRET", "PASSWORD")):
            assert m["op"] == ":?", m.group(0)


def test_services_start_after_what_they_use() -> None:
    for name, svc in ours().items():
        env = environment(svc)
        needs = {"redis"} if "REDIS_URL" in env else set()
        needs |= {"postgres"} if "DATABASE_URL" in env else set()
        assert needs <= depends_on(svc), name
    assert "livekit" in depends_on(ours()["agent-worker"])


# ---------------------------------------------------------------------- ports and probes
def _healthcheck_url(svc: dict[str, Any]) -> Any:
    test = " ".join(svc["healthcheck"]["test"])
    match = re.search(r"https?://[^'\" ]+", test)
    assert match is not None, test
    return urlsplit(match.group(0))


def test_the_agent_worker_healthcheck_probes_its_readiness_port() -> None:
    svc = ours()["agent-worker"]
    env = environment(svc)
    port = int(env.get("SWITCHBOARD_AGENT_HEALTH_PORT", Settings.model_fields["agent_health_port"].default))
    host = env.get("SWITCHBOARD_AGENT_HEALTH_HOST", Settings.model_fields["agent_health_host"].default)
    url = _healthcheck_url(svc)
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, "/readyz")
    # The probe runs inside the worker's own network namespace: loopback reaches it, and nothing else has to.
    assert host in ("127.0.0.1", "0.0.0.0")


def test_the_api_healthcheck_and_livekits_webhook_reach_serve() -> None:
    from orchestrator.api import health, intake

    serve = serve_params()
    assert is_loopback(serve["host"]), "the API stays on loopback; a TLS proxy fronts the console"
    url = _healthcheck_url(ours()["api"])
    assert (url.hostname, url.port) == (serve["host"], serve["port"])
    assert url.path in {getattr(r, "path", "") for r in health.router.routes}
    livekit = yaml.safe_load((DEPLOY / "livekit.yaml").read_text(encoding="utf-8"))
    for hook in livekit["webhook"]["urls"]:
        target = urlsplit(hook)
        assert (target.hostname, target.port) == (serve["host"], serve["port"])
        assert target.path in {getattr(r, "path", "") for r in intake.router.routes}


# ---------------------------------------------------------------------- livekit.yaml
def test_livekit_runs_multi_node_on_the_compose_redis_with_keys_from_the_environment() -> None:
    livekit = yaml.safe_load((DEPLOY / "livekit.yaml").read_text(encoding="utf-8"))
    redis_url = urlsplit(environment(ours()["api"])["REDIS_URL"])
    assert livekit["redis"]["address"] == f"{redis_url.hostname}:{redis_url.port}"
    # No secret in a file that is checked in: keys come from LIVEKIT_KEYS, which compose builds from .env.
    assert not {"keys", "key_file"} & set(livekit)
    keys = services()["livekit"]["environment"]["LIVEKIT_KEYS"]
    assert "${LIVEKIT_API_KEY" in keys
    assert "${LIVEKIT_API_SECRET" in keys
    # Webhooks are signed with a key id that must be the one .env gives LIVEKIT_API_KEY.
    assert livekit["webhook"]["api_key"] == env_template()["LIVEKIT_API_KEY"]
    # The API, the workers and LiveKit SIP all reach this server and its Redis.
    assert urlsplit(environment(ours()["api"])["LIVEKIT_URL"]).port == livekit["port"]
    sip = yaml.safe_load(environment(services()["sip"])["SIP_CONFIG_BODY"])
    assert urlsplit(sip["ws_url"]).port == livekit["port"]
    assert sip["redis"]["address"] == livekit["redis"]["address"]


# ---------------------------------------------------------------------- draining
def _duration_s(text: str) -> float:
    """A compose duration (``11m``, ``90s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def test_each_worker_drains_in_the_time_compose_gives_it() -> None:
    # Past stop_grace_period compose SIGKILLs: a call still running then ends with no record and no hand-back. A
    # grace far longer than the drain is time the calls were promised and never given (they are handed back early).
    queue_worker = ours()["queue-worker"]
    _, params = parse_cli(list(queue_worker["command"]))
    assert (
        params["drain_timeout"] + 30 <= _duration_s(queue_worker["stop_grace_period"]) <= params["drain_timeout"] + 120
    )
    agent_worker = ours()["agent-worker"]
    env = environment(agent_worker)
    drain_s = int(env.get("SWITCHBOARD_AGENT_DRAIN_TIMEOUT_S", Settings.model_fields["agent_drain_timeout_s"].default))
    assert drain_s + 30 <= _duration_s(agent_worker["stop_grace_period"]) <= drain_s + 120


# ---------------------------------------------------------------------- Redis Sentinel (profile `sentinel`)
def sentinel_env() -> dict[str, str]:
    """deploy/sentinel.env, the second --env-file that turns the Sentinel set on."""
    found = {}
    for line in (DEPLOY / "sentinel.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def expand_with(value: str, given: dict[str, str]) -> str:
    """Compose interpolation as `expand`, with the variables ``given`` set."""

    def one(match: re.Match[str]) -> str:
        if match["name"] in given:
            return given[match["name"]]
        return expand(match.group(0))

    return _INTERPOLATION.sub(one, value)


def sentinels() -> dict[str, dict[str, Any]]:
    """The sentinel services: each one's port and what it monitors (name, host, port, quorum), from its command."""
    found = {}
    for name, svc in services().items():
        script = " ".join(svc.get("command") or [])
        monitor = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script)
        if monitor and "redis-sentinel" in script:
            port = int(svc["environment"]["SENTINEL_PORT"])
            assert "port $$SENTINEL_PORT" in script, name
            assert "bind 127.0.0.1" in script, name
            found[name] = {"port": port, "monitor": (monitor[1], monitor[2], int(monitor[3]), int(monitor[4]))}
    return found


def test_the_sentinel_profile_holds_a_replica_of_redis_and_three_sentinels_watching_it() -> None:
    primary = services()["redis"]
    assert "profiles" not in primary, "the primary runs in both set-ups"
    primary_port = (
        6379 if "--port" not in primary["command"] else int(primary["command"][primary["command"].index("--port") + 1])
    )
    replica = services()["redis-replica"]
    assert replica["profiles"] == ["sentinel"]
    command = replica["command"]
    assert command[command.index("--replicaof") + 1 :][:2] == ["127.0.0.1", str(primary_port)]
    watching = sentinels()
    assert len(watching) == 3
    assert all(services()[name]["profiles"] == ["sentinel"] for name in watching)
    assert len({s["port"] for s in watching.values()}) == 3, "host networking: one port each"
    # One name for the primary, a majority of the three to agree it is down.
    assert {s["monitor"] for s in watching.values()} == {("switchboard", "127.0.0.1", primary_port, 2)}
    # Each sentinel's file outlives a restart (it records the current primary there), on a volume of its own.
    volumes = [services()[name]["volumes"][0].split(":")[0] for name in watching]
    assert len(set(volumes)) == 3
    assert set(volumes) <= set(compose()["volumes"])


def test_sentinel_env_points_every_client_at_the_sentinels() -> None:
    from orchestrator.redis_url import parse_sentinel_url

    given = sentinel_env()
    assert given["COMPOSE_PROFILES"] == "sentinel"
    watching = sentinels()
    addresses = sorted(f"127.0.0.1:{s['port']}" for s in watching.values())
    (master,) = {s["monitor"][0] for s in watching.values()}
    # The API and the workers: redis+sentinel://, every write on the replica before it counts.
    for name, svc in ours().items():
        env = {k: expand_with(str(v), given) for k, v in (svc.get("environment") or {}).items()}
        parsed = parse_sentinel_url(env["REDIS_URL"])
        assert sorted(f"{h}:{p}" for h, p in parsed.sentinels) == addresses, name
        assert parsed.service == master, name
        assert int(env["SWITCHBOARD_REDIS_SYNC_REPLICAS"]) == 1, name
    # livekit-server: the file sentinel.env mounts finds the same primary through the same sentinels.
    mount = expand_with(services()["livekit"]["volumes"][0], given).split(":")[0]
    livekit = yaml.safe_load((DEPLOY / mount).read_text(encoding="utf-8"))
    assert sorted(livekit["redis"]["sentinel_addresses"]) == addresses
    assert livekit["redis"]["sentinel_master_name"] == master
    # LiveKit SIP shares LiveKit's bus, so it follows the sentinels too; without sentinel.env it keeps the address.
    body = services()["sip"]["environment"]["SIP_CONFIG_BODY"]
    sip = yaml.safe_load(expand_with(body, given))["redis"]
    assert (sorted(sip["sentinel_addresses"]), sip["sentinel_master_name"]) == (addresses, master)
    plain = yaml.safe_load(expand(body))["redis"]
    assert (plain["address"], plain["sentinel_addresses"]) == ("127.0.0.1:6379", [])


def test_the_sentinel_livekit_config_is_livekit_yaml_but_for_redis() -> None:
    plain = yaml.safe_load((DEPLOY / "livekit.yaml").read_text(encoding="utf-8"))
    sentinel = yaml.safe_load((DEPLOY / sentinel_env()["LIVEKIT_CONFIG"]).read_text(encoding="utf-8"))
    assert {k: v for k, v in plain.items() if k != "redis"} == {k: v for k, v in sentinel.items() if k != "redis"}
    assert "address" not in sentinel["redis"]


def test_livekit_spreads_rooms_over_its_nodes() -> None:
    selector = yaml.safe_load((DEPLOY / "livekit.yaml").read_text(encoding="utf-8"))["node_selector"]
    # The fewest rooms first (among nodes under the load limit); tests/flow/test_livekit_multinode.py runs it.
    assert (selector["sort_by"], selector["algorithm"]) == ("rooms", "lowest")
    assert selector["kind"] in {"any", "sysload"}


# ---------------------------------------------------------------------- Dockerfile
def test_the_dockerfile_is_python_slim_on_the_projects_python() -> None:
    bases = [args.split()[0] for ins, args in dockerfile() if ins == "FROM"]
    assert bases
    python_version = (REPO_ROOT / ".python-version").read_text(encoding="utf-8").strip()
    for base in bases:
        match = re.fullmatch(r"python:(\d+\.\d+)-slim(-\w+)?", base)
        assert match is not None, base
        assert match.group(1) == python_version
        assert f"{python_version}.0" in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_dockerfile_installs_the_locked_dependencies_and_copies_what_the_package_reads() -> None:
    runs = [args for ins, args in dockerfile() if ins == "RUN"]
    final_sync = [r for r in runs if "uv sync" in r and "--no-install-project" not in r]
    assert len(final_sync) == 1
    assert "--locked" in final_sync[0]
    assert "--no-dev" in final_sync[0]
    copied: set[str] = set()
    for ins, args in dockerfile():
        if ins == "COPY" and "--from=" not in args:
            *sources, _dest = args.split()
            copied |= {s.rstrip("/") for s in sources}
    needed = {"pyproject.toml", "uv.lock", PYPROJECT["project"]["readme"]}  # hatchling reads the readme
    needed |= set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    needed |= {PROMPTS_DIR.relative_to(REPO_ROOT).as_posix(), "evals"}  # prompts/ and evals/grades.yaml
    assert needed <= copied
    assert all((REPO_ROOT / source).exists() for source in copied)
    # The uv the Makefile installs, so the lock is read by the same version everywhere.
    pin = re.search(r"uv==([\d.]+)", " ".join(runs))
    makefile = REPO_ROOT / "Makefile"
    if makefile.exists():
        assert pin is not None
        assert f"uv=={pin.group(1)}" in makefile.read_text(encoding="utf-8")


def test_the_image_has_flite_runs_unprivileged_and_offline() -> None:
    final = final_stage()
    assert any(ins == "RUN" and "apt-get install" in args and "flite" in args.split() for ins, args in final)
    users = [args for ins, args in final if ins == "USER"]
    assert users
    assert users[-1] not in {"root", "0", "0:0"}
    env = " ".join(args for ins, args in final if ins == "ENV")
    assert "HF_HUB_OFFLINE=1" in env.split()


# ---------------------------------------------------------------------- build context
def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent directory of it) decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = re.escape(pattern.strip("/"))
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_the_build_context_holds_the_sources_and_never_secrets_or_local_state() -> None:
    text = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    patterns = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    sent = [
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "orchestrator/cli/main.py",
        "orchestrator/providers/intent_model/model_int8.onnx",
        "orchestrator/console/templates/login.html",
        "agents/graph.py",
        "prompts/replies.yaml",
        "evals/grades.yaml",
    ]
    kept_out = [
        ".env",
        "deploy/.env",
        "orchestrator/.env",
        ".venv/bin/python",
        ".switchboard/switchboard.db",
        ".git/HEAD",
        "tests/conftest.py",
        "bench/graph_turns.py",
        "orchestrator/__pycache__/cli.cpython-311.pyc",
    ]
    assert [p for p in sent if _dockerignore_excludes(patterns, p)] == []
    assert [p for p in kept_out if not _dockerignore_excludes(patterns, p)] == []


def test_every_image_is_pinned() -> None:
    """A `latest` (or untagged) image changes under a deployment without a commit that says so."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc and "build" not in svc}
    assert images, "compose names the third-party images it runs"
    for name, image in images.items():
        _, colon, tag = image.rpartition(":")
        assert colon, f"{name}: pin a version, not {image!r}"
        assert tag not in {"", "latest"}, f"{name}: pin a version, not {image!r}"
