"""``python -m mtt ...``: the ``mtt`` command (see :mod:`mtt.cli`)."""

from mtt.cli import main

if __name__ == "__main__":
    main()
