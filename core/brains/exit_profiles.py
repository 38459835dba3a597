"""The Exit Brain's ladder per market regime: which profile a trade entered in a regime gets.

Profiles are named by a regime label (``trend_high_vol``) or a group (``trend``, ``range``);
a label's own profile wins over its group's, and a regime with neither (or UNKNOWN, during
warm-up) trades the seed ladder, ``default``. The choice is made once, at the entry, and kept
by the trade: a regime that flips while it is open does not change its ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from core.brains.exit_config import ExitConfig
from core.brains.regime import Regime
from core.values import value_class

DEFAULT_PROFILE = "default"


@value_class(frozen=True, slots=True, kw_only=True)
class ExitProfiles:
    """The seed ladder and the regime profiles (see module docstring)."""

    default: ExitConfig
    by_name: Mapping[str, ExitConfig] = field(default_factory=dict)

    def name_for(self, regime: Regime) -> str:
        """Return the profile a trade entered in ``regime`` uses."""
        if regime is Regime.UNKNOWN:
            return DEFAULT_PROFILE
        label = regime.label
        if label in self.by_name:
            return label
        group = label.split("_", 1)[0]  # trend | range
        return group if group in self.by_name else DEFAULT_PROFILE

    def config(self, name: str) -> ExitConfig:
        """Return the ladder of profile ``name`` (the seed ladder for one not configured:
        a trade stored before the profiles changed keeps trading safely)."""
        return self.by_name.get(name, self.default)
