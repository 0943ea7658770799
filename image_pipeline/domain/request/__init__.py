"""One request from upload to final status, files in the order things happen (docs/architecture.md)."""
