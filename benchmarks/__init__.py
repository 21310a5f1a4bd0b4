"""convscope benchmark suite: ``make bench`` (``benchmarks/run.py``); see docs/performance.md."""
