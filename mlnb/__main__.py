"""`python -m mlnb` runs the command line."""

from mlnb.cli import main

main()
