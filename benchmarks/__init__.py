"""pushgo's benchmark suite (PERFORMANCE.md): ``python -m benchmarks``; see README.md."""
