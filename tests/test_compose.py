"""The Docker deployment files, checked by reading them (no Docker engine is needed).

docker-compose.yml, the Dockerfile and docker/mosquitto/mosquitto.conf must agree with
the code: every setting the platform cannot safely default in production is given,
secrets have no defaults, Mosquitto runs the project's broker configuration, and the
platform can reach the broker's files and process. The checks return lists of
problems so the mutation tests at the end can prove each one fails when it should.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from eldercare.config import DEFAULT_MQTT_PASSWORD, DEFAULT_SECRET_KEY, Settings, load_settings
from eldercare.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
MOSQUITTO_CONF = ROOT / "docker" / "mosquitto" / "mosquitto.conf"
MOSQUITTO_TEMPLATE = ROOT / "eldercare" / "registry" / "mosquitto.conf.in"

# Settings whose default is only right on a developer's machine: compose must set them.
PRODUCTION_SETTINGS = ("database_url", "mqtt_password", "secret_key", "mqtt_host", "broker_dir")
SECRETS = (
    "ELDERCARE_DB_PASSWORD",
    "ELDERCARE_DB_APP_PASSWORD",
    "ELDERCARE_MQTT_PASSWORD",
    "ELDERCARE_SECRET_KEY",
    "ELDERCARE_GRAFANA_DB_PASSWORD",
    "ELDERCARE_GRAFANA_ADMIN_PASSWORD",
)
# Where docker/mosquitto/mosquitto.conf may differ from the project's template (why: see
# the header of that file). Everything else must be identical.
MOSQUITTO_ALLOWED_DIFFERENCES = {
    "user",
    "pid_file",
    "persistence_location",
    "log_dest",
    "password_file",
    "acl_file",
    "listener",
    # TLS on the device listener: certificate paths exist only in the container.
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
}
EXPECTED_PORTS = {"mosquitto": {8883}, "platform": {8000}, "grafana": {3000}}
# Strong sample values for the required variables: a valid production configuration.
SAMPLE_ENV = {
    "ELDERCARE_DB_PASSWORD": "d" * 40,
    "ELDERCARE_DB_APP_PASSWORD": "p" * 40,
    "ELDERCARE_MQTT_PASSWORD": "m" * 40,
    "ELDERCARE_SECRET_KEY": "s" * 48,
    "ELDERCARE_GRAFANA_DB_PASSWORD": "g" * 24,
    "ELDERCARE_GRAFANA_ADMIN_PASSWORD": "a" * 24,
    "ELDERCARE_MQTT_PUBLIC_HOST": "mqtt.example.org",
    "ELDERCARE_MQTT_SHARE_GROUP": "q" * 24,
}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text("utf-8"))  # resolves the << merge keys


def compose_values_text(c: dict[str, Any]) -> str:
    """Every value of the file as one text, without its comments (which may cite ${VAR})."""
    return json.dumps(c)


# ------------------------------------------------------------------ compose interpolation

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ${V}, ${V:-default}, ${V-default}, ${V:?err}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m[1] or m[4], m[2], m[3]
        got = env.get(name)
        empty = got is None or (got == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and empty:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and empty:
            return arg
        return got or ""

    return _VAR.sub(sub, value)


def variables(text: str) -> dict[str, tuple[str | None, str | None]]:
    """Every ${VAR...} in the text: name -> (operator, argument)."""
    return {m[1]: (m[2], m[3]) for m in _VAR.finditer(text) if m[1]}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any], env: dict[str, str]) -> set[int]:
    """Container ports a service publishes ("[ip:]host:container[/proto]" strings)."""
    out = set()
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.add(int(p["target"]))
        else:
            out.add(int(str(interpolate(p, env)).split("/")[0].rsplit(":", 1)[-1]))
    return out


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path)."""
    out = {}
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out[v["target"]] = v["source"]
        else:
            parts = v.split(":")
            out[parts[1]] = parts[0]
    return out


def mosquitto_directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, rest = line.partition(" ")
            out.setdefault(key, []).append(rest.strip())
    return out


