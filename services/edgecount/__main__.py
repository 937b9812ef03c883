"""``python -m edgecount``: the command line."""

from edgecount.cli import main

# Guarded: the watchdog's fork server imports the parent's main module as ``__mp_main__``.
if __name__ == "__main__":
    raise SystemExit(main())
