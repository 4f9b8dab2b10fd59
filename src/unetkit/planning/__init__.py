"""Planning: a dataset fingerprint, the machine's measured speed and a time budget -> a Config,
every choice with its reason (``unetkit plan``; ``unetkit train`` applies it)."""

from unetkit.planning.fingerprint import Fingerprint, fingerprint
from unetkit.planning.plan import Plan, format_plan, make_plan
from unetkit.planning.rules import Choice

__all__ = ["Choice", "Fingerprint", "Plan", "fingerprint", "format_plan", "make_plan"]
