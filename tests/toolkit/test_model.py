"""The multimodal CNN-LSTM built from a dataset description: shapes, ranges, explanations,
variants, config round trip and the errors a user can hit."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from fusion_edge.errors import CheckpointError, ConfigError
from fusion_edge.toolkit.dataset import DatasetSpec, ModalitySpec, TaskSpec
from fusion_edge.toolkit.model import SIZES, ModelConfig, MultimodalCnnLstm, count_parameters

pytestmark = pytest.mark.usefixtures("torch_one_thread")

B = 6


def odd_spec() -> DatasetSpec:
    """Nothing like the football data: a 5-channel sensor at 20 Hz, a 3-channel one at 10 Hz,
    a 4-class task and a regression on [-2, 3]."""
    return DatasetSpec(
        modalities=(
            ModalitySpec("wrist", ("a", "b", "c", "d", "e"), ("",) * 5, 20.0, 40),
            ModalitySpec("belt", ("p", "q", "r"), ("",) * 3, 10.0, 20),
        ),
        tasks=(
            TaskSpec("grip", "class", labels=("w", "x", "y", "z")),
            TaskSpec("effort", "regression", value_range=(-2.0, 3.0)),
        ),
        window_seconds=2.0,
        hop_seconds=1.0,
    )


@pytest.fixture(scope="module")
def config(tiny_model: dict) -> ModelConfig:
    return ModelConfig.for_dataset(odd_spec(), "edge", **tiny_model)


def inputs(scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B, 5, 40, generator=g), scale * torch.randn(B, 3, 20, generator=g))


def test_config_follows_the_dataset(config: ModelConfig) -> None:
    assert config.modalities == (("wrist", 5, 40), ("belt", 3, 20))
    assert config.tasks == (("grip", "class", 4), ("effort", "regression", 1))
    assert config.value_ranges == ((0.0, 0.0), (-2.0, 3.0))
    assert config.time_steps == 10  # one step per 0.2 s of a 2 s window
    assert config.size == "edge"


def test_output_shapes_for_arbitrary_channels_and_tasks(config: ModelConfig) -> None:
    model = MultimodalCnnLstm(config).eval()
    grip, effort = model(*inputs())
    assert grip.shape == (B, 4)
    assert effort.shape == (B,)
    assert torch.isfinite(grip).all() and torch.isfinite(effort).all()


def test_regression_output_stays_in_its_range(config: ModelConfig) -> None:
    model = MultimodalCnnLstm(config).eval()
    with torch.no_grad():
        for scale in (1.0, 100.0, 1e4):
            _, effort = model(*inputs(scale))
            assert (effort >= -2.0).all() and (effort <= 3.0).all()


def test_a_range_maps_the_sigmoid_and_a_unit_range_is_the_sigmoid(config: ModelConfig) -> None:
    from dataclasses import replace

    model = MultimodalCnnLstm(config).eval()
    unit = MultimodalCnnLstm(replace(config, value_ranges=((0.0, 0.0), (0.0, 1.0)))).eval()
    unit.load_state_dict(model.state_dict())
    with torch.no_grad():
        _, effort = model(*inputs())
        _, score = unit(*inputs())
    # Same weights, so the same sigmoid underneath: (-2, 3) is 5 * it - 2.
    torch.testing.assert_close(effort, -2.0 + 5.0 * score)


def test_subset_of_tasks(tiny_model: dict) -> None:
    cfg = ModelConfig.for_dataset(odd_spec(), tasks=("effort",), **tiny_model)
    assert cfg.tasks == (("effort", "regression", 1),)
    out = MultimodalCnnLstm(cfg).eval()(*inputs())
    assert len(out) == 1 and out[0].shape == (B,)
    with pytest.raises(ValueError, match=r"the dataset has no task 'nope' \(--task\); its tasks are "):
        ModelConfig.for_dataset(odd_spec(), tasks=("nope",))
    # One typo among good names is refused too, not silently dropped.
    with pytest.raises(ConfigError, match=r"no task 'efort'"):
        ModelConfig.for_dataset(odd_spec(), tasks=("effort", "efort"))


def test_explain_attention_and_modality_contribution_sum_to_one(config: ModelConfig) -> None:
    model = MultimodalCnnLstm(config).eval()
    res = model.explain(*inputs())
    assert set(res) == {"grip", "effort", "attention", "modality_contribution"}
    assert res["attention"].shape == (B, config.time_steps)
    assert res["modality_contribution"].shape == (B, 2)
    torch.testing.assert_close(res["attention"].sum(dim=1), torch.ones(B))
    torch.testing.assert_close(res["modality_contribution"].sum(dim=1), torch.ones(B))
    assert (res["attention"] >= 0).all() and (res["modality_contribution"] >= 0).all()
    # explain() gives the same predictions as forward().
    grip, effort = model(*inputs())
    torch.testing.assert_close(res["grip"], grip)
    torch.testing.assert_close(res["effort"], effort)


@pytest.mark.parametrize(
    ("temporal", "attention"), [("none", False), ("none", True), ("lstm", False)]
)
def test_ablation_variants(config: ModelConfig, temporal: str, attention: bool) -> None:
    cfg = replace(config, temporal=temporal, attention=attention)
    model = MultimodalCnnLstm(cfg).eval()
    grip, effort = model(*inputs())
    assert grip.shape == (B, 4) and effort.shape == (B,)
    assert hasattr(model, "lstm1") == (temporal == "lstm")
    assert (model.attention is not None) == attention
    res = model.explain(*inputs())
    torch.testing.assert_close(res["attention"].sum(dim=1), torch.ones(B))
    torch.testing.assert_close(res["modality_contribution"].sum(dim=1), torch.ones(B))
    if not attention:  # no attention: every step weighs the same
        torch.testing.assert_close(
            res["attention"], torch.full((B, cfg.time_steps), 1.0 / cfg.time_steps)
        )


def test_unknown_temporal_is_refused(config: ModelConfig) -> None:
    with pytest.raises(ValueError, match="temporal must be 'lstm' or 'none', got 'gru'"):
        MultimodalCnnLstm(replace(config, temporal="gru"))


def test_wrong_number_of_inputs(config: ModelConfig) -> None:
    with pytest.raises(ValueError, match="expected 2 inputs, got 1"):
        MultimodalCnnLstm(config)(inputs()[0])


def test_config_json_round_trip(config: ModelConfig) -> None:
    for cfg in (
        config,
        ModelConfig.for_dataset(odd_spec(), "paper"),
        replace(config, temporal="none"),
    ):
        doc = json.loads(json.dumps(cfg.to_json()))
        assert ModelConfig.from_json(doc) == cfg


def test_config_from_another_version_is_refused(config: ModelConfig) -> None:
    doc = config.to_json()
    doc["heads_v2"] = True
    with pytest.raises(
        CheckpointError, match=r"unknown keys \['heads_v2'\].*another fusion-edge version"
    ):
        ModelConfig.from_json(doc)


def test_window_that_does_not_reduce_to_time_steps_is_refused() -> None:
    cfg = ModelConfig(modalities=(("imu", 3, 50),), tasks=(("a", "class", 2),), time_steps=20)
    with pytest.raises(
        ValueError,
        match=r"modality 'imu': 50 samples per window do not reduce to 20 time steps \(got 25\); "
        r"choose a window length that is a multiple of 20 samples or set time_steps",
    ):
        MultimodalCnnLstm(cfg)


def test_unknown_size_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"unknown model size 'huge'; choose one of \['edge', 'paper'\]"
    ):
        ModelConfig.for_dataset(odd_spec(), "huge")


def test_paper_size_is_bigger_than_edge() -> None:
    edge = MultimodalCnnLstm(ModelConfig.for_dataset(odd_spec(), "edge"))
    paper = MultimodalCnnLstm(ModelConfig.for_dataset(odd_spec(), "paper"))
    assert count_parameters(paper) > 5 * count_parameters(edge)
    assert paper.config.latent == SIZES["paper"]["latent"] == 512
    assert paper.config.lstm_hidden == (256, 256)


def test_lstms_are_single_layer_for_pruning(config: ModelConfig) -> None:
    model = MultimodalCnnLstm(config)
    assert model.lstm1.num_layers == 1 and model.lstm2.num_layers == 1


def test_overrides_win_over_the_size_preset() -> None:
    cfg = ModelConfig.for_dataset(odd_spec(), "paper", latent=24, time_steps=5)
    assert cfg.latent == 24 and cfg.time_steps == 5 and cfg.lstm_hidden == (256, 256)


def test_heads_are_one_product_with_one_linear_per_task(config: ModelConfig) -> None:
    """`TaskHeads` keeps a Linear (and its state-dict keys) per task but runs one product: the
    same numbers as applying each head on its own."""
    model = MultimodalCnnLstm(config).eval()
    assert {k for k in model.state_dict() if k.startswith("heads.")} == {
        "heads.0.weight", "heads.0.bias", "heads.1.weight", "heads.1.bias"
    }
    z = torch.randn(B, model.heads[0].in_features)
    with torch.no_grad():
        merged = model.heads(z)
        for head, y in zip(model.heads, merged, strict=True):
            torch.testing.assert_close(y, head(z))
    assert [tuple(y.shape) for y in merged] == [(B, 4), (B, 1)]


def test_any_window_length_and_rate_builds_a_model() -> None:
    # 4 s at 52 Hz (208 samples) and a 1 Hz stream (4 samples) next to it used to raise
    # "208 samples per window do not reduce to 20 time steps" in `fusion-edge train`.
    spec = DatasetSpec(
        modalities=(ModalitySpec("imu", ("ax", "ay", "az"), ("g",) * 3, 52.0, 208),
                    ModalitySpec("hr", ("hr",), ("bpm",), 1.0, 4)),
        tasks=(TaskSpec("phase", "class", ("a", "b")),),
        window_seconds=4.0, hop_seconds=2.0,
    )
    alone = replace(spec, modalities=spec.modalities[:1])
    assert ModelConfig.for_dataset(alone).time_steps == 13  # 208 -> 26, two steps per LSTM step
    cfg = ModelConfig.for_dataset(spec)
    out = MultimodalCnnLstm(cfg).eval()(torch.zeros(2, 3, 208), torch.zeros(2, 1, 4))
    assert out[0].shape == (2, 2)
    # Windows that already fit keep one LSTM step per 0.2 s.
    assert ModelConfig.for_dataset(replace(spec, modalities=(
        ModalitySpec("imu", ("ax",), ("g",), 40.0, 160),), window_seconds=4.0)).time_steps == 20
