"""Local fakes of third-party HTTP APIs, strict about what the real ones refuse; the
provider sink (``devtools/sinks.py``) serves them, and tests call them in process."""
