"""Training: the configuration, the loop, its extensions and the run folder."""
