"""Layer 2: backbones and what runs them (registry, factory, model families, architecture metadata, BatchNorm
folding and shift hooks, the weights format, the device rule)."""
