"""``python -m workhorse`` is the ``workhorse`` command."""

from workhorse.cli import main

if __name__ == "__main__":
    main(prog_name="workhorse")
