"""Layer 6: what a run hands over (report, plots, model export, predict)."""
