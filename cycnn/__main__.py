"""``python -m cycnn`` is the ``cycnn`` command."""
from cycnn.cli import main

main()
