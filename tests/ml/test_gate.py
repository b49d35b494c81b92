"""The compensation gate learns from labels how much of the memory's correction to serve."""

from __future__ import annotations

import math

import pytest
import torch

from adaptive.ml.gate import STRENGTHS, CompensationGate, blend


def _stream(n: int, seed: int, *, helps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Base scores, full-strength corrections and labels.

    Labels are drawn from a true probability ``p_true``; the base model is off by a fixed shift.
    ``helps`` = 1: the correction moves the base score all the way to ``p_true``; 0: the base model
    is calibrated and the correction is zero-mean noise (what a memory adds on a stationary stream);
    -1: it moves the score away from the truth.
    """
    g = torch.Generator().manual_seed(seed)
    p_true = torch.rand(n, generator=g, dtype=torch.float64) * 0.6 + 0.2
    p_base = p_true.clone() if helps == 0 else (p_true - 0.15).clamp(0.01, 0.99)
    if helps > 0:
        p_full = p_true.clone()
    elif helps == 0:
        p_full = (p_base + 0.15 * torch.randn(n, generator=g, dtype=torch.float64)).clamp(0.01, 0.99)
    else:
        p_full = (p_base - 0.15).clamp(0.01, 0.99)
    labels = (torch.rand(n, generator=g, dtype=torch.float64) < p_true).double()
    return p_base, p_full, labels


def _feed(gate: CompensationGate, p_base: torch.Tensor, p_full: torch.Tensor, labels: torch.Tensor, batch: int) -> None:
    for start in range(0, len(labels), batch):
        gate.update(p_base[start : start + batch], p_full[start : start + batch], labels[start : start + batch])


def test_a_new_gate_serves_no_correction() -> None:
    gate = CompensationGate()
    assert gate.strength() == 0.0
    assert gate.summary()["strength"] == 0.0
    assert gate.summary()["loss_change_bound"] is None


def test_a_correction_that_helps_opens_the_gate_but_not_before_the_minimum_support() -> None:
    p_base, p_full, labels = _stream(5000, seed=1, helps=1)
    gate = CompensationGate(min_support=500)
    _feed(gate, p_base[:400], p_full[:400], labels[:400], 100)
    assert gate.support == pytest.approx(400, rel=0.01)
    assert gate.strength() == 0.0  # below the minimum support, whatever the evidence says
    _feed(gate, p_base[400:], p_full[400:], labels[400:], 100)
    assert gate.strength() >= 0.8
    summary = gate.summary()
    assert summary["loss_change"] < 0 and summary["loss_change_bound"] < 0
    assert summary["labels_seen"] == 5000


@pytest.mark.parametrize("helps", [0, -1])
def test_a_correction_that_does_not_help_keeps_the_gate_shut(helps: int) -> None:
    # Over 20 seeds: noise corrections must (almost) never open the gate.
    opened = 0
    for seed in range(20):
        p_base, p_full, labels = _stream(10_000, seed=seed, helps=helps)
        gate = CompensationGate()
        _feed(gate, p_base, p_full, labels, 250)
        opened += gate.strength() > 0
    assert opened <= 1


def test_evidence_fades_so_a_correction_that_stops_helping_is_switched_off() -> None:
    gate = CompensationGate(half_life=2000)
    good = _stream(10_000, seed=3, helps=1)
    _feed(gate, *good, batch=250)
    assert gate.strength() > 0
    bad = _stream(10_000, seed=4, helps=-1)
    _feed(gate, *bad, batch=250)
    assert gate.strength() == 0.0
    # Without fading, the old good evidence would still outweigh the new.
    forever = CompensationGate(half_life=1e12)
    _feed(forever, *good, batch=250)
    _feed(forever, bad[0][:3000], bad[1][:3000], bad[2][:3000], 250)
    assert forever.strength() > 0


def test_the_standard_error_uses_batch_means_so_correlated_batches_count_as_few() -> None:
    # Every label in a batch shares one loss difference (perfectly correlated within a batch):
    # 4,000 labels in 2 batches are 2 observations, not 4,000, so no bound exists yet.
    gate = CompensationGate(min_support=0)
    p_base = torch.full((2000,), 0.3, dtype=torch.float64)
    labels = torch.ones(2000, dtype=torch.float64)
    gate.update(p_base, p_base + 0.2, labels)
    gate.update(p_base, p_base + 0.2, labels)
    assert math.isinf(gate.evidence[-1].standard_error())
    assert gate.strength() == 0.0


def test_state_round_trips_and_garbage_starts_over() -> None:
    gate = CompensationGate()
    _feed(gate, *_stream(3000, seed=5, helps=1), batch=300)
    restored = CompensationGate.from_state(gate.state_dict())
    assert restored.state_dict() == gate.state_dict()
    assert restored.strength() == gate.strength() > 0
    for garbage in (None, {}, {"version": 99}, {"version": 1, "evidence": [[1.0]] * len(STRENGTHS)}, [1, 2]):
        assert CompensationGate.from_state(garbage).support == 0.0
    nan_state = gate.state_dict()
    nan_state["evidence"][0][0] = float("nan")
    assert CompensationGate.from_state(nan_state).support == 0.0


def test_multiclass_rows_are_learned_and_blends_stay_distributions() -> None:
    g = torch.Generator().manual_seed(7)
    n, c = 3000, 3
    labels = torch.randint(0, c, (n,), generator=g)
    p_base = torch.full((n, c), 1 / c, dtype=torch.float64)
    p_full = torch.full((n, c), 0.1, dtype=torch.float64)
    p_full[torch.arange(n), labels] = 0.8  # the correction points at the true class
    gate = CompensationGate()
    _feed(gate, p_base, p_full, labels, 300)
    assert gate.strength() == 1.0
    mixed = blend(p_base, p_full, 0.3)
    assert torch.allclose(mixed.sum(dim=1), torch.ones(n, dtype=torch.float64))
    assert blend(p_base, p_full, 0.0) is p_base
    assert blend(p_base, p_full, 1.0) is p_full


def test_bad_parameters_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        CompensationGate(half_life=0)
    with pytest.raises(ValueError):
        CompensationGate(z=-1)
    with pytest.raises(ValueError, match="differ"):
        CompensationGate().update(torch.zeros(3), torch.zeros(4), torch.zeros(3))


def test_an_open_gate_rides_out_a_bad_spell_and_closes_when_the_gain_is_gone() -> None:
    gate = CompensationGate(half_life=1e12)
    _feed(gate, *_stream(3000, seed=8, helps=1), batch=250)
    assert gate.is_open and gate.strength() > 0
    # A short spell where the correction hurts: the bound no longer shows a gain, the mean still
    # does, and the gate stays open (a shut gate would need the proof all over again).
    p_base, p_full, labels = _stream(2000, seed=9, helps=-1)
    _feed(gate, p_base, p_full, labels, 250)
    assert all(bound >= 0 for bound in gate.bounds()[1:])
    assert gate.is_open and gate.strength() > 0
    # A fresh gate on the same evidence stays shut: opening takes proof.
    assert CompensationGate.from_state({**gate.state_dict(), "open": False}).strength() == 0.0
    # A long one: no strength's mean shows a gain any more, and the gate closes.
    _feed(gate, *_stream(20_000, seed=10, helps=-1), batch=250)
    assert not gate.is_open and gate.strength() == 0.0
    assert CompensationGate.from_state(gate.state_dict()).is_open is False
