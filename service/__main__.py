"""`python -m service`."""

from .cli import main

main()
