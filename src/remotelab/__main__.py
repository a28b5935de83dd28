"""``python -m remotelab`` is the ``remotelab`` command."""

from remotelab.cli import main

main()
