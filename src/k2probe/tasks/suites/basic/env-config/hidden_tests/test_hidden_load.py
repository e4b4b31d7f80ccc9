import pytest
from appconfig.load import load_config


def test_types():
    env = {"APP_PORT": "8080", "APP_DEBUG": "yes", "APP_RATIO": "0.5", "APP_NAME": "api"}
    got = load_config({"port": 80, "debug": False, "ratio": 1.0, "name": "x"}, env)
    assert got == {"port": 8080, "debug": True, "ratio": 0.5, "name": "api"}


def test_bad_value_names_variable():
    with pytest.raises(ValueError, match="APP_PORT"):
        load_config({"port": 80}, {"APP_PORT": "eighty"})
