"""The active-learning loop, its run directory, the shared base-score cache and its random streams."""
