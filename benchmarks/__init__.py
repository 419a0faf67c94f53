"""Speed and accuracy benchmarks; each writes its figures with machine details to benchmarks/results/."""
