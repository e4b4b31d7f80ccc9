"""Code that runs inside the sandbox on k2probe's behalf (never imported by k2probe itself): the guarded pytest runner."""
