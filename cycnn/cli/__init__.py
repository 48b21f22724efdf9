"""The command line: thin commands that parse flags, call the library and print (``cycnn --help``)."""
from cycnn.cli.app import app, main

__all__ = ["app", "main"]
