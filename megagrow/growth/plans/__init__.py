"""Registry of growth plans (``growth.plan`` in the config). A new method = one new file here."""

from __future__ import annotations

import math
from dataclasses import replace

from megagrow.growth.plans.apollo import ApolloPlan
from megagrow.growth.plans.apollo_multilevel import ApolloMultiLevelPlan
from megagrow.growth.plans.base import Decision, Plan, StatelessPlan, Transition
from megagrow.growth.plans.bert2bert import Bert2BertPlan
from megagrow.growth.plans.ligo import LigoPlan
from megagrow.growth.plans.msg import MsgPlan
from megagrow.growth.plans.multilevel import MultiLevelPlan
from megagrow.growth.plans.scratch import ScratchPlan
from megagrow.growth.plans.stackbert import GStackPlan, StackBertPlan
from megagrow.growth.plans.subpath import SubPathPlan

PLANS: dict[str, type] = {"scratch": ScratchPlan, "apollo": ApolloPlan, "stackbert": StackBertPlan,
                          "multilevel": MultiLevelPlan, "bert2bert": Bert2BertPlan, "gstack": GStackPlan,
                          "msg": MsgPlan, "apollo+multilevel": ApolloMultiLevelPlan, "ligo": LigoPlan,
                          "subpath": SubPathPlan}


def build_plan(name: str, n_layers: int, growth=None, seed: int = 0, max_steps: int = 0, model=None,
               tokens_per_step: int | None = None) -> Plan:
    """The plan ``name`` for a target model of ``n_layers`` slots; ``growth`` is the config's
    :class:`~megagrow.config.GrowthConfig` (stage lists, sampler, boundaries…); ``model`` the target
    :class:`~megagrow.models.ModelConfig` (needed by plans that change width); ``tokens_per_step`` turns
    boundaries given in tokens into the first step at which that many tokens have been seen."""
    try:
        cls = PLANS[name]
    except KeyError:
        raise ValueError(f"growth.plan={name!r}: unknown plan; available: {sorted(PLANS)}") from None
    if growth is not None and growth.boundary_unit == "tokens":
        if not tokens_per_step:
            raise ValueError("growth.boundary_unit='tokens' needs the tokens per optimizer step")
        growth = replace(growth, boundaries=[math.ceil(b / tokens_per_step) for b in growth.boundaries],
                         boundary_unit="steps")
    kwargs = {"model": model} if model is not None else {}
    if cls.needs_model and model is None:
        raise ValueError(f"growth.plan={name!r} needs the model config: build_plan(..., model=cfg.model)")
    plan = cls(n_layers=n_layers, growth=growth, seed=seed, max_steps=max_steps, **kwargs)
    if not plan.n_max:
        plan.n_max = n_layers
    return plan


__all__ = ["PLANS", "ApolloPlan", "Decision", "Plan", "ScratchPlan", "StackBertPlan", "StatelessPlan", "Transition",
           "build_plan", "MultiLevelPlan", "Bert2BertPlan", "GStackPlan", "MsgPlan", "ApolloMultiLevelPlan", "LigoPlan",
           "SubPathPlan"]
