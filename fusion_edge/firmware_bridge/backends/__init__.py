"""bleak backends for pods without a radio: simulated pods over bumble, and recorded replays.

Each module imports its heavy dependency (bleak, bumble) at import time, so import the module you
need; this package itself imports nothing.
"""
