"""Domain values: frozen dataclasses and StrEnums shared by every part of the core."""
