"""docker-compose.yml and docker/*.Dockerfile, checked against the code without a Docker engine
(``scripts/compose-check`` runs them for real, with docker/compose.loopback.yml).

Commands must name real entry points (the gunicorn app factory, the Celery app and its queues),
every setting variable must be one ``Settings.from_env`` reads, and ports, hosts, credentials
and images must agree between services. The one-shot bucket command runs for real against the
test session's SeaweedFS.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import yaml

from api.app import create_app
from api.serving import gunicorn_args
from bench.compose_check import attempts_check
from shared.colour.model_manifests import DEFAULT_MODEL
from shared.network.addresses import parse_networks
from shared.queue.celery_config import make_celery
from shared.queue.contract import QUEUE, WEBHOOK_QUEUE
from shared.settings import ENV_ALIASES, NESTED, PROJECT_ROOT, Settings
from shared.storage.object_store import BROWSER_CORS_RULES

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
# The only variable a deployment must set; everything else has a default.
DEPLOYMENT_ENV = {"S3_SECRET_KEY": "a-secret-for-the-checks"}
# Services that run Colorize code, read Settings and share the store and broker.
APP_SERVICES = ("api", "worker", "worker-gpu", "webhooks", "s3-init")
CELERY_SERVICES = ("worker", "worker-gpu", "webhooks")
LONG_RUNNING = ("proxy", "api", "worker", "worker-gpu", "webhooks", "rabbitmq", "redis", "s3", "flower")
NGINX_CONF = PROJECT_ROOT / "docker" / "nginx.conf"
BASE_IMAGE = "python:3.11-slim"
LOOPBACK_FILE = PROJECT_ROOT / "docker" / "compose.loopback.yml"
# Images from a registry, each named by a variable with a stand-in under docker/local/.
THIRD_PARTY_IMAGES = {
    "proxy": "NGINX_IMAGE",
    "redis": "REDIS_IMAGE",
    "rabbitmq": "RABBITMQ_IMAGE",
    "s3": "SEAWEEDFS_IMAGE",
}


# --- reading the files -------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(5)
        value = env.get(name)
        colon, kind, argument = match.group(2), match.group(3), match.group(4)
        missing = value is None or (colon == ":" and value == "")
        if kind == "-" and missing:
            return argument
        if kind == "?" and missing:
            raise LookupError(f"{name}: {argument}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    return resolve(raw_compose, DEPLOYMENT_ENV)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(entry.split("=", 1) for entry in env)
    return {name: str(value) for name, value in env.items()}


def option(argv: list[str], *names: str) -> str:
    for name in names:
        if name in argv:
            return argv[argv.index(name) + 1]
    raise AssertionError(f"none of {names} in {argv}")


def healthcheck_argv(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1])
    assert test[0] == "CMD", test
    return test[1:]


def container_port(mapping: str) -> int:
    return int(str(mapping).rsplit(":", 1)[1].split("/")[0])


def host_port(mapping: str) -> int:
    return int(str(mapping).rsplit(":", 2)[-2])


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative to the context) out of the build context."""
    patterns = [
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, cleaned) for prefix in prefixes):
            excluded = not negated
    return excluded


def pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def valid_setting_variables() -> set[str]:
    names = {"COLORIZE_" + f.name.upper() for f in fields(Settings) if f.name not in NESTED}
    for group in NESTED.values():
        names |= {"COLORIZE_" + f.name.upper() for f in fields(group)}
    return names | {alias for aliases in ENV_ALIASES.values() for alias in aliases}


# --- the file as a whole -----------------------------------------------------------------------


def test_a_deployment_must_set_only_the_store_secret(raw_compose) -> None:
    with pytest.raises(LookupError, match="S3_SECRET_KEY"):
        resolve(raw_compose, {})
    resolve(raw_compose, DEPLOYMENT_ENV)


