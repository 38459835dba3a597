"""Machine learning: features, labels, purged walk-forward splits and the leak guard."""
