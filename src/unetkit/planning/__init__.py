"""Planning: a dataset fingerprint, the machine's measured speed and a time budget -> a Config,
every choice with its reason (``unetkit plan``; ``unetkit train`` applies it).

``plan.make_plan`` decides, ``rules``, ``targets`` and ``budget`` hold the rules with their reasons, ``policy``
what the user fixed. Import the modules themselves: this package stays light (no torch), so the
command line can read the presets while it builds ``--help``.
"""