def image_tag(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else ""


# ------------------------------------------------------------------ the checks


def check_services(c: dict[str, Any]) -> list[str]:
    problems = []
    services = c["services"]
    for name in ("timescaledb", "mosquitto", "platform", "gateway", "grafana"):
        if name not in services:
            problems.append(f"no service {name}")
    want = {
        "timescaledb": "timescale/timescaledb:2.19.3-pg15",
        "mosquitto": "eclipse-mosquitto:2.0.20",
    }
    for name, image in want.items():
        if services.get(name, {}).get("image") != image:
            problems.append(f"{name} must run {image}")
    grafana = services.get("grafana", {}).get("image", "")
    if not re.fullmatch(r"grafana/grafana(-oss)?:11\.\d+\.\d+", grafana):
        problems.append(f"grafana image must be a pinned 11.x.y: {grafana!r}")
    for name, s in services.items():
        if "image" not in s and "build" not in s:
            problems.append(f"{name}: neither image nor build")
        if "image" in s:
            tag = image_tag(s["image"])
            if not tag or tag == "latest" or not re.match(r"\d", tag):
                problems.append(f"{name}: image {s['image']!r} is not pinned to a version")
    return problems


def check_ports(c: dict[str, Any]) -> list[str]:
    problems = []
    for name, s in c["services"].items():
        got = published_ports(s, SAMPLE_ENV)
        if got != EXPECTED_PORTS.get(name, set()):
            problems.append(
                f"{name} publishes {sorted(got)}, expected "
                f"{sorted(EXPECTED_PORTS.get(name, set()))}"
            )
    return problems


def check_healthchecks(c: dict[str, Any]) -> list[str]:
    problems = []
    services = c["services"]
    for name, s in services.items():
        if name == "init":  # a one-shot job: depended on with service_completed_successfully
            continue
        hc = s.get("healthcheck") or {}
        test = hc.get("test")
        if hc.get("disable") or not test or test == ["NONE"]:
            problems.append(f"{name}: no health check")
    texts = {n: json.dumps((s.get("healthcheck") or {}).get("test")) for n, s in services.items()}
    if "pg_isready" not in texts.get("timescaledb", ""):
        problems.append("timescaledb health check must use pg_isready")
    if "127.0.0.1:8000/healthz" not in texts.get("platform", ""):
        problems.append("platform health check must GET http://127.0.0.1:8000/healthz")
    if "1883" not in texts.get("mosquitto", ""):
        problems.append("mosquitto health check must connect to its listener")
    return problems


def check_depends_on(c: dict[str, Any]) -> list[str]:
    problems = []
    services = c["services"]
    for name, s in services.items():
        deps = s.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on without conditions only waits for a start")
            continue
        for dep, spec in deps.items():
            cond = (spec or {}).get("condition")
            if cond not in ("service_healthy", "service_completed_successfully"):
                problems.append(f"{name} -> {dep}: condition {cond!r}")
            if dep not in services:
                problems.append(f"{name} -> {dep}: no such service")
            elif cond == "service_healthy" and not (services[dep].get("healthcheck") or {}).get(
                "test"
            ):
                problems.append(f"{name} -> {dep}: waits for health that is never checked")
    platform = services.get("platform", {}).get("depends_on") or {}
    if isinstance(platform, list):
        return problems
    for dep in ("timescaledb", "mosquitto"):
        if (platform.get(dep) or {}).get("condition") != "service_healthy":
            problems.append(f"platform must wait for a healthy {dep}")
    return problems


def check_platform_settings(c: dict[str, Any]) -> list[str]:
    """platform and gateway get every setting production needs, and valid ones."""
    problems = []
    fields = Settings.model_fields
    for service in ("platform", "gateway"):
        s = c["services"].get(service)
        if s is None:
            continue
        env = env_of(s)
        for f in PRODUCTION_SETTINGS:
            assert f in fields, f"Settings has no field {f}: update PRODUCTION_SETTINGS"
            if f"ELDERCARE_{f.upper()}" not in env:
                problems.append(f"{service}: ELDERCARE_{f.upper()} is not set")
        for key in env:
            if key.startswith("ELDERCARE_") and key[10:].lower() not in fields:
                problems.append(f"{service}: {key} is no setting of eldercare.config.Settings")
        if env.get("ELDERCARE_ENVIRONMENT") != "production":
            problems.append(f"{service}: ELDERCARE_ENVIRONMENT must be production")
        host = env.get("ELDERCARE_MQTT_HOST")
        if (
            host not in c["services"]
            or c["services"][host].get("image", "").split(":")[0] != "eclipse-mosquitto"
        ):
            problems.append(f"{service}: ELDERCARE_MQTT_HOST must name the mosquitto service")
        try:
            resolved = interpolate(env, SAMPLE_ENV)
        except MissingVariable as exc:
            problems.append(f"{service}: unresolved {exc}")
            continue
        overrides = {k[10:].lower(): v for k, v in resolved.items() if k.startswith("ELDERCARE_")}
        try:
            settings = load_settings(_env_file=None, **overrides)
        except ConfigError as exc:
            problems.append(f"{service}: settings refused: {exc}")
            continue
        if settings.api_host != "0.0.0.0" and service == "platform":
            problems.append("platform: ELDERCARE_API_HOST must be 0.0.0.0 to be reachable")
        if not settings.database_url.split("@")[-1].startswith("timescaledb:"):
            problems.append(f"{service}: ELDERCARE_DATABASE_URL must point at timescaledb")
    return problems


def _db_user(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]


def check_database_roles(c: dict[str, Any]) -> list[str]:
    """Audit H11: only init has the owner (the image's superuser); everything that runs
    the platform connects as the app's role, which init creates."""
    problems = []
    superuser = env_of(c["services"]["timescaledb"]).get("POSTGRES_USER")
    init = env_of(c["services"]["init"])
    owner = init.get("ELDERCARE_OWNER_DATABASE_URL", "")
    if not owner or _db_user(owner) != superuser:
        problems.append("init: ELDERCARE_OWNER_DATABASE_URL must be the owner " + str(superuser))
    if _db_user(init.get("ELDERCARE_DATABASE_URL", "x://")) in ("", superuser):
        problems.append("init: ELDERCARE_DATABASE_URL must name the app's role to create")
    for name in ("platform", "gateway"):
        env = env_of(c["services"][name])
        if "ELDERCARE_OWNER_DATABASE_URL" in env:
            problems.append(f"{name}: must not get the owner's database URL")
        if _db_user(env.get("ELDERCARE_DATABASE_URL", "x://")) in ("", superuser):
            problems.append(f"{name}: must connect as the app's role, not {superuser}")
        if env.get("ELDERCARE_DATABASE_URL") != init.get("ELDERCARE_DATABASE_URL"):
            problems.append(f"{name}: connects as another role than the one init creates")
    if "eldercare db migrate" not in json.dumps(c["services"]["init"].get("command")):
        problems.append("init: must run `eldercare db migrate` (it creates the app's role)")
    return problems


def check_secrets_required(c: dict[str, Any]) -> list[str]:
    """Every secret comes from ${VAR:?...}: no default, no literal value."""
    problems = []
    for name, s in c["services"].items():
        for key, value in env_of(s).items():
            secretish = re.search(r"PASSWORD|SECRET", key) and not key.endswith("_USER")
            if key.endswith("DATABASE_URL"):
                value = value.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            elif not secretish:
                continue
            m = re.fullmatch(r"\$\{(\w+):\?[^}]*\}", value)
            if not m:
                problems.append(
                    f"{name}: {key} must be a required variable ${{VAR:?...}}, got {value!r}"
                )
            elif m[1] not in SECRETS:
                problems.append(f"{name}: {key} uses {m[1]}, not a known secret")
    # Every use, not one per name: a single ${SECRET:-x} anywhere is a default.
    for m in _VAR.finditer(compose_values_text(c)):
        if m[1] in SECRETS and m[2] != ":?":
            problems.append(f"{m[1]} has a default ({m[2]}{m[3]}) somewhere")
    return problems


def check_broker_sharing(c: dict[str, Any], conf_text: str) -> list[str]:
    """Mosquitto's passwd/acl/pid live on a volume the platform mounts at its broker_dir."""
    problems = []
    services = c["services"]
    mq, platform = services["mosquitto"], services["platform"]
    conf = mosquitto_directives(conf_text)
    mq_mounts = volume_mounts(mq)
    if mq_mounts.get("/mosquitto/config/mosquitto.conf") != "./docker/mosquitto/mosquitto.conf":
        problems.append("mosquitto must mount docker/mosquitto/mosquitto.conf")
    command = mq.get("command") or []
    command = " ".join(command) if isinstance(command, list) else command
    if "-c /mosquitto/config/mosquitto.conf" not in command:
        problems.append("mosquitto must run with -c /mosquitto/config/mosquitto.conf")
    dirs = set()
    for key, name in (
        ("password_file", "passwd"),
        ("acl_file", "acl"),
        ("pid_file", "mosquitto.pid"),
    ):
        values = conf.get(key, [])
        if len(values) != 1 or Path(values[0]).name != name:
            problems.append(f"mosquitto.conf: {key} must be <broker dir>/{name}")
            continue
        dirs.add(str(Path(values[0]).parent))
    if len(dirs) != 1:
        return [*problems, f"passwd, acl and pid file must share one directory: {dirs}"]
    (mq_dir,) = dirs
    volume = mq_mounts.get(mq_dir)
    if volume is None or volume not in (c.get("volumes") or {}):
        problems.append(f"mosquitto's {mq_dir} must be a named volume")
    broker_dir = env_of(platform).get("ELDERCARE_BROKER_DIR")
    if volume_mounts(platform).get(broker_dir or "") != volume:
        problems.append(f"platform must mount volume {volume} at ELDERCARE_BROKER_DIR")
    # SIGHUP crosses containers only inside one pid namespace.
    if platform.get("pid") != "service:mosquitto":
        problems.append('platform needs pid: "service:mosquitto" to SIGHUP the broker')
    listener = conf.get("listener", [""])[0].split()
    if not listener or listener[0] != env_of(platform).get("ELDERCARE_MQTT_PORT"):
        problems.append("ELDERCARE_MQTT_PORT must be Mosquitto's listener port")
    return problems


def check_mosquitto_conf(conf_text: str, template_text: str) -> list[str]:
    problems = []
    conf, template = mosquitto_directives(conf_text), mosquitto_directives(template_text)
    for key, value in (
        ("set_tcp_nodelay", "true"),
        ("allow_anonymous", "false"),
        ("persistence", "true"),
        ("per_listener_settings", "false"),
    ):
        if conf.get(key) != [value]:
            problems.append(f"mosquitto.conf: {key} must be {value}")
    for key in ("password_file", "acl_file"):
        if not conf.get(key):
            problems.append(f"mosquitto.conf: no {key}")
    if conf.get("user") == ["root"]:
        problems.append("mosquitto.conf: the broker must not stay root in a container")
    for key in sorted(set(conf) | set(template)):
        if key not in MOSQUITTO_ALLOWED_DIFFERENCES and conf.get(key) != template.get(key):
            problems.append(
                f"mosquitto.conf: {key} {conf.get(key)} differs from the "
                f"template's {template.get(key)}"
            )
    return problems


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def check_dockerfile(text: str) -> list[str]:
    problems = []
    ins = dockerfile_instructions(text)
    froms = [rest.split()[0] for op, rest in ins if op == "FROM"]
    if not froms or any(f != "python:3.11-slim-bookworm" for f in froms):
        problems.append(f"FROM must be python:3.11-slim-bookworm: {froms}")
    cmds = [rest for op, rest in ins if op == "CMD"]
    if not cmds:
        problems.append("no CMD")
    else:
        try:
            cmd = json.loads(cmds[-1])
        except json.JSONDecodeError:
            cmd = shlex.split(cmds[-1])  # shell form: PID 1 would be sh, not eldercare
            problems.append("CMD must be exec form so eldercare gets SIGTERM")
        if cmd != ["eldercare", "serve"]:
            problems.append(f"CMD must run eldercare serve: {cmd}")
    users = [rest for op, rest in ins if op == "USER"]
    if not users or users[-1] in ("root", "0") or users[-1].startswith(("root:", "0:")):
        problems.append("the image must run as a non-root USER")
    if "--uid 1883" not in text:
        problems.append("the platform user must have uid 1883 (Mosquitto's) to signal it")
    hc = " ".join(rest for op, rest in ins if op == "HEALTHCHECK")
    if "http://127.0.0.1:8000/healthz" not in hc:
        problems.append("HEALTHCHECK must GET http://127.0.0.1:8000/healthz")
    if not any(
        op == "RUN" and "pip" in rest and re.search(r"\s\.(\s|$)", rest) for op, rest in ins
    ):
        problems.append("the project must be pip-installed from its pyproject (pip ... .)")
    return problems


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_services_and_images(compose: dict[str, Any]) -> None:
    assert check_services(compose) == []


def test_ports_only_where_needed(compose: dict[str, Any]) -> None:
    assert check_ports(compose) == []


def test_health_checks(compose: dict[str, Any]) -> None:
    assert check_healthchecks(compose) == []


def test_depends_on_waits_for_health(compose: dict[str, Any]) -> None:
    assert check_depends_on(compose) == []


def test_platform_gets_every_production_setting(compose: dict[str, Any]) -> None:
    assert check_platform_settings(compose) == []


def test_database_roles(compose: dict[str, Any]) -> None:
    assert check_database_roles(compose) == []


def test_secrets_are_required_variables(compose: dict[str, Any]) -> None:
    assert check_secrets_required(compose) == []


def test_compose_refuses_to_start_without_secrets(compose: dict[str, Any]) -> None:
    for secret in SECRETS:
        env = {k: v for k, v in SAMPLE_ENV.items() if k != secret}
        with pytest.raises(MissingVariable, match=secret):
            interpolate(compose, env)
        with pytest.raises(MissingVariable, match=secret):
            interpolate(compose, {**env, secret: ""})
    interpolate(compose, SAMPLE_ENV)


def test_platform_shares_broker_files_and_pid_namespace(compose: dict[str, Any]) -> None:
    assert check_broker_sharing(compose, MOSQUITTO_CONF.read_text("utf-8")) == []


def test_mosquitto_conf_is_the_projects(compose: dict[str, Any]) -> None:
    conf = MOSQUITTO_CONF.read_text("utf-8")
    assert check_mosquitto_conf(conf, MOSQUITTO_TEMPLATE.read_text("utf-8")) == []


def test_dockerfile() -> None:
    assert check_dockerfile(DOCKERFILE.read_text("utf-8")) == []


def test_platform_and_gateway_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["platform"]["command"] == ["eldercare", "serve"]
    assert services["platform"]["build"] == "."
    gateway = services["gateway"]
    assert "exec eldercare gateway" in " ".join(gateway["command"])
    # Replicas share the broker session namespace: each needs its own client id prefix.
    assert "ELDERCARE_MQTT_CLIENT_PREFIX" in " ".join(gateway["command"])
    assert int(interpolate(gateway["deploy"]["replicas"], {})) >= 1
    assert "scale-out" in gateway.get("profiles", [])
    # Replicas really share the load (audit M11): a shared subscription even with one
    # worker each, device state left to the platform, and a secret group (audit H2).
    replica = load_settings(
        _env_file=None,
        **{
            k[10:].lower(): v
            for k, v in interpolate(env_of(gateway), SAMPLE_ENV).items()
            if k.startswith("ELDERCARE_")
        },
    )
    assert replica.gateway_subscription_shared(replica.gateway_workers)
    assert replica.gateway_state is False
    no_group = {k: v for k, v in SAMPLE_ENV.items() if k != "ELDERCARE_MQTT_SHARE_GROUP"}
    with pytest.raises(MissingVariable, match="ELDERCARE_MQTT_SHARE_GROUP"):
        interpolate(env_of(gateway), no_group)
    # The platform alone subscribes plainly unless the operator opts in.
    platform = interpolate(env_of(services["platform"]), SAMPLE_ENV)
    assert platform["ELDERCARE_GATEWAY_SHARED"] == "false"


def test_grafana_provisioning(compose: dict[str, Any]) -> None:
    g = compose["services"]["grafana"]
    env = env_of(g)
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${ELDERCARE_GRAFANA_ADMIN_PASSWORD:?")
    mounts = volume_mounts(g)
    assert (
        mounts["/etc/grafana/provisioning/datasources"] == "./dashboards/provisioning/datasources"
    )
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./dashboards/provisioning/dashboards"
    provider_conf = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/eldercare.yaml").read_text("utf-8")
    )
    (provider,) = provider_conf["providers"]
    assert mounts[provider["options"]["path"]] == "./dashboards"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (ROOT / "dashboards" / Path(home).name).is_file()
    # Every ${VAR} the datasource file reads is in Grafana's environment.
    ds_text = (ROOT / "dashboards/provisioning/datasources/eldercare.yaml").read_text("utf-8")
    ds_vars = set(variables(ds_text))
    assert ds_vars and ds_vars <= set(env), ds_vars - set(env)
    # The same read-only role the init job creates.
    init_env = env_of(compose["services"]["init"])
    assert env["ELDERCARE_GRAFANA_DB_USER"] == init_env["ELDERCARE_GRAFANA_DB_USER"]
    assert env["ELDERCARE_GRAFANA_DB_PASSWORD"] == init_env["ELDERCARE_GRAFANA_DB_PASSWORD"]


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    documented = {}
    for line in ENV_EXAMPLE.read_text("utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            documented[key.strip()] = value.strip()
    used = variables(compose_values_text(compose))
    assert set(used) == set(documented), set(used) ^ set(documented)
    for var, (op, arg) in used.items():
        if op == ":?":
            assert documented[var] == "", f"{var}: no sample secret in .env.example"
        elif op == ":-":
            assert documented[var] == arg, f"{var}: .env.example says {documented[var]!r}"


def test_dockerignore_keeps_secrets_out() -> None:
    lines = [
        x.strip()
        for x in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if x.strip() and not x.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: everything excluded first"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert not allowed & {".env", ".local", ".venv", ".git", "tests"}
    assert {"pyproject.toml", "eldercare"} <= allowed


# ------------------------------------------------------------------ the checks can fail


def _mutated(c: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    c = copy.deepcopy(c)
    node = c
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return c


_DELETE = object()


@pytest.mark.parametrize(
    "check,path,value",
    [
        (check_services, ["services", "grafana", "image"], "grafana/grafana:latest"),
        (check_services, ["services", "mosquitto", "image"], "eclipse-mosquitto"),
        (check_ports, ["services", "timescaledb", "ports"], ["5432:5432"]),
        (check_healthchecks, ["services", "mosquitto", "healthcheck"], _DELETE),
        (check_depends_on, ["services", "platform", "depends_on"], ["timescaledb", "mosquitto"]),
        (
            check_platform_settings,
            ["services", "platform", "environment", "ELDERCARE_SECRET_KEY"],
            _DELETE,
        ),
        (
            check_platform_settings,
            ["services", "platform", "environment", "ELDERCARE_BROKER_DIR"],
            _DELETE,
        ),
        (
            check_platform_settings,
            ["services", "platform", "environment", "ELDERCARE_SECRET_KEY"],
            DEFAULT_SECRET_KEY,
        ),
        (
            check_platform_settings,
            ["services", "platform", "environment", "ELDERCARE_MQTT_PASWORD"],
            "typo",
        ),
        (
            check_database_roles,
            ["services", "platform", "environment", "ELDERCARE_DATABASE_URL"],
            "postgresql://eldercare:${ELDERCARE_DB_PASSWORD:?x}@timescaledb:5432/eldercare",
        ),
        (
            check_database_roles,
            ["services", "gateway", "environment", "ELDERCARE_OWNER_DATABASE_URL"],
            "postgresql://eldercare:${ELDERCARE_DB_PASSWORD:?x}@timescaledb:5432/eldercare",
        ),
        (
            check_database_roles,
            ["services", "init", "environment", "ELDERCARE_OWNER_DATABASE_URL"],
            _DELETE,
        ),
        (
            check_secrets_required,
            ["services", "platform", "environment", "ELDERCARE_MQTT_PASSWORD"],
            "${ELDERCARE_MQTT_PASSWORD:-" + DEFAULT_MQTT_PASSWORD + "}",
        ),
        (
            check_secrets_required,
            ["services", "timescaledb", "environment", "POSTGRES_PASSWORD"],
            "eldercare",
        ),
        (
            check_secrets_required,
            ["services", "init", "command"],
            ["sh", "-c", "PW=${ELDERCARE_DB_PASSWORD-changeme} eldercare db migrate"],
        ),
    ],
)
def test_checks_catch_mistakes(
    compose: dict[str, Any], check: Any, path: list[str], value: Any
) -> None:
    assert check(_mutated(compose, path, value)) != []


def test_broker_checks_catch_mistakes(compose: dict[str, Any]) -> None:
    conf = MOSQUITTO_CONF.read_text("utf-8")
    template = MOSQUITTO_TEMPLATE.read_text("utf-8")
    assert (
        check_broker_sharing(_mutated(compose, ["services", "platform", "pid"], _DELETE), conf)
        != []
    )
    assert (
        check_broker_sharing(_mutated(compose, ["services", "platform", "volumes"], []), conf) != []
    )
    for old, new in (
        ("set_tcp_nodelay true", "set_tcp_nodelay false"),
        ("allow_anonymous false", "allow_anonymous true"),
        ("acl_file /mosquitto/broker/acl", ""),
        ("max_packet_size 65536", "max_packet_size 1024"),
    ):
        assert old in conf
        assert check_mosquitto_conf(conf.replace(old, new), template) != [], old
    dockerfile = DOCKERFILE.read_text("utf-8")
    for old, new in (
        ('CMD ["eldercare", "serve"]', 'CMD ["eldercare", "gateway"]'),
        ("USER eldercare", "USER root"),
        ("127.0.0.1:8000/healthz", "127.0.0.1:8000/"),
    ):
        assert old in dockerfile
        assert check_dockerfile(dockerfile.replace(old, new)) != [], old
