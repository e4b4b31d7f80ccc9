"""The bottom layer: configuration, profiles, sanitising, records, failure classes, redaction, errors. Imports no
other k2probe layer."""
