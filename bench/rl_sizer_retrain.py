"""One full retrain of the registry's RL sizer (issue 15), as the learning manager runs it.

The real candles (BTC/USDT + ETH/USDT 1h from ../shared/data, ``--days`` back (0: all of them) from
``--until``) are stored in a fresh SQLite database; then ``bot.sizer_training.train_sizer``
runs ``qt evaluate --sizing``'s walk-forward comparison in its own process (the ensemble walked
forward with the members on their 90-day window, its trades the candidates, PPO and its
control trained), as the lane does when a retrain is due. Prints the wall time (target: a
full retrain under 5 minutes on 2 cores), the comparison's lines and the gate's verdict.

Skips (exit 0) when ../shared/data is absent. Exits 1 when the target is missed.

Usage: .venv/bin/python bench/rl_sizer_retrain.py [--days 0] [--until 2026-01-01]
       [--timesteps 20480]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
TARGET_S = 300.0
DAY_MS = 86_400_000


async def retrain(days: float, until_ms: int, timesteps: int) -> int:
    from bot.sizer_training import train_sizer
    from core.clock import SimClock
    from core.config import load_settings
    from core.market.importers import read_candle_file
    from core.ml.rl.policy import load_policy
    from storage import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for name in [n for n in os.environ if n.startswith("QT__")]:
            del os.environ[name]
        settings = load_settings(
            app={"data_dir": str(Path(tmp) / "data")},
            trading={"symbols": list(SYMBOLS), "timeframe": "1h"},
            sizing={"method": "rl", "train_days": days, "eval_timesteps": timesteps},
        )
        storage = open_storage(settings.database_url)
        await storage.start()
        try:
            for symbol in SYMBOLS:
                path = DATA / f"{symbol.replace('/', '_')}-1h.csv.gz"
                series = read_candle_file(path).series.between(None, until_ms)
                await storage.candles.upsert("binance", series)
        finally:
            await storage.stop()
        started = time.perf_counter()
        trained = await train_sizer(
            settings, data_dir=settings.app.data_dir, clock=SimClock(until_ms)
        )
        took = time.perf_counter() - started
        policy = load_policy(trained.folder)
    print(
        f"retrain: {took:.1f} s wall ({days:g} days (0: all) of {', '.join(SYMBOLS)} 1h, "
        f"target {TARGET_S:.0f} s)"
    )
    for line in trained.lines:
        print(f"  {line}")
    assert policy.gate is not None
    print(f"gate: {'passed' if policy.gate.passed else 'not passed'}")
    return 0 if took <= TARGET_S else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=0.0)
    parser.add_argument("--until", default="2026-01-01")
    parser.add_argument("--timesteps", type=int, default=20_480)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} is absent")
        return 0
    until = int(datetime.fromisoformat(args.until).replace(tzinfo=UTC).timestamp() * 1000)
    return asyncio.run(retrain(args.days, until, args.timesteps))


if __name__ == "__main__":
    sys.exit(main())
