"""`python -m demo`."""

from .cli import main

main()
