"""``python -m cli``: the ``herald`` command run by a given interpreter."""

from cli.main import app

app()
