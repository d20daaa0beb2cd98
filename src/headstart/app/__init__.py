"""Layer 7: the application: run_experiment / run_assess composition, the CLI, the demo."""
