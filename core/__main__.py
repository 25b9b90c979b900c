"""``python -m assay``: the same command line as the ``assay`` script."""

from assay.commands.cli import main

if __name__ == "__main__":
    main()
