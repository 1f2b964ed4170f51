"""``python -m callvault.cli``: the same as the ``callvault`` command."""

from callvault.cli import main

main()
