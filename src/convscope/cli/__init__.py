"""The ``convscope`` command line (typer). Each command mirrors a Python API call."""