def test_services_and_profiles(services) -> None:
    assert set(services) == {
        "proxy",
        "api",
        "worker",
        "worker-gpu",
        "webhooks",
        "rabbitmq",
        "redis",
        "s3",
        "s3-init",
        "flower",
    }
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["flower"]["profiles"] == ["monitoring"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"proxy", "api", "worker", "webhooks", "rabbitmq", "redis", "s3", "s3-init"}


def test_restart_policies_and_healthchecks(services) -> None:
    for name in LONG_RUNNING:
        assert services[name]["restart"] in ("unless-stopped", "always"), name
    assert services["s3-init"]["restart"].startswith("on-failure")  # a one-shot must not loop
    for name in ("proxy", "api", "worker", "worker-gpu", "webhooks", "rabbitmq", "redis", "s3"):
        assert healthcheck_argv(services[name]), name


def test_app_services_start_after_the_broker_redis_and_the_bucket(services) -> None:
    for name in ("api", "worker", "worker-gpu", "webhooks"):
        depends = services[name]["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["s3-init"]["condition"] == "service_completed_successfully", name
    assert services["s3-init"]["depends_on"]["s3"]["condition"] == "service_healthy"


# --- settings ------------------------------------------------------------------------------------


def test_every_setting_variable_is_one_settings_reads(services) -> None:
    valid = valid_setting_variables()
    for name in APP_SERVICES:
        unknown = set(environment(services[name])) - valid
        assert not unknown, f"{name}: {sorted(unknown)} are not read by Settings.from_env"


def test_each_service_environment_builds_valid_settings(services) -> None:
    built = {name: Settings.from_env(environment(services[name])) for name in APP_SERVICES}
    assert {s.redis_url for s in built.values()} == {"redis://redis:6379/0"}
    # Tasks through RabbitMQ, the same broker for everyone.
    assert len({s.celery_broker_url for s in built.values()}) == 1
    assert all(s.broker_is_amqp for s in built.values())
    assert (
        len(
            {
                (s.s3_endpoint_url, s.s3_public_endpoint_url, s.s3_bucket, s.aws_access_key_id, s.aws_secret_access_key)
                for s in built.values()
            }
        )
        == 1
    )
    assert built["api"].api_host == "0.0.0.0" and built["api"].auth == "keys"
    assert built["worker"].device == "cpu"
    assert built["worker-gpu"].device == "cuda"


def test_the_gunicorn_target_builds_the_app_from_the_api_environment(services) -> None:
    argv = services["api"]["command"]
    # The command line every other launcher uses too (api/serving.py), with its configuration.
    assert argv == ["gunicorn", *gunicorn_args(option(argv, "--bind"), int(option(argv, "--workers")))]
    assert option(argv, "-c") == "python:api.serving"
    module, factory = re.fullmatch(r"([\w.]+):(\w+)\(\)", argv[-1]).groups()
    assert getattr(importlib.import_module(module), factory) is create_app
    # Nothing connects while the app is built: the compose host names need not resolve here.
    # Without its metrics directory: multiprocess metrics, once on, stay on for the whole test
    # process and every process it starts (prometheus_client keeps that choice process-wide).
    settings = Settings.from_env(environment(services["api"])).with_overrides(metrics_dir=None)
    app = create_app(settings)
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert {"/", "/healthz", "/v1/jobs"} <= rules


def test_api_port_agrees_between_bind_settings_and_healthcheck_and_is_not_published(services) -> None:
    api = services["api"]
    host, port = option(api["command"], "--bind", "-b").rsplit(":", 1)
    assert host == "0.0.0.0"
    settings = Settings.from_env(environment(api))
    assert settings.api_port == int(port)
    assert "ports" not in api and [int(p) for p in api["expose"]] == [int(port)]  # only the proxy reaches it
    probe = next(arg for arg in healthcheck_argv(api) if "/healthz" in arg)
    assert re.search(r"http://127\.0\.0\.1:(\d+)/healthz", probe).group(1) == port


# --- the reverse proxy ---------------------------------------------------------------------------


def nginx_directives(text: str) -> list[tuple[str, list[str]]]:
    """Every simple directive of an nginx configuration as (name, arguments), blocks flattened."""
    text = re.sub(r"#[^\n]*", "", text)
    directives = []
    for statement in re.findall(r"([a-z_0-9]+)((?:\s+(?:'[^']*'|\"[^\"]*\"|[^\s;{}]+))*)\s*;", text):
        name, arguments = statement
        directives.append((name, re.findall(r"'[^']*'|\"[^\"]*\"|[^\s]+", arguments)))
    return directives


def nginx_values(name: str) -> list[list[str]]:
    return [arguments for directive, arguments in nginx_directives(NGINX_CONF.read_text()) if directive == name]


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].lower() in units else int(value)


