"""surgery's benchmarks: `python -m bench` runs the suite (bench/run.py); each bench/*.py also runs on its own."""
