"""`python -m device`: the same as `iothub-device`."""

from .cli import main

if __name__ == "__main__":
    main()
