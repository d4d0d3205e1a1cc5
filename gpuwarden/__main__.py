"""``python -m gpuwarden``: the same command line as the ``gpuwarden`` console script."""

from gpuwarden.cli import main

main()
