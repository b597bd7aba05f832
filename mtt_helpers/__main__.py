"""``python -m mtt_helpers ...``: the ``mtt`` command (see :mod:`mtt_helpers.cli`)."""

from mtt_helpers.cli import main

if __name__ == "__main__":
    main()
