"""The guide's environment variables by name: light to import, so the CLI knows which values are keys before anything
heavier loads or prints."""

KEY_ENVS = ("AI_GATEWAY_API_KEY", "MOONSHOT_API_KEY")
BASE_URL_ENV = "AI_GATEWAY_BASE_URL"
MODEL_ENV = "KIMI_CODING_MODEL"
PROFILE_ENV = "KIMI_CODING_PROFILE"  # names the profile when the model id is a gateway alias
