"""The active-learning loop, its resolved and checked config, its run directory, the shared base-score cache and its random streams."""
