"""Reinforcement-learned position sizing (issue 15): the candidate trades, the account the
agent's sizes make, the gymnasium environment and the PPO policy's safe artifact. gymnasium and
stable-baselines3 are imported by ``env`` and inside ``policy``'s training only: nothing at
start-up imports this package."""
