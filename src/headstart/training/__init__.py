"""Layer 4: how arms train (the strategy registry, the one training loop, the trunk cache, the feature cache,
cost accounting)."""