def test_the_proxy_alone_publishes_the_api_port(compose, services) -> None:
    proxy = services["proxy"]
    [mapping] = proxy["ports"]
    [[listen]] = nginx_values("listen")
    assert container_port(mapping) == int(listen) and host_port(mapping) == 8000
    probe = next(arg for arg in healthcheck_argv(proxy) if "/healthz" in arg)
    assert re.search(r"http://127\.0\.0\.1:(\d+)/healthz", probe).group(1) == listen
    [config] = proxy["configs"]
    assert config["target"] == "/etc/nginx/nginx.conf"
    assert (PROJECT_ROOT / compose["configs"][config["source"]]["file"]).resolve() == NGINX_CONF
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    published = {name for name, service in services.items() if service.get("ports")}
    assert "api" not in published


def test_the_proxy_forwards_to_the_api_service_and_port(services) -> None:
    [[upstream]] = nginx_values("server")
    host, port = upstream.rsplit(":", 1)
    assert host == "api" and port == option(services["api"]["command"], "--bind").rsplit(":", 1)[1]
    assert ["http://api"] in nginx_values("proxy_pass")
    forwarded = {arguments[0]: arguments[1] for arguments in nginx_values("proxy_set_header")}
    assert forwarded["X-Forwarded-For"] == "$remote_addr" and forwarded["X-Forwarded-Proto"] == "$scheme"


def test_the_proxy_buffers_and_bounds_slow_and_large_requests(services) -> None:
    limits = Settings.from_env(environment(services["api"])).limits
    [[body_limit]] = nginx_values("client_max_body_size")
    assert nginx_size(body_limit) == limits.max_request_bytes
    assert nginx_values("proxy_request_buffering") == [["on"]] and nginx_values("proxy_buffering") == [["on"]]
    for timeout in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        [[value]] = nginx_values(timeout)
        assert 0 < int(value.rstrip("s")) <= 60, timeout
    # The request line and headers: no more than gunicorn takes behind it.
    [[count, size]] = nginx_values("large_client_header_buffers")
    from api import serving

    assert nginx_size(size) <= serving.limit_request_line + 2 and int(count) <= serving.limit_request_fields


