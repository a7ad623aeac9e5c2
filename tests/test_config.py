"""Settings: TOML file plus environment, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config
from bridge.config.model import MANGO_SOURCE_IPS


def test_defaults_need_no_file_and_no_environment() -> None:
    settings = load_config(environ={})
    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 8080
    assert settings.ws.port == 8081
    assert settings.database.url == "sqlite:///var/callbridge.db"
    assert settings.mango.api_url == "https://app.mango-office.ru/vpbx/"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "callbridge.toml"
    path.write_text(
        '[mango]\napi_key = "from-file"\napi_salt = "file-salt"\n[http]\nport = 9000\n'
        '[connectors.webhook]\nurl = "https://example.com/hook"\n'
    )
    settings = load_config(
        path,
        environ={
            "CALLBRIDGE_MANGO_API_KEY": "from-env",
            "CALLBRIDGE_HTTP_HOST": "0.0.0.0",
            "CALLBRIDGE_CONNECTORS_WEBHOOK_SECRET": "s" * 20,
        },
    )
    assert settings.mango.api_key == "from-env"
    assert settings.mango.api_salt.get_secret_value() == "file-salt"
    assert settings.http.port == 9000
    assert settings.http.host == "0.0.0.0"
    assert settings.connectors["webhook"] == {"url": "https://example.com/hook", "secret": "s" * 20}


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[api]\ntoken = "tok"\n')
    settings = load_config(environ={"CALLBRIDGE_CONFIG": str(path)})
    assert settings.api.token.get_secret_value() == "tok"


def test_fixed_variable_names_map_to_their_keys() -> None:
    settings = load_config(
        environ={
            "CALLBRIDGE_MANGO_API_KEY": "k",
            "CALLBRIDGE_MANGO_API_SALT": "s",
            "CALLBRIDGE_MANGO_API_URL": "http://127.0.0.1:8090/vpbx",
            "CALLBRIDGE_HTTP_HOST": "0.0.0.0",
            "CALLBRIDGE_HTTP_PORT": "8088",
            "CALLBRIDGE_WS_PORT": "8089",
            "CALLBRIDGE_DATABASE_URL": "postgresql+psycopg://u@h/db",
            "CALLBRIDGE_API_TOKEN": "t",
        }
    )
    assert settings.mango.api_url == "http://127.0.0.1:8090/vpbx/"
    assert (settings.http.port, settings.ws.port) == (8088, 8089)
    assert settings.database.url.startswith("postgresql")
    assert settings.api.token.get_secret_value() == "t"


def test_mango_preset_expands_to_published_addresses() -> None:
    settings = load_config(environ={"CALLBRIDGE_MANGO_ALLOWED_IPS": "mango, 10.0.0.0/8"})
    assert settings.mango.allowed_ips == ["10.0.0.0/8", *MANGO_SOURCE_IPS]


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"CALLBRIDGE_HTTP_PORT": "eighty"}, "http.port (env CALLBRIDGE_HTTP_PORT)"),
        ({"CALLBRIDGE_HTTP_PORT": "70000"}, "http.port"),
        ({"CALLBRIDGE_MANGO_API_URL": "ftp://x"}, "mango.api_url"),
        ({"CALLBRIDGE_HTTP_PROT": "1"}, "unknown setting(s) in the environment: CALLBRIDGE_HTTP_PROT"),
    ],
)
def test_invalid_values_name_the_key(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ)
    assert words in str(excinfo.value)


def test_secrets_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"CALLBRIDGE_MANGO_API_SALT": "very-secret-salt", "CALLBRIDGE_HTTP_PORT": "x"})
    assert "very-secret-salt" not in str(excinfo.value)
    settings = load_config(environ={"CALLBRIDGE_MANGO_API_SALT": "very-secret-salt"})
    assert "very-secret-salt" not in repr(settings)


def test_missing_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[http\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, environ={})


def test_an_unknown_key_in_the_file_names_the_file_and_the_closest_key(tmp_path: Path) -> None:
    file = tmp_path / "callbridge.toml"
    file.write_text('[mango]\napisalt = "x"\n[htpp]\nport = 1\n[mango_office]\nkey = 1\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(file, environ={})
    message = str(excinfo.value)
    assert "unknown setting `mango.apisalt` in callbridge.toml (did you mean `mango.api_salt`?)" in message
    assert "unknown setting `htpp` in callbridge.toml (did you mean `http`?)" in message
    assert "unknown setting `mango_office` in callbridge.toml\n" in message + "\n"  # nothing close enough


def test_an_unknown_variable_names_the_closest_one() -> None:
    with pytest.raises(
        ConfigError, match=r"CALLBRIDGE_MANGO_APISALT \(did you mean CALLBRIDGE_MANGO_API_SALT\?\)"
    ):
        load_config(environ={"CALLBRIDGE_MANGO_APISALT": "x"})


def test_an_allowed_ips_entry_that_is_no_address_stops_the_start() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"CALLBRIDGE_MANGO_ALLOWED_IPS": "192.0.2.1, 10.0.0.0/8, office-router"})
    assert "mango.allowed_ips" in str(excinfo.value)
    assert "'office-router' is not an IP address or network" in str(excinfo.value)
    assert load_config(environ={"CALLBRIDGE_MANGO_ALLOWED_IPS": "mango, 2001:db8::/32"}).mango.allowed_ips[
        0
    ] == ("2001:db8::/32")
