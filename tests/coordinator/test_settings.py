"""Settings: the original format, environment overrides, and refusals that name the keys."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xaynet.coordinator import logs
from xaynet.coordinator.settings import Settings, SettingsError, environment_overrides, load_settings

ORIGINAL = """
[log]
filter = "xaynet=debug,http=warn,info"
[api]
bind_address = "127.0.0.1:8081"
tls_certificate = "/app/ssl/tls.pem"
tls_key = "/app/ssl/tls.key"
[pet]
min_sum_count = 1
max_sum_count = 100
min_update_count = 3
max_update_count = 1000
min_sum2_count = 1
max_sum2_count = 100
min_sum_time = 5
max_sum_time = 3600
min_update_time = 10
max_update_time = 3600
min_sum2_time = 5
max_sum2_time = 3600
sum = 0.5
update = 0.9
[mask]
group_type = "Prime"
data_type = "F32"
bound_type = "B0"
model_type = "M3"
[model]
length = 4
[metrics.influxdb]
url = "http://localhost:8086"
db = "metrics"
[redis]
url = "redis://127.0.0.1/"
[s3]
access_key = "minio"
secret_access_key = "minio123"
region = ["minio", "http://localhost:9000"]
[restore]
enable = true
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_original_format_loads(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, ORIGINAL), environ={})
    assert settings.model.length == 4
    assert str(settings.mask.config) == "Prime/F32/B0/M3"
    assert settings.redis is not None
    assert settings.redis.url == "redis://127.0.0.1/"
    assert settings.api.port == 8081
    unimplemented = settings.unimplemented_sections()
    assert any("[metrics]" in s for s in unimplemented)


def test_redis_is_optional(tmp_path: Path) -> None:
    text = ORIGINAL.replace('[redis]\nurl = "redis://127.0.0.1/"\n', "")
    assert load_settings(_write(tmp_path, text), environ={}).redis is None


