"""``python -m assay``: the same command line as the ``assay`` script."""

from assay.cli import main

if __name__ == "__main__":
    main()
