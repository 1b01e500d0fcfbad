"""General helpers with no erasekit domain knowledge: atomic file IO, hashing, canonical JSON.

Anything here may be imported by any package; nothing here imports the rest of erasekit.
"""
