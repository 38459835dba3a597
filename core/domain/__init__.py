"""Domain values: value classes (frozen to mypy: core.values) and StrEnums for the whole core."""
