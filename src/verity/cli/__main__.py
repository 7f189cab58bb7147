"""``python -m verity.cli``: the ``verity`` command."""

from . import main

main()
