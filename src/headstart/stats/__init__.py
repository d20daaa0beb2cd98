"""Layer 1: the statistics of the experiment (split, probe, evaluation, learning curves, transferability,
leakage, racing); numpy, scipy and scikit-learn, no torch."""
