"""Smoke test of the V2A training recipe: a handful of steps of a tiny model, losses, resume, export, evaluation."""

import math

import pytest
import torch

from lumina_core.models.v2a import load_v2a
from lumina_core.toyworld import train_v2a
from lumina_core.toyworld.train import RUNS_ENV


@pytest.fixture(autouse=True)
def default_runs_in_tmp(tmp_path, monkeypatch):
    """A run that forgets --runs lands in the test's folder, never in ~/.cache."""
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "default-runs"))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and the recipe's --threads would otherwise outlive the test)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(tmp_path, steps: int):
    args = train_v2a.build_parser().parse_args(
        [
            "--steps",
            str(steps),
            "--ae-steps",
            "12",
            "--batch",
            "4",
            "--clips",
            "8",
            "--save-every",
            "2",
            "--threads",
            "1",
            "--runs",
            str(tmp_path / "runs"),
            "--export",
            str(tmp_path / "export"),
            "--eval-clips",
            "0",
            "--tiny",
        ]
    )
    return train_v2a.run(args)


def test_recipe_trains_resumes_and_exports(tmp_path):
    first = run(tmp_path, steps=2)
    ae = first["ae_history"]
    assert len(ae) == 12 and all(math.isfinite(x) for x in ae)
    assert sum(ae[-3:]) < sum(ae[:3]), f"autoencoder loss did not fall: {ae}"
    assert len(first["history"]) == 2 and all(math.isfinite(x) for x in first["history"])
    assert (tmp_path / "runs" / "v2a" / "checkpoint.pt").is_file()

    # Re-running resumes: stage 1 is reused, stage 2 continues from step 2 ...
    resumed = run(tmp_path, steps=4)
    assert resumed["ae_history"] == [] and len(resumed["history"]) == 2
    resumed_weights = load_v2a(resumed["path"]).state_dict()

    # ... and lands exactly where an uninterrupted run does.
    straight = run(tmp_path / "straight", steps=4)
    assert straight["history"][2:] == resumed["history"]
    straight_weights = load_v2a(straight["path"]).state_dict()
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def test_exported_model_is_scored(tmp_path):
    result = run(tmp_path, steps=1)
    generator = load_v2a(result["path"])
    assert generator.config.autoencoder.latent_scale != 1.0  # measured in stage 1
    figures = train_v2a.evaluate_v2a(generator, n_clips=2, seed=0, steps=2, cfg=1.0, batch=2)
    assert figures["clips"] == 2 and figures["duration_exact"] == 1.0
    assert 0 <= figures["f1"] <= 1 and 0 <= figures["precision"] <= 1 and 0 <= figures["recall"] <= 1
    assert figures["events"] > 0


def test_null_caption_items_read_the_learned_null():
    dit = train_v2a.V2AGenerator(train_v2a.TINY_V2A_CONFIG).dit
    null = torch.tensor([True, False])
    features, mask = train_v2a.training_captions(dit, 2, null, torch.Generator().manual_seed(0))
    assert mask[0].tolist() == [1] + [0] * (mask.shape[1] - 1) and mask[1].sum() >= 1
    assert torch.equal(features[0, 0], dit.null_text)
    features.sum().backward()
    assert dit.null_text.grad is not None
