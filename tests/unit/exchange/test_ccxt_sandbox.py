"""``QT__EXCHANGE__SANDBOX=true`` on every venue ccxt knows: a testnet, or one config error.

ccxt has no testnet for about half of its venues (kraken, coinbase, kucoin, ...); asked for one
anyway, most of them raised a TypeError (``urls['test']`` is None), the rest NotSupported.
"""

from __future__ import annotations

import ccxt.async_support as ccxt_async
import pytest

from core.errors import ConfigError
from core.exchange.ccxt import make_ccxt_exchange


def test_every_ccxt_venue_gives_a_testnet_or_a_config_error_naming_it() -> None:
    with_testnet, refused = [], []
    for name in ccxt_async.exchanges:
        try:
            exchange = make_ccxt_exchange(name, sandbox=True)
        except ConfigError as exc:
            assert f"{name} has no testnet in ccxt" in str(exc), name
            assert "QT__EXCHANGE__SANDBOX=false" in str(exc), name
            refused.append(name)
            continue
        assert exchange.isSandboxModeEnabled, name
        with_testnet.append(name)
    assert {"binance", "bybit", "okx"} <= set(with_testnet)  # the ones the message suggests
    assert "kraken" in refused


def test_a_venue_without_a_testnet_names_some_that_have_one() -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. binance, bybit, okx"):
        make_ccxt_exchange("kraken", sandbox=True)
