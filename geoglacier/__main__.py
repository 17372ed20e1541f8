"""``python -m geoglacier`` runs the command-line interface."""

from geoglacier.cli.main import main

if __name__ == "__main__":
    main()
