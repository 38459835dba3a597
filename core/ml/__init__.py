"""Machine learning: features, labels, purged walk-forward splits and the leak guard; members
(one interface), their safe artifacts, health checks."""
