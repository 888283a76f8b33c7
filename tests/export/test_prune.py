"""Structural pruning: units really removed, weights carried over, counts right."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_edge.errors import ConfigError
from fusion_edge.export.prune import count_flops, prune_model, prune_report, pruned_config
from fusion_edge.toolkit.checkpoint import load_run
from fusion_edge.toolkit.model import ModelConfig, MultimodalCnnLstm


def _inputs(model, n=6):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, c, s, generator=g) for _, c, s in model.config.modalities]


def test_ratio_zero_is_the_same_model(tiny_run: Path) -> None:
    model, _ = load_run(tiny_run)
    same = prune_model(model, 0.0)
    xs = _inputs(model)
    with torch.no_grad():
        for a, b in zip(model(*xs), same(*xs), strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_pruned_model_is_smaller_and_reloads_from_its_config(tiny_run: Path) -> None:
    model, _ = load_run(tiny_run)
    small = prune_model(model, 0.5)
    cfg = small.config
    assert cfg.conv_channels == tuple(round(c / 2) for c in model.config.conv_channels)
    assert cfg.lstm_hidden == (32, 32) and cfg.latent == 32
    assert small.lstm1.hidden_size == 32 and small.lstm1.input_size == 32 * 2
    rebuilt = MultimodalCnnLstm(ModelConfig.from_json(cfg.to_json()))
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    rep = prune_report(model, small, 0.5, 0)
    assert rep.params_after < 0.4 * rep.params_before
    assert rep.flops_after < 0.4 * rep.flops_before
    with torch.no_grad():
        out = small(*_inputs(model))
    assert out[0].shape == (6, 3) and torch.isfinite(out[1]).all()


def test_widths_round_to_simd_multiples(tiny_run: Path) -> None:
    model, _ = load_run(tiny_run)
    cfg = model.config  # edge size: conv (32, 48, 64), latent 64, LSTM (64, 64), attention 32
    exact = pruned_config(cfg, 0.6)
    assert exact.conv_channels == (13, 19, 26) and exact.latent == 26 and exact.attention_dim == 13
    aligned = pruned_config(cfg, 0.6, round_to=8)
    assert aligned.conv_channels == (16, 16, 24)
    assert (aligned.latent, aligned.lstm_hidden, aligned.attention_dim) == (24, (24, 24), 16)
    # Already multiples: the same widths either way; no width drops below one multiple.
    assert pruned_config(cfg, 0.5, round_to=8) == pruned_config(cfg, 0.5)
    assert pruned_config(cfg, 0.9, round_to=8).conv_channels == (8, 8, 8)
    # A width no wider than one multiple stays exact, and an unpruned model stays as it is.
    narrow = replace(cfg, conv_channels=(6, 12, 20), attention_dim=5)
    assert pruned_config(narrow, 0.5, round_to=8).conv_channels == (3, 8, 8)
    assert pruned_config(narrow, 0.5, round_to=8).attention_dim == 2
    assert pruned_config(narrow, 0.0, round_to=8) == narrow
    small = prune_model(model, 0.6, round_to=8)
    assert small.config == aligned and small.lstm1.hidden_size == 24
    with pytest.raises(ConfigError, match="round-to must be 1 or more"):
        pruned_config(cfg, 0.5, round_to=0)


def test_budget_with_rounded_widths_fits_and_stays_aligned(tiny_run: Path) -> None:
    from fusion_edge.export.prune import ratio_for_budget
    from fusion_edge.toolkit.model import count_parameters

    model, _ = load_run(tiny_run)
    cfg = model.config
    budget = count_parameters(model) // 4
    r = ratio_for_budget(cfg, params=budget, round_to=8)
    fitted = pruned_config(cfg, r, round_to=8)
    assert count_parameters(MultimodalCnnLstm(fitted)) <= budget
    assert count_parameters(MultimodalCnnLstm(pruned_config(cfg, r - 0.01, round_to=8))) > budget
    assert all(w % 8 == 0 for w in (*fitted.conv_channels, fitted.latent, *fitted.lstm_hidden))


def test_flop_count_by_hand() -> None:
    cfg = ModelConfig(
        modalities=(("m", 2, 8),),
        tasks=(("t", "class", 3),),
        conv_channels=(4, 4, 4),
        kernel_size=3,
        latent=5,
        lstm_hidden=(6, 7),
        time_steps=4,
        attention=False,
    )
    convs = (
        2 * 2 * 4 * 3 * 8 + 2 * 4 * 4 * 3 * 4 + 2 * 4 * 4 * 3 * 4
    )  # pooled 8 -> 4 after the first block
    proj = 2 * 4 * 5 * 4
    lstm = 4 * 2 * 4 * 6 * (5 + 6) + 4 * 2 * 4 * 7 * (6 + 7)
    head = 2 * 7 * 3
    assert count_flops(cfg) == convs + proj + lstm + head


def test_bad_ratio_is_refused(tiny_run: Path) -> None:
    model, _ = load_run(tiny_run)
    with pytest.raises(ConfigError, match="prune ratio"):
        pruned_config(model.config, 1.0)


def test_budget_gives_the_smallest_ratio_that_fits(tiny_run: Path) -> None:
    from fusion_edge.export.prune import ratio_for_budget
    from fusion_edge.toolkit.model import count_parameters

    model, _ = load_run(tiny_run)
    cfg = model.config
    full = count_parameters(model)

    def params(ratio: float) -> int:
        return count_parameters(MultimodalCnnLstm(pruned_config(cfg, ratio)))

    budget = full // 3
    r = ratio_for_budget(cfg, params=budget)
    assert 0 < r < 0.95 and params(r) <= budget < params(r - 0.01)
    flops = count_flops(cfg) // 2
    rf = ratio_for_budget(cfg, flops=flops)
    assert count_flops(pruned_config(cfg, rf)) <= flops < count_flops(pruned_config(cfg, rf - 0.01))
    both = ratio_for_budget(cfg, params=budget, flops=flops)
    assert both == pytest.approx(max(r, rf), abs=2e-4)
    assert ratio_for_budget(cfg, params=full) == 0.0  # already fits: nothing to remove
    with pytest.raises(ConfigError, match="even a 95% prune leaves .* parameters"):
        ratio_for_budget(cfg, params=10)
    with pytest.raises(ConfigError, match="parameter or FLOP budget"):
        ratio_for_budget(cfg)
