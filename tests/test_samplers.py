"""Depth samplers: exact pmfs (notes §2.2), histograms, determinism and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from megagrow.growth.samplers import (
    LVPS,
    SAMPLERS,
    base_uniform,
    base_uniforms,
    get_sampler,
)

L = 12
N_DRAWS = 100_000
SEED = 1234


@pytest.fixture(scope="module")
def u0() -> np.ndarray:
    """100k base uniforms for steps 0..N_DRAWS-1 (micro-step 1), computed once (~1 s)."""
    return base_uniforms(SEED, np.arange(N_DRAWS), 1)


# --- LVPS closed form -------------------------------------------------------------------------------

NOTES_TABLE = {  # growth-algorithms notes §2.2, L = 12
    1: ({1: 0.736, 2: 0.105, 3: 0.053, 12: 0.002}, 1.77),
    3: ({3: 0.637, 4: 0.104, 5: 0.069, 12: 0.016}, 4.23),
    6: ({6: 0.648, 7: 0.086, 8: 0.067, 9: 0.053, 10: 0.044, 11: 0.036, 12: 0.067}, 7.14),
    12: ({12: 1.0}, 12.0),
}


@pytest.mark.parametrize("n_live", sorted(NOTES_TABLE))
def test_lvps_pmf_matches_notes_table(n_live):
    probs, mean = NOTES_TABLE[n_live]
    pmf = get_sampler("lvps").pmf(n_live, L)
    assert list(pmf) == list(range(n_live, L + 1))
    assert math.isclose(sum(pmf.values()), 1.0, abs_tol=1e-12)
    for d, p in probs.items():
        assert round(pmf[d], 3) == p, (d, pmf[d])
    assert round(get_sampler("lvps").expected_depth(n_live, L), 2) == mean


@pytest.mark.parametrize("n_live", [1, 2, 3, 4, 5, 6, 7, 11])
def test_lvps_pmf_equals_notes_formulas_without_x_min(n_live):
    """With x_min = 0 our CDF-based pmf is the notes' closed form; with x_min = 1e-6 it moves by < 1e-5."""
    r = L / n_live
    b, e = r + 0.4, 0.6
    n, m = e / (b - e), e * b / (b - e)
    expected = {n_live: 1 + n - m * n_live / (n_live + 1)}
    expected.update({k: m * n_live / (k * (k + 1)) for k in range(n_live + 1, L)})
    expected[L] = m * n_live / L - n
    exact0 = LVPS(x_min=0.0).pmf(n_live, L)
    default = LVPS().pmf(n_live, L)
    for d in range(n_live, L + 1):
        assert math.isclose(exact0[d], expected[d], rel_tol=1e-12, abs_tol=1e-15)
        assert abs(default[d] - expected[d]) < 1e-5


def test_edge_pmf_matches_notes_modes():
    edge = get_sampler("edge")
    for n_live, (p_low, p_high) in {1: (0.40, 0.33), 3: (0.43, 0.39), 6: (0.46, 0.44)}.items():
        pmf = edge.pmf(n_live, L)
        assert round(pmf[n_live], 2) == p_low and round(pmf[L], 2) == p_high
        assert all(pmf[d] < pmf[n_live] and pmf[d] < pmf[L] for d in range(n_live + 1, L))


def test_edge_pmf_is_exact_against_fine_quadrature():
    """The closed-form sigmoid pmf equals a direct midpoint integration over u (2M points, error < 1e-5)."""
    edge = get_sampler("edge")
    k = 2_000_000
    u0 = (np.arange(k) + 0.5) / k
    for n_live in (1, 3, 5, 6):
        hist = np.bincount(edge.depth_from_u(u0, n_live, L), minlength=L + 1) / k
        pmf = edge.pmf(n_live, L)
        for d in range(n_live, L + 1):
            assert abs(hist[d] - pmf[d]) < 1e-5


def test_simple_pmfs():
    assert get_sampler("uniform").pmf(3, L) == {d: 0.1 for d in range(3, 13)}
    assert get_sampler("uniform").expected_depth(3, L) == pytest.approx(7.5)
    assert get_sampler("full").pmf(3, 5) == {3: 0.0, 4: 0.0, 5: 1.0}
    assert get_sampler("full").expected_depth(6, L) == 12.0
    assert get_sampler("live").expected_depth(6, L) == 6.0
    for name, s in SAMPLERS.items():
        for n_live in range(1, L + 1):
            pmf = s.pmf(n_live, L)
            assert list(pmf) == list(range(n_live, L + 1)), name
            assert all(p >= 0 for p in pmf.values()), name
            assert math.isclose(sum(pmf.values()), 1.0, abs_tol=1e-12), (name, n_live)
        assert s.pmf(L, L) == {L: 1.0}


