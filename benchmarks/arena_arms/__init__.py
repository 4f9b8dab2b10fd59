"""The arena's peer arms: one module per tool, each run in a process of its own by
``benchmarks/arena.py`` as ``python -m arena_arms.<arm> train|predict`` (``common.main``)."""
