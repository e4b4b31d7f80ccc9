"""The client-checking proxy: a local /v1 endpoint a team points its own framework at; every request checked against
the route's profile (findings), optionally refused or repaired, forwarded, timed and recorded as a `proxy` run."""
