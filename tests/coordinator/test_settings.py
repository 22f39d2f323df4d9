"""Settings: the original format, environment overrides, and refusals that name the keys."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from xaynet.coordinator import logs
from xaynet.coordinator.settings import SettingsError, environment_overrides, load_settings

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
    assert any("[s3]" in s for s in unimplemented)


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
            ("max_update_count = 1000", "max_update_count = 10000"),
            "pet.max_update_count (10000) exceeds what mask.model_type M3",
        ),
        (("sum = 0.5", "sum = 1.0"), "pet.sum (1.0)"),
        (("update = 0.9", "update = 1.5"), "pet.update (1.5)"),
        (("min_sum_count = 1", "min_sum_count = 200"), "pet.min_sum_count (200)"),
        (("min_update_count = 3", "min_update_count = 2"), "pet.min_update_count (2)"),
        (("min_sum_time = 5", "min_sum_time = 5000"), "pet.min_sum_time (5000) exceeds pet.max_sum_time"),
        (('group_type = "Prime"', 'group_type = "Prim"'), "mask"),
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
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_settings(_write(tmp_path, text), environ={})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[pet\n"), environ={})


def test_unknown_keys_are_reported(tmp_path: Path) -> None:
    settings = load_settings(
        _write(tmp_path, ORIGINAL.replace("sum = 0.5", "sum = 0.5\nsumm = 0.4")), environ={}
    )
    assert settings.unknown_keys() == ["pet.summ"]


def test_cli_refuses_bad_settings_with_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, ORIGINAL.replace("max_update_count = 1000", "max_update_count = 10000"))
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "coordinator", "-c", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pet.max_update_count" in result.stderr


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
