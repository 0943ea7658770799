"""Dagster definitions: thin assets, sensors and resources over the plain-Python domain."""
