"""Entry point for `python -m dtec`."""

from dtec.cli import main

main()
