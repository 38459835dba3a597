"""The pure centre of Quantum Trader: domain, brains, services, ports. Imports no outer ring."""
