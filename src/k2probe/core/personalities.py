"""The emulator's gateway personalities by name. A route's configuration names one (core validates it); the emulator
plays it. Kept here, at the bottom, so configuration never imports the emulator."""

PERSONALITIES = ("moonshot", "openrouter", "lossy-relay", "param-dropper", "litellm")
