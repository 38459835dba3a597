"""Machine learning: members (one interface), their safe artifacts, health checks."""
