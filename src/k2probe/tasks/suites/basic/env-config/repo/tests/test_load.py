from appconfig.load import load_config


def test_defaults_kept():
    assert load_config({"port": 80}, {}) == {"port": 80}
