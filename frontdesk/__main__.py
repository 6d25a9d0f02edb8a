"""`python -m frontdesk` runs the `frontdesk` command."""

from frontdesk.cli import main

main()