def test_the_api_trusts_the_proxy_network_only(services) -> None:
    settings = Settings.from_env(environment(services["api"]))
    networks = parse_networks(settings.trusted_proxies)
    # Docker's default address pools, where the proxy's address on the project network comes from.
    assert {str(n) for n in networks} == {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
    assert all(n.is_private for n in networks)


def test_the_proxy_answers_its_own_refusals_as_json() -> None:
    locations = dict(re.findall(r"location = (/\.errors/\d+) \{(.*?)\n\s*\}", NGINX_CONF.read_text(), re.DOTALL))
    for uri, block in locations.items():
        assert "internal;" in block and "default_type application/json;" in block
        status, body = re.search(r"return (\d+) '([^']*)'", block).groups()
        assert uri.endswith(status) and set(json.loads(body)["error"]) == {"code", "message"}
    pages = {code: arguments[-1] for arguments in nginx_values("error_page") for code in arguments[:-1]}
    assert {"400", "408", "413", "414", "502"} <= set(pages)
    assert set(pages.values()) == set(locations)  # by URI: a request refused mid-line has none to keep


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_configuration(tmp_path) -> None:
    # The upstream's host resolves only on the compose network; here it names this machine.
    text = NGINX_CONF.read_text().replace("server api:8000;", "server 127.0.0.1:8000;")
    text = text.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    done = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(config), "-g", f"error_log {tmp_path}/e.log;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_prometheus_directories_are_fresh_tmpfs(services) -> None:
    for name in ("api", "worker", "worker-gpu"):
        directory = environment(services[name])["PROMETHEUS_MULTIPROC_DIR"]
        assert any(entry.split(":")[0] == directory for entry in services[name]["tmpfs"]), name


# --- workers -------------------------------------------------------------------------------------


def test_celery_commands_name_the_app_and_its_queues(services) -> None:
    consumed = set()
    for name in CELERY_SERVICES:
        service = services[name]
        argv = service["command"]
        assert argv[:2] == ["celery", "-A"] and argv[3] == "worker", name
        module = importlib.import_module(argv[2])
        assert module.make_celery is make_celery
        make_celery(Settings.from_env(environment(service)))  # the app the command line builds
        queues = set(option(argv, "-Q", "--queues").split(","))
        assert queues <= {QUEUE, WEBHOOK_QUEUE}, name
        if not service.get("profiles"):
            consumed |= queues
    assert consumed == {QUEUE, WEBHOOK_QUEUE}  # a default deployment serves every queue
    assert option(services["webhooks"]["command"], "--pool", "-P") == "threads"


def test_worker_healthchecks_ping_their_own_node(services) -> None:
    for name in CELERY_SERVICES:
        service = services[name]
        node = option(service["command"], "-n", "--hostname")
        probe = healthcheck_argv(service)
        assert probe[:4] == ["celery", "-A", service["command"][2], "inspect"] and "ping" in probe, name
        assert option(probe, "--destination", "-d") == node.replace("%h", "$HOSTNAME"), name


def test_workers_get_time_to_finish_the_chunk_in_hand(services) -> None:
    def seconds(duration: str) -> int:
        units = {"h": 3600, "m": 60, "s": 1}
        return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))

    for name in ("worker", "worker-gpu"):
        settings = Settings.from_env(environment(services[name]))
        assert seconds(services[name]["stop_grace_period"]) > settings.task_time_limit_s, name


