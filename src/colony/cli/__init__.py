"""The ``colony`` command line."""
