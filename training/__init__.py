"""Training: data, trainers, losses, metrics, export to bundles."""