def test_gpu_worker_reserves_nvidia_devices(services) -> None:
    gpu = services["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert environment(gpu)["COLORIZE_DEVICE"] == "cuda"


# --- redis, storage, flower ----------------------------------------------------------------------


def test_redis_persists_every_write_and_never_evicts(services) -> None:
    redis = services["redis"]
    argv = redis["command"]
    assert argv[0] == "redis-server"
    assert option(argv, "--appendonly") == "yes"
    assert option(argv, "--maxmemory-policy") == "noeviction"
    assert "--port" not in argv
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert healthcheck_argv(redis) == ["redis-cli", "ping"]
    url = urlsplit(environment(services["api"])["REDIS_URL"])
    assert (url.hostname, url.port) == ("redis", 6379)


def test_rabbitmq_is_the_broker_with_its_own_user_and_durable_data(services) -> None:
    rabbitmq = services["rabbitmq"]
    url = urlsplit(Settings.from_env(environment(services["api"])).celery_broker_url)
    assert (url.scheme, url.hostname, url.port, url.path) == ("amqp", "rabbitmq", 5672, "//")
    env = environment(rabbitmq)
    assert (url.username, url.password) == (env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_PASS"])
    assert url.username != "guest"  # RabbitMQ lets guest in from loopback only
    assert any(volume.endswith(":/var/lib/rabbitmq") for volume in rabbitmq["volumes"])
    assert healthcheck_argv(rabbitmq)[:1] == ["rabbitmq-diagnostics"] and "ping" in healthcheck_argv(rabbitmq)
    assert "ports" not in rabbitmq  # only the services on the project network reach it


def test_registry_images_can_be_replaced_and_have_local_stand_ins(raw_compose) -> None:
    for name, variable in THIRD_PARTY_IMAGES.items():
        image = raw_compose["services"][name]["image"]
        assert re.fullmatch(r"\$\{" + variable + r":-[\w./-]+:[\w.-]+\}", image), (name, image)
        assert resolve(image, {variable: f"colorize-local/{name}"}) == f"colorize-local/{name}"
        stand_in = PROJECT_ROOT / "docker" / "local" / f"{variable.removesuffix('_IMAGE').lower()}.Dockerfile"
        assert stand_in.is_file(), stand_in
        assert dockerfile_instructions(stand_in)[1] == ("FROM", "${BASE_IMAGE}")
    check = (PROJECT_ROOT / "scripts" / "compose-check").read_text()
    assert all(variable in check for variable in (*THIRD_PARTY_IMAGES.values(), "PYTHON_IMAGE"))


def test_store_address_credentials_and_ports_agree(compose, services) -> None:
    s3 = services["s3"]
    argv = s3["command"]
    assert argv[0] == "server" and "-s3" in argv
    flags = dict(arg.lstrip("-").split("=", 1) for arg in argv if arg.startswith("-") and "=" in arg)
    port = int(flags["s3.port"])
    settings = Settings.from_env(environment(services["api"]))
    endpoint = urlsplit(settings.s3_endpoint_url)
    assert (endpoint.hostname, endpoint.port) == ("s3", port)
    [published] = s3["ports"]
    assert container_port(published) == port
    assert urlsplit(settings.s3_public_endpoint_url).port == host_port(published)
    assert f"127.0.0.1:{port}/healthz" in " ".join(healthcheck_argv(s3))
    assert any(volume.endswith(":/data") for volume in s3["volumes"]) and flags["dir"] == "/data"
    [config] = s3["configs"]
    assert config["target"] == flags["s3.config"]
    identities = json.loads(compose["configs"][config["source"]]["content"])["identities"]
    credentials = [(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]]
    assert credentials == [(settings.aws_access_key_id, settings.aws_secret_access_key)]
    assert settings.aws_secret_access_key == DEPLOYMENT_ENV["S3_SECRET_KEY"]


def test_flower_watches_the_same_broker(services) -> None:
    argv = services["flower"]["command"]
    assert argv[0] == "celery" and "flower" in argv
    [broker] = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--broker=")]
    assert broker == environment(services["api"])["CELERY_BROKER_URL"]
    assert services["flower"]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert all(mapping.startswith("127.0.0.1:") for mapping in services["flower"]["ports"])


@pytest.mark.integration
def test_the_bucket_command_creates_a_bucket_open_to_browsers(services, s3_server) -> None:
    argv = services["s3-init"]["command"]
    assert argv[:2] == ["python", "-c"]
    bucket = f"compose-{uuid.uuid4().hex[:12]}"
    env = environment(services["s3-init"]) | {
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COLORIZE_S3_PUBLIC_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "COLORIZE_S3_BUCKET": bucket,
    }
    for _ in range(2):  # a restarted one-shot finds the bucket there
        done = subprocess.run(
            [sys.executable, "-c", argv[2]],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
    )
    rules = client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert [{k: rule[k] for k in BROWSER_CORS_RULES[0]} for rule in rules] == BROWSER_CORS_RULES


# --- images --------------------------------------------------------------------------------------


def built_services(services) -> dict[str, dict]:
    return {name: service for name, service in services.items() if "build" in service}


def test_every_built_image_has_its_dockerfile(services) -> None:
    dockerfiles = {}
    for name, service in built_services(services).items():
        build = service["build"]
        assert build["context"] == "."
        path = PROJECT_ROOT / build["dockerfile"]
        assert path.is_file(), name
        dockerfiles[name] = build["dockerfile"]
    assert dockerfiles == {
        "api": "docker/api.Dockerfile",
        "s3-init": "docker/api.Dockerfile",
        "worker": "docker/worker.Dockerfile",
        "webhooks": "docker/worker.Dockerfile",
        "worker-gpu": "docker/worker-gpu.Dockerfile",
    }
    # Services sharing an image tag build it from the same Dockerfile.
    by_image: dict[str, set[str]] = {}
    for name, service in built_services(services).items():
        by_image.setdefault(service["image"], set()).add(service["build"]["dockerfile"])
    assert all(len(files) == 1 for files in by_image.values()), by_image


@pytest.mark.parametrize(
    "dockerfile", ["docker/api.Dockerfile", "docker/worker.Dockerfile", "docker/worker-gpu.Dockerfile"]
)
def test_dockerfile_copies_existing_sources_that_reach_the_build(dockerfile) -> None:
    instructions = dockerfile_instructions(PROJECT_ROOT / dockerfile)
    copies = [args.split() for kind, args in instructions if kind == "COPY"]
    sources = [source for args in copies for source in args[:-1] if not source.startswith("--")]
    assert sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"
        assert not dockerignore_excludes(source), f"{dockerfile}: .dockerignore leaves out {source}"
    # Everything pip installs: the packages pyproject.toml finds, and the files it reads.
    packages = {pattern.rstrip("*") for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", pyproject()["project"]["readme"]} <= set(sources)


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (".venv", "var", ".git", "tests", "api/__pycache__"):
        assert dockerignore_excludes(path), path


def test_cpu_images_are_python_slim_unless_told_and_install_the_project(services) -> None:
    for dockerfile in ("docker/api.Dockerfile", "docker/worker.Dockerfile"):
        instructions = dockerfile_instructions(PROJECT_ROOT / dockerfile)
        assert instructions[:2] == [("ARG", f"PYTHON_IMAGE={BASE_IMAGE}"), ("FROM", "${PYTHON_IMAGE}")], dockerfile
        runs = [args for kind, args in instructions if kind == "RUN"]
        # In a virtual environment (a distribution's Python refuses system-wide installs): the
        # dependencies pyproject.toml lists, in a layer of their own, then the project without them.
        assert runs[0] == "python3 -m venv /opt/colorize", dockerfile
        assert ("ENV", "PATH=/opt/colorize/bin:$PATH") in instructions, dockerfile
        assert "['project']['dependencies']" in runs[1] and "pip install -r requirements.txt" in runs[1], dockerfile
        assert "pip install --no-deps . " in " ".join(runs) + " ", dockerfile
    for name in ("api", "worker", "webhooks", "s3-init"):
        assert services[name]["build"]["args"] == {"PYTHON_IMAGE": BASE_IMAGE}, name


def test_gpu_image_is_cuda_based_with_the_gpu_extra() -> None:
    instructions = dockerfile_instructions(PROJECT_ROOT / "docker/worker-gpu.Dockerfile")
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("nvidia/cuda:")
    assert "runtime" in instructions[0][1]
    runs = " ".join(args for kind, args in instructions if kind == "RUN")
    extra = re.search(r'pip install "\.\[(\w[\w-]*)\]"', runs).group(1)
    assert extra == "gpu" and "onnxruntime-gpu" in " ".join(pyproject()["project"]["optional-dependencies"][extra])


def test_images_commands_match_the_compose_commands(services) -> None:
    def cmd(dockerfile: str) -> list[str]:
        [args] = [args for kind, args in dockerfile_instructions(PROJECT_ROOT / dockerfile) if kind == "CMD"]
        return json.loads(args)

    assert cmd("docker/api.Dockerfile") == services["api"]["command"]
    worker_cmd = cmd("docker/worker.Dockerfile")
    assert worker_cmd[:4] == services["worker"]["command"][:4]
    assert option(worker_cmd, "-Q") == QUEUE


def test_the_default_model_ships_inside_the_installed_package() -> None:
    # The images install the project (not editable): models_dir is the installed models package.
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["models"]
    model_dir = PROJECT_ROOT / "models" / DEFAULT_MODEL
    manifest = json.loads((model_dir / "manifest.json").read_text())
    for needed in ("manifest.json", manifest["file"]):
        relative = f"{DEFAULT_MODEL}/{needed}"
        assert (model_dir / needed).is_file()
        assert any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns), relative


# --- the same deployment on loopback (scripts/compose-check) -----------------------------------


LOOPBACK_ENV = DEPLOYMENT_ENV | {
    name: str(20000 + n)
    for n, name in enumerate(
        sorted(set(re.findall(r"\$\{((?:LOOPBACK_|API_PORT|S3_PORT)\w*)", LOOPBACK_FILE.read_text())))
    )
}


RESET = "!reset"  # compose's tag for a value the override file removes


class OverrideLoader(yaml.SafeLoader):
    """YAML as compose reads an override file: ``!reset`` removes what the base file set."""


OverrideLoader.add_constructor(RESET, lambda loader, node: RESET)


@pytest.fixture(scope="module")
def loopback() -> dict:
    return resolve(yaml.load(LOOPBACK_FILE.read_text(), Loader=OverrideLoader), LOOPBACK_ENV)


def test_loopback_variant_puts_every_default_service_on_the_host_network(services, loopback) -> None:
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert set(loopback["services"]) == default
    for name, service in loopback["services"].items():
        assert service["network_mode"] == "host", name
        if "build" in services[name]:
            assert service["build"] == {"network": "host"}, name
        for published in ("ports", "expose"):
            if published in services[name]:
                assert service[published] == RESET, (name, published)  # the host's ports are its own


def test_loopback_variant_names_no_address_but_loopback(services, loopback) -> None:
    text = json.dumps(loopback)
    assert set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text)) == {"127.0.0.1"}
    # No service name is left to resolve: the host's network has none of them (the proxy's
    # command names the upstream it rewrites).
    text = json.dumps({name: service for name, service in loopback["services"].items() if name != "proxy"})
    for name in ("api", "redis", "rabbitmq", "s3"):
        assert f"//{name}:" not in text and f"{name}:8000" not in text, name
    for name, service in loopback["services"].items():
        if name in APP_SERVICES:
            settings = Settings.from_env(environment(services[name]) | environment(service))
            for url in (settings.redis_url, settings.celery_broker_url, settings.s3_endpoint_url):
                assert urlsplit(url).hostname == "127.0.0.1", (name, url)


def test_loopback_variant_rewrites_the_real_nginx_configuration(loopback) -> None:
    # The proxy runs docker/nginx.conf with two lines rewritten: each sed pattern must match one.
    script = loopback["services"]["proxy"]["command"][2]
    patterns = re.findall(r"-e 's/([^/]+)/", script)
    text = NGINX_CONF.read_text()
    assert len(patterns) == 2 and all(text.count(pattern) == 1 for pattern in patterns), patterns


@pytest.mark.parametrize(
    "tries, holds, says",
    [
        ([1] * 1200, True, "held no item when it died"),  # killed between chunks: nothing to redo
        ([1] * 1190 + [2] * 10, True, "10 items ran more than once"),
        ([1] * 1199, False, ""),  # an item never begun
        ([0] + [1] * 1199, False, ""),
        ([1] * 1199 + [4], False, ""),  # begun more often than an item may be
    ],
)
def test_the_compose_check_needs_each_item_begun_within_its_attempts_not_a_redo(tries, holds, says) -> None:
    verdict, line = attempts_check(tries, 1200, max_attempts=3)
    assert verdict is holds and says in line, line