def test_environment_overrides_win(tmp_path: Path) -> None:
    env = {
        "XAYNET_PET__MIN_SUM_COUNT": "2",
        "XAYNET_MASK__GROUP_TYPE": "Integer",
        "XAYNET__MODEL__LENGTH": "10",
        "XAYNET_REDIS__URL": "redis://:secret@redis-master:6379/1",
        "XAYNET_CLIENT": "debug",
    }
    settings = load_settings(_write(tmp_path, ORIGINAL), environ=env)
    assert settings.pet.min_sum_count == 2
    assert str(settings.mask.config) == "Integer/F32/B0/M3"
    assert settings.model.length == 10
    assert settings.redis is not None
    assert settings.redis.url.endswith("@redis-master:6379/1")
    assert environment_overrides({"XAYNET_CLIENT": "debug"}) == {}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            ("max_sum_count = 100", "max_sum_count = 2000"),
            "pet.max_sum_count (2000) exceeds mask.model_type M3 (1000)",
        ),
        (("sum = 0.5", "sum = 1.0"), "pet.sum (1.0)"),
        (("update = 0.9", "update = 1.5"), "pet.update (1.5)"),
        (("min_sum_count = 1", "min_sum_count = 200"), "pet.min_sum_count (200)"),
        (("min_update_count = 3", "min_update_count = 2"), "pet.min_update_count (2)"),
        (("min_sum_time = 5", "min_sum_time = 5000"), "pet.min_sum_time (5000) exceeds pet.max_sum_time"),
        (
            ('group_type = "Prime"', 'group_type = "Primes"'),
            'mask.group_type: \'Primes\' is not one of "Integer", "Prime", "Power2"; did you mean "Prime"?',
        ),
        (
            ('model_type = "M3"', 'model_type = "M4"'),
            'mask.model_type: \'M4\' is not one of "M3", "M6", "M9", "M12"',
        ),
        (('bind_address = "127.0.0.1:8081"', 'bind_address = "localhost"'), "api.bind_address"),
        (("length = 4", "length = -1"), "model.length"),
        (('url = "redis://127.0.0.1/"', 'url = "http://redis"'), "redis.url"),
    ],
)
def test_inconsistent_settings_are_refused_naming_the_keys(
    tmp_path: Path, change: tuple[str, str], named: str
) -> None:
    text = ORIGINAL.replace(*change, 1)
    assert text != ORIGINAL
    with pytest.raises(SettingsError) as refused:
        load_settings(_write(tmp_path, text), environ={})
    assert named in str(refused.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[pet\n"), environ={})


@pytest.mark.parametrize(
    ("change", "env", "message"),
    [
        (
            ("sum = 0.5", "sum = 0.5\nmin_sum_cout = 2"),
            {},
            "unknown key pet.min_sum_cout; did you mean pet.min_sum_count?",
        ),
        (("[pet]", "[pett]\nx = 1\n[pet]"), {}, "unknown section [pett]; did you mean [pet]?"),
        (
            ("", ""),
            {"XAYNET_REDIS__URLL": "redis://x"},
            "unknown key redis.urll; did you mean redis.url? "
            "(from the environment variable XAYNET_REDIS__URLL)",
        ),
    ],
)
def test_a_typo_stops_the_start_with_a_did_you_mean(
    tmp_path: Path, change: tuple[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_write(tmp_path, ORIGINAL.replace(*change, 1)), environ=env)
    assert str(refused.value) == f"{tmp_path / 'config.toml'}: {message}"


def test_every_v0_11_key_is_known(tmp_path: Path) -> None:
    text = ORIGINAL.replace("[restore]", '[s3.buckets]\nglobal_models = "global-models"\n[restore]').replace(
        'tls_key = "/app/ssl/tls.key"', 'tls_key = "/app/ssl/tls.key"\ntls_client_auth = "/app/ssl/ca.pem"'
    )
    settings = load_settings(_write(tmp_path, text), environ={"XAYNET_S3__ACCESS_KEY": "k"})
    assert settings.s3 is not None and settings.s3.access_key == "k"
    assert any("tls_client_auth" in w for w in settings.warnings())


def test_the_original_max_update_count_is_capped_with_a_warning(tmp_path: Path) -> None:
    text = ORIGINAL.replace("max_update_count = 1000", "max_update_count = 10000")
    settings = load_settings(_write(tmp_path, text), environ={})
    assert settings.pet.max_update_count == 1000
    assert any("pet.max_update_count = 10000" in w and "capped to 1000" in w for w in settings.warnings())
    # Settings built directly (the operator's) are refused instead: a new resource has no legacy.
    document = settings.model_dump()
    document["pet"]["max_update_count"] = 10000
    with pytest.raises(ValueError, match=r"pet.max_update_count \(10000\) exceeds"):
        Settings.model_validate(document)


def test_tls_lines_alone_do_nothing_and_say_how_to_switch_tls_on(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, ORIGINAL), environ={})
    assert settings.api.tls is False
    assert settings.api.tls_certificate is None and settings.api.tls_key is None
    notes = [w for w in settings.warnings() if "tls_certificate" in w]
    assert len(notes) == 1 and "[api] tls = true" in notes[0]


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_switched_on_names_the_key_and_path_of_a_bad_file(tmp_path: Path) -> None:
    cert_a, key_a = _certificate(tmp_path, "a")
    _cert_b, key_b = _certificate(tmp_path, "b")

    def load(cert: Path | str, key: Path | str) -> Settings:
        text = ORIGINAL.replace("/app/ssl/tls.pem", str(cert)).replace("/app/ssl/tls.key", str(key))
        return load_settings(_write(tmp_path, text), environ={"XAYNET_API__TLS": "true"})

    assert load(cert_a, key_a).api.tls_certificate == cert_a
    with pytest.raises(SettingsError, match=f"api.tls_key: {tmp_path / 'missing.key'} does not exist"):
        load(cert_a, tmp_path / "missing.key")
    with pytest.raises(SettingsError) as mismatched:
        load(cert_a, key_b)
    assert f"api.tls_certificate {cert_a} and api.tls_key {key_b}" in str(mismatched.value)
    assert "\n" not in str(mismatched.value)
    without_key = ORIGINAL.replace("/app/ssl/tls.pem", str(cert_a)).replace(
        'tls_key = "/app/ssl/tls.key"\n', ""
    )
    with pytest.raises(SettingsError, match=r"api\.tls = true needs api\.tls_key"):
        load_settings(_write(tmp_path, without_key), environ={"XAYNET_API__TLS": "1"})


def test_a_directory_is_not_a_settings_file(tmp_path: Path) -> None:
    _write(tmp_path, ORIGINAL)
    with pytest.raises(SettingsError, match=f"did you mean -c {tmp_path / 'config.toml'}"):
        load_settings(tmp_path, environ={})


def test_cli_refuses_bad_settings_with_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL.replace("min_update_count = 3", "min_update_count = 2"))
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "coordinator", "-c", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pet.min_update_count" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("directives", "level"),
    [
        ("xaynet=debug,http=warn,info", logging.DEBUG),
        ("warn", logging.WARNING),
        ("info,xaynet=error", logging.ERROR),
        ("", logging.INFO),
    ],
)
def test_log_filter_levels(directives: str, level: int) -> None:
    assert logs.level_from_filter(directives) == level
