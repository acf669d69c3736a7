"""``python -m colony``: the same as the ``colony`` command."""

from colony.cli.main import app

app()
