"""Services: the async shells around brains and ports. They gather inputs, act, publish events."""