# --- sampling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("n_live", [1, 3, 6, 12])
def test_histogram_matches_pmf(u0, name, n_live):
    s = get_sampler(name)
    depths = s.depth_from_u(u0, n_live, L)
    assert depths.min() >= n_live and depths.max() <= L
    counts = np.bincount(depths, minlength=L + 1)
    for d, p in s.pmf(n_live, L).items():
        se = math.sqrt(p * (1 - p) / N_DRAWS)
        assert abs(counts[d] / N_DRAWS - p) <= 4 * se + 1e-12, (name, n_live, d, counts[d] / N_DRAWS, p)
    assert counts.sum() == N_DRAWS


def test_sample_is_depth_from_base_uniform_and_sample_many_agrees(u0):
    steps = np.arange(0, N_DRAWS, 997)
    for name, s in SAMPLERS.items():
        many = s.sample_many(3, L, SEED, steps, 1)
        assert many.tolist() == s.depth_from_u(u0[steps], 3, L).tolist(), name
        assert many[:20].tolist() == [s.sample(3, L, SEED, int(t), 1) for t in steps[:20]], name
    assert base_uniforms(SEED, steps[:5], 1).tolist() == [base_uniform(SEED, int(t), 1) for t in steps[:5]]


def test_determinism_and_independence():
    lvps = get_sampler("lvps")
    a = [lvps.sample(3, L, 7, step, micro) for step in range(50) for micro in range(4)]
    b = [lvps.sample(3, L, 7, step, micro) for step in range(50) for micro in range(4)]
    assert a == b  # pure function of (seed, step, micro_step): resume and all ranks agree
    us = {(s, m): base_uniform(7, s, m) for s in range(50) for m in range(4)}
    assert len(set(us.values())) == len(us)  # every (step, micro_step) gets its own draw
    assert base_uniform(7, 3, 1) != base_uniform(7, 1, 3)
    assert base_uniform(7, 3, 1) != base_uniform(8, 3, 1)
    assert [base_uniform(7, 3, 1)] * 2 == [base_uniform(7, 3, 1), base_uniform(7, 3, 1)]
    # Micro-steps of one step get different depths (not one depth per optimizer step).
    assert len({lvps.sample(1, L, 7, 0, m) for m in range(64)}) > 1
    # Broadcasting in sample_many: micro-steps as an array.
    grid = lvps.sample_many(3, L, 7, np.array([[5], [6]]), np.arange(4))
    assert grid.shape == (2, 4) and grid[1, 2] == lvps.sample(3, L, 7, 6, 2)


def test_lvps_extremes_and_rounding():
    lvps = LVPS()
    for n_live in range(1, L + 1):
        assert lvps.depth_from_u(np.array([0.0]), n_live, L)[0] == L  # y = b > r = L/N
        assert lvps.depth_from_u(np.array([1.0 - 2**-53]), n_live, L)[0] == n_live  # y ~ e < 1
    # Clipped top is exactly L even where n_live * (L / n_live) rounds below L in floating point.
    assert LVPS().depth_from_u(np.array([0.0]), 49, 50)[0] == 50


# --- validation / registry -------------------------------------------------------------------------


def test_errors():
    s = get_sampler("lvps")
    with pytest.raises(ValueError, match="n_live=13 must be <= n_max=12"):
        s.pmf(13, 12)
    with pytest.raises(ValueError, match="n_live must be >= 1"):
        s.sample(0, 12, 0, 0, 0)
    with pytest.raises(ValueError, match="step must be >= 0"):
        s.sample(1, 12, 0, -1, 0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        s.sample(1, 12, 1.5, 0, 0)
    with pytest.raises(ValueError, match="micro_step must be >= 0"):
        get_sampler("full").sample(1, 12, 0, 0, -2)
    with pytest.raises(ValueError, match="available: lvps, uniform, full, edge, live"):
        get_sampler("lvsp")


def test_registry_and_aliases():
    assert set(SAMPLERS) == {"lvps", "uniform", "full", "edge", "live"}
    assert get_sampler("sigmoid") is SAMPLERS["edge"]
    assert get_sampler("constant_high") is SAMPLERS["full"]
    for name, s in SAMPLERS.items():
        assert s.name == name
        with pytest.raises(AttributeError):
            s.name = "x"  # frozen
