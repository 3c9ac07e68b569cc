"""`python -m emulator`: the same as the `iothub-emulator` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m emulator")
