"""Registry of growth plans (``growth.plan`` in the config). A new method = one new file here."""

from megagrow.growth.plans.base import Decision, Plan
from megagrow.growth.plans.scratch import ScratchPlan

PLANS: dict[str, type] = {"scratch": ScratchPlan}


def build_plan(name: str, n_slots: int, seed: int) -> Plan:
    try:
        cls = PLANS[name]
    except KeyError:
        raise ValueError(f"growth.plan={name!r}: unknown plan; available: {sorted(PLANS)}") from None
    return cls(n_slots=n_slots, seed=seed)


__all__ = ["PLANS", "Decision", "Plan", "ScratchPlan", "build_plan"]
