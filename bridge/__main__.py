"""`python -m bridge` is the same as the `callbridge` command."""

from bridge.cli import main

main()
