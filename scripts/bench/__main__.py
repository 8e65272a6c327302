"""`python -m scripts.bench`: the same as `scripts/bench/run.py`."""

from scripts.bench.run import main

main()
