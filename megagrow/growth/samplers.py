"""Per-micro-batch depth samplers for shared-weight (Apollo-style) training.

With N live weight slots and a target depth L, every micro-batch runs at a depth d in {N, ..., L}
(then mapped onto the slots by :func:`megagrow.growth.ops.layer_map`). A sampler gives

- ``pmf(n_live, n_max)``: the exact distribution of d, a dict with keys exactly N..L (zeros kept);
- ``expected_depth(n_live, n_max)``: sum of d * P(d);
- ``sample(n_live, n_max, seed, step, micro_step)``: one draw, a *pure function* of
  (seed, step, micro_step) — resume needs no sampler state and every data-parallel rank computes the
  same depth without communication;
- ``sample_many(n_live, n_max, seed, steps, micro_steps)``: the same draws for arrays of steps;
- ``depth_from_u(u0, n_live, n_max)``: the deterministic map from the base uniform to a depth
  (vectorised), so that ``sample(...) == depth_from_u(base_uniform(seed, step, micro_step), ...)``.

Randomness: every sampler consumes the same base uniform
``u0 = Generator(PCG64([seed, DEPTH_STREAM, step, micro_step])).random()`` in [0, 1)
(``DEPTH_STREAM`` keeps this stream apart from the data pipeline's ``PCG64([seed, key])`` draws).
The continuous samplers map it to ``u = x_min + (1 - x_min) * u0`` ~ U[x_min, 1) as the Apollo
release draws ``u ~ U(x_min, 1)`` with ``x_min = 1e-6``.

Samplers (docs/methods/apollo.md; names in the Apollo release code in brackets):

- ``lvps`` (the paper's LVPS, the release default): with r = L/N, b = r + 0.4, e = 0.6,
  ``y = m / (u + n)``, ``n = (b*x_min - e)/(e - b)``, ``m = e*(n + 1)`` (so y(x_min) = b, y(1) = e),
  ``y = clip(y, 1, r)``, ``d = floor(N*y)``. Exact pmf below (including x_min).
- ``uniform`` [``uniform``, presumably the paper's "US"]: d ~ U{N, ..., L}, ``d = N + floor(u0*(L-N+1))``.
- ``full`` [``constant_high``, presumably "FS"]: d = L always (no randomness used).
- ``edge`` [``sigmoid``, *inferred* to be the paper's "ES"]:
  ``y = (b - e) / (1 + exp(20*(u - 0.5))) + e`` with the same b, e, x_min, clipping and flooring as LVPS.
  Bimodal: most mass on d = N and d = L (L=12: N=1 -> 0.40/0.33, N=3 -> 0.43/0.39, N=6 -> 0.46/0.44),
  which is what we take "edge sampling" to mean. The mapping ES -> ``sigmoid`` is a guess (notes Q5);
  the other reading of ES, "always run the N live layers", is available as ``live``.
- ``live``: d = N always (plain stage-wise progressive training; an alternative reading of "ES").

Exact pmfs. For the continuous samplers let G(y) = P(Y < y) (Y before clipping). Since
``d = N`` iff Y < (N+1)/N, ``d = k`` iff k/N <= Y < (k+1)/N, ``d = L`` iff Y >= L/N (N < L):

    P(N) = G((N+1)/N),   P(k) = G((k+1)/N) - G(k/N)  (N < k < L),   P(L) = 1 - G(L/N)

and for N = L the depth is always L. LVPS: u is uniform on [x_min, 1) and y is decreasing in u, so
``G(y) = P(u > m/y - n) = (1 + n - m/y) / (1 - x_min)`` on [e, b]; with x_min = 0 this is the notes'
closed form ``P(N) = 1 + n - m*N/(N+1)``, ``P(k) = m*N/(k(k+1))``, ``P(L) = m*N/L - n`` with
``n = e/(b-e)``, ``m = e*b/(b-e)``. Edge: inverting the sigmoid,
``u(y) = 0.5 + ln((b - y)/(y - e)) / 20`` and ``G(y) = (1 - clamp(u(y), x_min, 1)) / (1 - x_min)``
(closed form, no numerical integration). Both are exact up to float64 rounding (~1e-15) and up to the
2^-53 granularity of u0.

Only stdlib, numpy and torch may be imported here (pure math, no megagrow dependencies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

DEPTH_STREAM = 0x64657074  # "dept": domain separation for the depth-sampling stream
X_MIN = 1e-6


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_depths(n_live: int, n_max: int) -> tuple[int, int]:
    """Validate 1 <= n_live <= n_max; return them as ints."""
    n_live = _check_int("n_live", n_live, 1)
    n_max = _check_int("n_max", n_max, 1)
    if n_live > n_max:
        raise ValueError(f"n_live={n_live} must be <= n_max={n_max} (live slots cannot exceed the target depth)")
    return n_live, n_max


def base_uniform(seed: int, step: int, micro_step: int) -> float:
    """The base uniform u0 in [0, 1) of micro-batch ``micro_step`` of optimizer step ``step``."""
    seed = _check_int("seed", seed, 0)
    step = _check_int("step", step, 0)
    micro_step = _check_int("micro_step", micro_step, 0)
    return float(np.random.Generator(np.random.PCG64([seed, DEPTH_STREAM, step, micro_step])).random())


def base_uniforms(seed: int, steps, micro_steps=0) -> np.ndarray:
    """Vectorised :func:`base_uniform` over broadcast arrays of steps and micro-steps (float64 array)."""
    s, m = np.broadcast_arrays(np.asarray(steps), np.asarray(micro_steps))
    out = np.empty(s.shape, dtype=np.float64)
    flat_s, flat_m, flat_o = s.reshape(-1), m.reshape(-1), out.reshape(-1)
    for i in range(flat_s.size):
        flat_o[i] = base_uniform(seed, int(flat_s[i]), int(flat_m[i]))
    return out


@runtime_checkable
class Sampler(Protocol):
    name: str

    def pmf(self, n_live: int, n_max: int) -> dict[int, float]: ...

    def expected_depth(self, n_live: int, n_max: int) -> float: ...

    def depth_from_u(self, u0, n_live: int, n_max: int) -> np.ndarray: ...

    def sample(self, n_live: int, n_max: int, seed: int, step: int, micro_step: int) -> int: ...

    def sample_many(self, n_live: int, n_max: int, seed: int, steps, micro_steps=0) -> np.ndarray: ...


class _SamplerBase:
    """Shared ``expected_depth`` / ``sample`` / ``sample_many`` built on ``pmf`` and ``depth_from_u``."""

    name: str = ""

    def pmf(self, n_live: int, n_max: int) -> dict[int, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def depth_from_u(self, u0, n_live: int, n_max: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_depth(self, n_live: int, n_max: int) -> float:
        return float(sum(d * p for d, p in self.pmf(n_live, n_max).items()))

    def sample(self, n_live: int, n_max: int, seed: int, step: int, micro_step: int) -> int:
        n_live, n_max = check_depths(n_live, n_max)
        return int(self.depth_from_u(np.array([base_uniform(seed, step, micro_step)]), n_live, n_max)[0])

    def sample_many(self, n_live: int, n_max: int, seed: int, steps, micro_steps=0) -> np.ndarray:
        """Draws for every (step, micro_step) of the broadcast arrays; element i equals ``sample``."""
        n_live, n_max = check_depths(n_live, n_max)
        return self.depth_from_u(base_uniforms(seed, steps, micro_steps), n_live, n_max)


def _pmf_from_cdf(cdf, n_live: int, n_max: int) -> dict[int, float]:
    """Depth pmf from G(y) = P(Y < y) of the unclipped continuous variable Y (see module docstring)."""
    if n_live == n_max:
        return {n_max: 1.0}
    g = [cdf(k / n_live) for k in range(n_live + 1, n_max + 1)]  # G((N+1)/N), ..., G(L/N)
    pmf = {n_live: g[0]}
    for i, k in enumerate(range(n_live + 1, n_max)):
        pmf[k] = g[i + 1] - g[i]
    pmf[n_max] = 1.0 - g[-1]
    return pmf


def _continuous_depth(y: np.ndarray, n_live: int, n_max: int) -> np.ndarray:
    """Clip y to [1, L/N] and floor N*y; the clipped top (y >= L/N) is exactly L whatever the rounding."""
    r = n_max / n_live
    y = np.clip(y, 1.0, r)
    d = np.floor(n_live * y).astype(np.int64)
    d = np.where(y >= r, n_max, d)
    return np.clip(d, n_live, n_max)


@dataclass(frozen=True)
class LVPS(_SamplerBase):
    """Low-value-prioritized sampling (inverse-proportional CDF, density ~ 1/y^2)."""

    name: str = "lvps"
    x_min: float = X_MIN
    low: float = 0.6  # e = y(1)
    high_offset: float = 0.4  # b = L/N + high_offset = y(x_min)

    def _coeffs(self, n_live: int, n_max: int) -> tuple[float, float, float, float]:
        b, e = n_max / n_live + self.high_offset, self.low
        n = (b * self.x_min - e) / (e - b)
        m = e * (n + 1.0)
        return b, e, n, m

    def pmf(self, n_live: int, n_max: int) -> dict[int, float]:
        n_live, n_max = check_depths(n_live, n_max)
        b, e, n, m = self._coeffs(n_live, n_max)

        def cdf(y: float) -> float:
            if y <= e:
                return 0.0
            if y >= b:
                return 1.0
            return (1.0 + n - m / y) / (1.0 - self.x_min)

        return _pmf_from_cdf(cdf, n_live, n_max)

    def depth_from_u(self, u0, n_live: int, n_max: int) -> np.ndarray:
        n_live, n_max = check_depths(n_live, n_max)
        _, _, n, m = self._coeffs(n_live, n_max)
        u = self.x_min + (1.0 - self.x_min) * np.asarray(u0, dtype=np.float64)
        return _continuous_depth(m / (u + n), n_live, n_max)


@dataclass(frozen=True)
class EdgeSampler(_SamplerBase):
    """``sigmoid`` sampler of the Apollo code: bimodal on d = N and d = L (our reading of "ES")."""

    name: str = "edge"
    x_min: float = X_MIN
    low: float = 0.6
    high_offset: float = 0.4
    steepness: float = 20.0
    midpoint: float = 0.5

    def pmf(self, n_live: int, n_max: int) -> dict[int, float]:
        n_live, n_max = check_depths(n_live, n_max)
        b, e = n_max / n_live + self.high_offset, self.low

        def cdf(y: float) -> float:
            if y <= e:
                return 0.0
            if y >= b:
                return 1.0
            u_y = self.midpoint + math.log((b - y) / (y - e)) / self.steepness  # y(u_y) = y, y decreasing
            u_y = min(max(u_y, self.x_min), 1.0)
            return (1.0 - u_y) / (1.0 - self.x_min)

        return _pmf_from_cdf(cdf, n_live, n_max)

    def depth_from_u(self, u0, n_live: int, n_max: int) -> np.ndarray:
        n_live, n_max = check_depths(n_live, n_max)
        b, e = n_max / n_live + self.high_offset, self.low
        u = self.x_min + (1.0 - self.x_min) * np.asarray(u0, dtype=np.float64)
        y = (b - e) / (1.0 + np.exp(self.steepness * (u - self.midpoint))) + e
        return _continuous_depth(y, n_live, n_max)


@dataclass(frozen=True)
class UniformSampler(_SamplerBase):
    """d ~ U{N, ..., L}."""

    name: str = "uniform"

    def pmf(self, n_live: int, n_max: int) -> dict[int, float]:
        n_live, n_max = check_depths(n_live, n_max)
        p = 1.0 / (n_max - n_live + 1)
        return {d: p for d in range(n_live, n_max + 1)}

    def depth_from_u(self, u0, n_live: int, n_max: int) -> np.ndarray:
        n_live, n_max = check_depths(n_live, n_max)
        d = n_live + np.floor(np.asarray(u0, dtype=np.float64) * (n_max - n_live + 1)).astype(np.int64)
        return np.clip(d, n_live, n_max)


@dataclass(frozen=True)
class ConstantSampler(_SamplerBase):
    """Always the same end of the range: ``at="max"`` -> d = L (``full``), ``at="live"`` -> d = N."""

    name: str = "full"
    at: str = "max"

    def __post_init__(self) -> None:
        if self.at not in ("max", "live"):
            raise ValueError(f"ConstantSampler.at={self.at!r}: must be 'max' or 'live'")

    def _depth(self, n_live: int, n_max: int) -> int:
        return n_max if self.at == "max" else n_live

    def pmf(self, n_live: int, n_max: int) -> dict[int, float]:
        n_live, n_max = check_depths(n_live, n_max)
        d0 = self._depth(n_live, n_max)
        return {d: (1.0 if d == d0 else 0.0) for d in range(n_live, n_max + 1)}

    def depth_from_u(self, u0, n_live: int, n_max: int) -> np.ndarray:
        n_live, n_max = check_depths(n_live, n_max)
        return np.full(np.shape(u0), self._depth(n_live, n_max), dtype=np.int64)

    def sample(self, n_live: int, n_max: int, seed: int, step: int, micro_step: int) -> int:
        # Validate the keys like the random samplers do, but skip the generator (the result is fixed).
        _check_int("seed", seed, 0), _check_int("step", step, 0), _check_int("micro_step", micro_step, 0)
        n_live, n_max = check_depths(n_live, n_max)
        return self._depth(n_live, n_max)

    def sample_many(self, n_live: int, n_max: int, seed: int, steps, micro_steps=0) -> np.ndarray:
        n_live, n_max = check_depths(n_live, n_max)
        s, _ = np.broadcast_arrays(np.asarray(steps), np.asarray(micro_steps))
        return np.full(s.shape, self._depth(n_live, n_max), dtype=np.int64)


SAMPLERS: dict[str, Sampler] = {
    "lvps": LVPS(),
    "uniform": UniformSampler(),
    "full": ConstantSampler(name="full", at="max"),
    "edge": EdgeSampler(),
    "live": ConstantSampler(name="live", at="live"),
}

# Names used by the Apollo release code (its ``--sample_type`` style options), accepted as aliases.
SAMPLER_ALIASES: dict[str, str] = {"sigmoid": "edge", "constant_high": "full"}


def get_sampler(name: str) -> Sampler:
    """The sampler registered as ``name`` (or a release-code alias); a clear error lists the names."""
    key = SAMPLER_ALIASES.get(name, name) if isinstance(name, str) else name
    try:
        return SAMPLERS[key]
    except (KeyError, TypeError):
        aliases = ", ".join(f"{a} (= {t})" for a, t in SAMPLER_ALIASES.items())
        raise ValueError(
            f"unknown depth sampler {name!r}; available: {', '.join(SAMPLERS)}; aliases: {aliases}"
        ) from None


__all__ = [
    "DEPTH_STREAM",
    "LVPS",
    "SAMPLERS",
    "SAMPLER_ALIASES",
    "X_MIN",
    "ConstantSampler",
    "EdgeSampler",
    "Sampler",
    "UniformSampler",
    "base_uniform",
    "base_uniforms",
    "check_depths",
    "get_sampler",
]
