"""Settings read from the environment: every value parsed by its type and checked, a bad one
refused with its variable, its value and what was expected, and the entry points ending with
that message instead of a traceback."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.embedded_services import free_port
from cli.main import main as cli_main
from shared.setting_types import Limits, Quotas
from shared.settings import PROJECT_ROOT, VARIABLES, Settings, SettingsError

BOOLEAN_FIELDS = [f.name for f in dataclasses.fields(Settings) if isinstance(getattr(Settings(), f.name), bool)]


def refusal(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return caught.value


# --- each value parsed by its type -------------------------------------------------------------


def test_there_are_boolean_settings_to_check() -> None:
    assert {"auth_allow_open_public", "webhook_allow_private"} <= set(BOOLEAN_FIELDS)


@pytest.mark.parametrize("name", BOOLEAN_FIELDS)
def test_a_mistyped_boolean_is_refused_not_taken_for_false(name: str) -> None:
    variable = "COLORIZE_" + name.upper()
    assert str(refusal({variable: "ture"})) == f"{variable}='ture' is not a boolean (true/false, 1/0, yes/no, on/off)"


@pytest.mark.parametrize(
    "raw, value",
    [
        ("true", True),
        ("1", True),
        ("Yes", True),
        (" on ", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_booleans_in_their_usual_spellings(raw: str, value: bool) -> None:
    assert Settings.from_env({"COLORIZE_WEBHOOK_ALLOW_PRIVATE": raw}).webhook_allow_private is value


@pytest.mark.parametrize(
    "variable, raw",
    [
        ("COLORIZE_API_PORT", "80a"),
        ("COLORIZE_CHUNK_SIZE", "8.5"),
        ("COLORIZE_MAX_PIXELS", "50M"),
        ("COLORIZE_REQUEST_BURST", ""),
    ],
)
def test_a_non_integer_is_refused(variable: str, raw: str) -> None:
    if not raw:  # an empty variable is unset, not a bad integer
        assert Settings.from_env({variable: raw}) == Settings()
        return
    assert str(refusal({variable: raw})) == f"{variable}={raw!r} is not an integer"


def test_a_non_number_is_refused() -> None:
    assert str(refusal({"COLORIZE_WEBHOOK_TIMEOUT_S": "5s"})) == "COLORIZE_WEBHOOK_TIMEOUT_S='5s' is not a number"
    assert str(refusal({"COLORIZE_REQUESTS_PER_S": "inf"})) == "COLORIZE_REQUESTS_PER_S='inf' is not a finite number"


@pytest.mark.parametrize(
    "variable, raw, expected",
    [
        ("COLORIZE_JPEG_QUALITY", "101", "must be at most 100"),
        ("COLORIZE_JPEG_QUALITY", "0", "must be at least 1"),
        ("COLORIZE_API_PORT", "65536", "must be at most 65535"),
        ("COLORIZE_CHUNK_SIZE", "0", "must be at least 1"),
        ("COLORIZE_WEBHOOK_TIMEOUT_S", "0", "must be greater than 0.0"),
        ("COLORIZE_WEBHOOK_PROGRESS_STEP_PCT", "150", "must be at most 100"),
        ("COLORIZE_MULTIPART_PART_BYTES", "1048576", "must be at least 5242880"),
        ("COLORIZE_MAX_ENTRIES", "-5", "must be at least 1"),  # Limits
        ("COLORIZE_MAX_COMPRESSION_RATIO", "0.5", "must be at least 1.0"),
        ("COLORIZE_MAX_JOBS_IN_FLIGHT", "-1", "must be at least 0"),  # Quotas: 0 turns one off
    ],
)
def test_an_out_of_range_value_is_refused(variable: str, raw: str, expected: str) -> None:
    assert str(refusal({variable: raw})) == f"{variable}={raw!r} {expected}"


@pytest.mark.parametrize(
    "variable, raw, expected",
    [
        ("COLORIZE_DEVICE", "gpu", "'auto', 'cpu' or 'cuda'"),
        ("COLORIZE_AUTH", "none", "'keys' or 'open'"),
        ("COLORIZE_LOG_FORMAT", "yaml", "'text' or 'json'"),
    ],
)
def test_an_unknown_enum_value_is_refused(variable: str, raw: str, expected: str) -> None:
    assert str(refusal({variable: raw})) == f"{variable}={raw!r} must be {expected}"


def test_urls_and_networks_are_checked() -> None:
    assert str(refusal({"COLORIZE_PUBLIC_URL": "colorize.example"})).startswith(
        "COLORIZE_PUBLIC_URL='colorize.example' is not a URL ("
    )
    assert str(refusal({"S3_ENDPOINT_URL": "http://s3:99999"})).startswith(
        "S3_ENDPOINT_URL='http://s3:99999' is not a URL"
    )
    # The variable named is the one the value came from, an alias included.
    assert "redis', 'rediss' or 'unix" in str(refusal({"REDIS_URL": "localhost:6379"}))
    assert str(refusal({"REDIS_URL": "localhost:6379"})).startswith("REDIS_URL='localhost:6379' is not a URL")
    message = str(refusal({"COLORIZE_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, 10.0.0.0/33"}))
    assert message.startswith("COLORIZE_WEBHOOK_ALLOWED_NETWORKS='10.0.0.0/8, 10.0.0.0/33' is not a comma-separated")
    assert "'10.0.0.0/33'" in message
    good = Settings.from_env(
        {
            "REDIS_URL": "unix:///run/redis.sock?db=1",
            "COLORIZE_PUBLIC_URL": "https://c.example/x",
            "COLORIZE_WEBHOOK_ALLOWED_NETWORKS": "10.1.2.3/8, fd00::/8",
        }
    )
    assert (good.redis_url, good.public_url) == (
        "unix:///run/redis.sock?db=1",
        "https://c.example/x",
    )  # kept as written


def test_a_bad_secret_is_refused_without_being_shown() -> None:
    key = "pL3LN0qxy3qM8VJ0dCC2sFKUd5RG7lJ-EbKqQ9S8kF"  # a real key missing its last characters
    message = str(refusal({"COLORIZE_CONNECTION_KEY": key}))
    assert message.startswith("COLORIZE_CONNECTION_KEY=<hidden, 42 characters> is not a Fernet key")
    assert key not in message and key[:12] not in message
    # A broker URL's password is hidden; the rest of it still says what was wrong.
    message = str(refusal({"COLORIZE_BROKER_URL": "ftp://colorize:s3cret-pass@rabbit:5672/"}))
    assert "s3cret-pass" not in message and "'ftp://colorize:***@rabbit:5672/'" in message


def test_the_redis_key_prefix_is_checked() -> None:
    assert Settings().redis_namespace == "colorize"  # unset: the keys as shared/redis_keys.py lists them
    assert Settings.from_env({"COLORIZE_REDIS_KEY_PREFIX": "staging:"}).redis_namespace == "staging:colorize"
    for bad in ("a b", "{tag}:", "jobs*", "x" * 65):
        assert str(refusal({"COLORIZE_REDIS_KEY_PREFIX": bad})).startswith(f"COLORIZE_REDIS_KEY_PREFIX={bad!r} ")


def test_every_bad_variable_is_reported_at_once() -> None:
    error = refusal({"COLORIZE_DEVICE": "gpu", "COLORIZE_API_PORT": "x", "COLORIZE_MAX_SIDE": "0"})
    assert len(error.problems) == 3
    assert str(error).splitlines()[0] == "3 invalid settings:"
    assert {line.split("=")[0].strip() for line in str(error).splitlines()[1:]} == {
        "COLORIZE_DEVICE",
        "COLORIZE_API_PORT",
        "COLORIZE_MAX_SIDE",
    }


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"COLORIZE_TASK_TIME_LIMIT_S": "300"},
            "COLORIZE_TASK_TIME_LIMIT_S=300 must exceed COLORIZE_TASK_SOFT_TIME_LIMIT_S=300",
        ),
        (
            {"COLORIZE_VISIBILITY_TIMEOUT_S": "60"},
            "COLORIZE_VISIBILITY_TIMEOUT_S=60 must exceed COLORIZE_TASK_TIME_LIMIT_S=360",
        ),
        (
            {"COLORIZE_WEBHOOK_RETRY_MAX_S": "1"},
            "COLORIZE_WEBHOOK_RETRY_MAX_S=1.0 must be at least COLORIZE_WEBHOOK_RETRY_BASE_S=5.0",
        ),
    ],
)
def test_settings_that_contradict_each_other_are_refused(env: dict[str, str], message: str) -> None:
    assert str(refusal(env)) == message


def test_values_are_parsed_by_type() -> None:
    settings = Settings.from_env(
        {
            "COLORIZE_API_PORT": " 9000 ",
            "COLORIZE_WEBHOOK_TIMEOUT_S": "2.5",
            "COLORIZE_DATA_DIR": "~/colorize",
            "COLORIZE_MAX_COMPRESSION_RATIO": "50",
            "COLORIZE_REQUESTS_PER_S": "0",
            "COLORIZE_AUTH": "keys",
        }
    )
    assert settings.api_port == 9000 and settings.webhook_timeout_s == 2.5
    assert settings.data_dir == Path.home() / "colorize"
    assert settings.limits.max_compression_ratio == 50.0 and settings.quotas.requests_per_s == 0.0
    assert settings.auth == "keys"


def test_empty_variables_are_unset_and_colorize_names_win_over_aliases() -> None:
    settings = Settings.from_env(
        {
            "S3_ENDPOINT_URL": "",
            "AWS_ENDPOINT_URL_S3": "http://first:1",
            "AWS_ENDPOINT_URL": "http://second:2",
            "AWS_REGION": "eu-west-3",
            "COLORIZE_S3_REGION": "",
            "COLORIZE_AUTH": "",
            "COLORIZE_REDIS_URL": "redis://a:1/0",
            "REDIS_URL": "redis://b:2/0",
        }
    )
    assert settings.s3_endpoint_url == "http://first:1"
    assert settings.s3_region == "eu-west-3" and settings.auth is None
    assert settings.redis_url == "redis://a:1/0"


# --- unknown variables -------------------------------------------------------------------------


def test_unknown_colorize_variables_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.settings"):
        Settings.from_env(
            {
                "COLORIZE_CHUNKSIZE": "4",
                "COLORIZE_WEBHOOKS_ENABLED": "1",
                "COLORIZE_API_URL": "http://x",
                "COLORIZE_SOAK": "1",
                "UNRELATED": "1",
            }
        )
    assert [r.getMessage() for r in caplog.records] == [
        "COLORIZE_CHUNKSIZE is not a setting and is ignored (did you mean COLORIZE_CHUNK_SIZE?)",
        "COLORIZE_WEBHOOKS_ENABLED is not a setting and is ignored",
    ]


# --- the object --------------------------------------------------------------------------------


def test_the_broker_is_redis_unless_celery_broker_url_names_another() -> None:
    alone = Settings.from_env({"REDIS_URL": "redis://r:6379/0"})
    assert (alone.broker_url, alone.celery_broker_url, alone.broker_is_amqp) == (None, "redis://r:6379/0", False)
    rabbit = Settings.from_env({"REDIS_URL": "redis://r:6379/0", "CELERY_BROKER_URL": "amqp://u:p@q:5672//"})
    assert (rabbit.redis_url, rabbit.celery_broker_url, rabbit.broker_is_amqp) == (
        "redis://r:6379/0",
        "amqp://u:p@q:5672//",
        True,
    )
    assert (
        Settings.from_env({"COLORIZE_BROKER_URL": "amqps://q/v", "CELERY_BROKER_URL": "amqp://x//"}).broker_url
        == "amqps://q/v"
    )
    assert Settings(broker_url="redis://other:6379/1").broker_is_amqp is False
    assert str(refusal({"CELERY_BROKER_URL": "kafka://q:9092"})).startswith(
        "CELERY_BROKER_URL='kafka://q:9092' is not a URL"
    )


def every_field_changed() -> Settings:
    return Settings(
        redis_url="redis://broker:6380/2",
        broker_url="amqp://colorize:pw@rabbitmq:5672/colorize",
        s3_endpoint_url="http://store:8333",
        s3_public_endpoint_url="https://store.example",
        s3_bucket="photos",
        s3_region="eu-west-3",
        aws_access_key_id="id",
        aws_secret_access_key="secret",
        data_dir=Path("/srv/colorize"),
        api_host="0.0.0.0",
        api_port=8080,
        auth="open",
        auth_allow_open_public=True,
        public_url="https://colorize.example",
        trusted_proxies="10.1.0.0/16,fd00::/8",
        models_dir=Path("/srv/models"),
        model="eccv16",
        device="cuda",
        engine_threads=2,
        batch_size=4,
        jpeg_quality=75,
        chunk_size=32,
        worker_concurrency=3,
        visibility_timeout_s=900,
        task_soft_time_limit_s=200,
        task_time_limit_s=250,
        item_max_attempts=5,
        outage_retry_s=60,
        result_ttl_s=3600,
        presign_ttl_s=300,
        multipart_part_bytes=8 * 1024**2,
        webhook_timeout_s=2.5,
        webhook_max_attempts=3,
        webhook_retry_base_s=1.5,
        webhook_retry_max_s=60.25,
        webhook_progress_interval_s=0.0,
        webhook_progress_step_pct=0,
        webhook_allow_private=True,
        webhook_allowed_networks="10.0.0.0/8,fd00::/8",
        connection_key="pL3LN0qxy3qM8VJ0dCC2sFKUd5RG7lJ-EbKqQ9S8kFE=",
        log_format="json",
        worker_metrics_port=9100,
        metrics_dir=Path("/run/metrics"),
        redis_key_prefix="staging:",
        api_redis_connections=16,
        api_redis_wait_s=2.5,
        limits=Limits(
            max_request_bytes=1,
            max_upload_bytes=2,
            max_json_bytes=10,
            max_entries=3,
            max_expanded_bytes=4,
            max_entry_bytes=5,
            max_compression_ratio=6.5,
            max_pixels=7,
            max_side=8,
            worker_memory_bytes=3 * 1024**3,
            source_deadline_s=9.5,
            source_min_bytes_per_s=0,
        ),
        quotas=Quotas(
            max_jobs_in_flight=0,
            max_images_per_day=9,
            requests_per_s=0.5,
            request_burst=10,
            max_stored_bytes=11,
            auth_failures_per_s=0.25,
            auth_failure_burst=12,
        ),
    )


def test_to_env_round_trips_through_from_env() -> None:
    custom, default = every_field_changed(), Settings()
    for f in dataclasses.fields(Settings):  # a round trip of defaults would prove little
        assert getattr(custom, f.name) != getattr(default, f.name), f.name
    for group in (Limits, Quotas):
        for f in dataclasses.fields(group):
            assert getattr(getattr(custom, group.__name__.lower()), f.name) != getattr(group(), f.name), f.name
    for settings in (default, custom):
        env = settings.to_env()
        assert set(env) <= {names[0] for names in VARIABLES.values()}
        assert all(isinstance(value, str) for value in env.values())
        assert Settings.from_env(env) == settings


def test_with_overrides_checks_each_value_and_leaves_the_original() -> None:
    base = Settings()
    changed = base.with_overrides(device="cpu", quotas=Quotas(max_images_per_day=3))
    assert (changed.device, changed.quotas.max_images_per_day, base.device) == ("cpu", 3, "auto")
    with pytest.raises(SettingsError, match=r"^COLORIZE_JPEG_QUALITY=0 must be at least 1$"):
        base.with_overrides(jpeg_quality=0)
    with pytest.raises(SettingsError, match="COLORIZE_DEVICE='gpu' must be"):
        base.with_overrides(device="gpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.device = "cpu"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Settings(log_format="yaml")


# --- entry points --------------------------------------------------------------------------------

BAD = {"COLORIZE_WEBHOOK_ALLOW_PRIVATE": "ture"}
BAD_MESSAGE = "colorize: COLORIZE_WEBHOOK_ALLOW_PRIVATE='ture' is not a boolean (true/false, 1/0, yes/no, on/off)"


def run_with(argv: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=base | env, capture_output=True, text=True, timeout=120, check=False
    )


def test_from_env_or_exit_prints_the_message_and_exits(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        Settings.from_env_or_exit(BAD, status=7)
    assert exited.value.code == 7
    assert capsys.readouterr().err.strip() == BAD_MESSAGE


def test_the_cli_reports_bad_settings_as_a_usage_error() -> None:
    err = io.StringIO()
    assert cli_main(["serve"], env=BAD, stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().strip() == BAD_MESSAGE


@pytest.mark.parametrize(
    "argv, status",
    [
        (["-m", "cli.local_stack"], 2),  # ./scripts/serve
        (["-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "colorize"], 2),
        # gunicorn's "App failed to load": the master stops rather than restarting workers.
        (["-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1", "api.app:create_app()"], 4),
    ],
)
def test_entry_points_exit_with_the_message_not_a_traceback(argv: list[str], status: int, tmp_path: Path) -> None:
    argv = [arg.format(port=free_port()) for arg in argv]
    done = run_with(argv, tmp_path, BAD | {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == status, done.stderr
    assert BAD_MESSAGE in done.stderr.splitlines()
    assert "Traceback" not in done.stderr
