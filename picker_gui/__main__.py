"""``python -m picker_gui`` runs the command line."""

from picker_gui.cli import main

raise SystemExit(main())
