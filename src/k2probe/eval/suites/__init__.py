"""The built-in suites, each one module implementing eval/suite.py's Suite (registered there by name)."""
