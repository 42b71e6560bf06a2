"""The plan protocol: a growth plan is a schedule, not a trainer.

A plan answers, for an optimizer step and micro-step: which phase runs, which architecture the model
has (:meth:`Plan.arch_at`), which layer map the model executes (:meth:`Plan.decide`), and whether a
transition happens at the start of this step (:meth:`Plan.transition`) — an operator
``FullState -> FullState`` plus the new architecture. It never calls the trainer. Every answer is a
pure function of (seed, step, micro-step, config), so resuming needs no plan state beyond a name check,
and every rank computes the same decision (rank 0 broadcasting it is the distributed issue's guard).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from megagrow.state import FullState


@dataclass
class MethodOptions:
    """Base of a method's options section (``growth.<method>:``, the dataclass in the plan's own file, registered in
    :data:`megagrow.growth.config.SECTIONS`). ``resume_rules``: field -> (``honoured`` | ``allowable``, what it
    is) for fields a resume may change (the rest are incompatible); ``lr_fields``: fields whose change alters the
    LR; :meth:`problems`: the checks of its own values, one line each naming ``growth.<method>.<field>``."""

    resume_rules: ClassVar[dict[str, tuple[str, str]]] = {}
    lr_fields: ClassVar[tuple[str, ...]] = ()

    def problems(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Decision:
    """What to run for one micro-batch."""

    phase: str
    layer_map: tuple[int, ...]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.layer_map)


@dataclass(frozen=True)
class Transition:
    """A change of architecture at the start of an optimizer step.

    ``arch`` holds the model fields that change (e.g. ``{"n_layers": 6}``); ``operator`` maps the full
    training state of the old architecture to the new one (parameters and AdamW moments).
    """

    name: str
    arch: dict[str, int]
    operator: Callable[[FullState], FullState]
    # A *learned* transition (LiGO) trains its operator on the run's data before mapping the state: the trainer
    # then calls ``fit(state, ctx)`` instead of ``operator`` (which stays the untrained operator, for tools).
    fit: Callable[[FullState, FitContext], FullState] | None = None
    fit_steps: int = 0  # optimizer steps of operator training (each one global batch of data)
    # forward+backward FLOPs of the operator itself per micro-batch, given the old state's parameter shapes
    fit_flops: Callable[[dict[str, tuple[int, ...]]], int] | None = None


@dataclass
class FitContext:
    """What the trainer lends a learned transition: the new architecture's loss on the run's own data.

    ``loss(params, fit_step, micro)`` runs the model of the new architecture with these (differentiable)
    parameters on this rank's next training micro-batch — advancing the data cursor and charging the
    micro-batch's FLOPs, tokens and samples to the run, so loss-vs-FLOPs curves stay honest.
    ``charge_flops`` adds the operator's own FLOPs; ``all_reduce_mean`` averages gradients across ranks."""

    loss: Callable[[dict[str, torch.Tensor], int, int], torch.Tensor]
    grad_accum: int
    lr: float  # the run's peak LR (optim.lr)
    betas: tuple[float, float]
    eps: float
    device: torch.device
    charge_flops: Callable[[int], None]
    all_reduce_mean: Callable[[list[torch.Tensor]], None]
    log: Callable[[str], None]


class Plan(Protocol):
    """What the trainer, ``resume``, ``plan show`` and ``plan tune`` ask a plan; nothing outside
    ``megagrow/growth/`` probes a plan for anything else."""

    name: str
    starts: list[int]  # first optimizer step of every phase; transitions happen at starts[1:]
    lr_policy: str  # the LR policy at transitions the method's paper used ("continue" | "rewarm" | "reset")
    n_max: int  # the target's layer count (the depth a sampled depth is drawn up to)
    needs_model: bool  # class-level: build_plan must be given the model config (plans that change width)
    depth_sampler: str  # what draws the executed depth ("fixed" when the phase's layer map decides it)
    section: str | None  # class-level: the ``growth.<section>:`` options it reads (None: the shared fields only)

    @classmethod
    def config_problems(cls, growth: Any, model: Any, max_steps: int) -> list[str]:
        """What the plan needs of the growth section and the model, checked when a config loads."""
        ...

    def depth_pmf(self, step: int) -> dict[int, float] | None:
        """The distribution of the executed depth during step ``step`` (None: a fixed depth, the length of
        ``decide(step, 0).layer_map``)."""
        ...

    def schedule_extras(self) -> str:
        """What of the schedule besides the phase starts a resume must compare (e.g. MSG's mask ramp); ""."""
        ...

    def arch_at(self, step: int) -> dict[str, int]:
        """Model fields (e.g. ``n_layers``) in effect during optimizer step ``step``, after any transition
        at its start."""
        ...

    def transition(self, step: int) -> Transition | None:
        """The transition to apply at the start of step ``step``, if any."""
        ...

    def decide(self, step: int, micro_step: int) -> Decision:
        """The decision for micro-batch ``micro_step`` of optimizer step ``step``."""
        ...

    def eval_layer_map(self, step: int) -> tuple[int, ...]:
        """The layer map that evaluates the model as it stands after optimizer step ``step`` ran."""
        ...

    def eval_masks(self, step: int) -> Any:
        """Growth masks (``GrowthMasks``, MSG) in effect after step ``step``, or None."""
        ...

    def lr_scale(self, step: int) -> float:
        """Multiplier on the global LR schedule during step ``step`` (e.g. a coarse model's larger LR)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors the plan must keep across a resume (e.g. a snapshot to interpolate with later)."""
        ...

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...


class StatelessPlan:
    """Base for plans whose decisions are pure functions of the step: the checkpointed state is the name."""

    name = "base"
    starts: list[int] = [0]  # first step of every phase (transitions happen at starts[1:])
    lr_policy = "continue"  # what ``growth.lr_policy: auto`` means for this plan
    n_max = 0  # set by the plan, else by build_plan (the target's model.n_layers)
    needs_model = False
    section: str | None = None  # the ``growth.<section>:`` options this plan reads (megagrow/growth/config.py)

    @classmethod
    def config_problems(cls, growth: Any, model: Any, max_steps: int) -> list[str]:
        """What this plan needs of the growth section and the model, one line per problem naming the field, its
        value and what was expected (checked when a config loads, before any plan is built)."""
        return []
    depth_sampler = "fixed"

    def depth_pmf(self, step: int) -> dict[int, float] | None:
        return None

    def schedule_extras(self) -> str:
        return ""

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint was written by plan {state.get('name')!r}, this run uses {self.name!r}")

    def transition(self, step: int) -> Transition | None:
        return None

    def lr_scale(self, step: int) -> float:
        return 1.0

    def eval_masks(self, step: int) -> Any:
        return None

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(f"plan {self.name!r} keeps no tensors, but the checkpoint has {len(tensors)}")
