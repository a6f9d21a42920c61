"""`python -m bench`: the whole suite, as bench/run.py."""

from bench.run import main

main()
