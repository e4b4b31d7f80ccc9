def load_config(defaults, env):
    return dict(defaults)
