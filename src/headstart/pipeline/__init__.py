"""Layer 5: one run before outputs (context, frozen pass, arm runners, units, assessment, checks, grid,
summary)."""
