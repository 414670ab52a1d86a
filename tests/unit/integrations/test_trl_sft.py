"""The same LayerwiseCallback inside TRL's SFTTrainer (prompt/completion data, its own tokenization,
collator, loss and gradient checkpointing) on a tiny model."""
from __future__ import annotations

import pytest
from hf_helpers import StepRecorder, tiny

from grass.integrations.hf import LayerwiseCallback

trl = pytest.importorskip("trl")  # the [hf] extra
datasets = pytest.importorskip("datasets")

FIELDS = {"lisa": {"n_active_layers": 2, "switch_every": 2},
          "grass": {"n_active_layers": 2, "switch_every": 2, "probe_steps": 2, "refresh_every": 2}}


@pytest.mark.parametrize("method", ["lisa", "grass"])
def test_sft_trainer_trains_only_the_drawn_layers(method, tmp_path):
    model, tok = tiny(0)
    ds = datasets.Dataset.from_dict({"prompt": [f"What is {i} plus 3?" for i in range(8)],
                                     "completion": [f" It is {i + 3}." for i in range(8)]})
    cb = LayerwiseCallback(model, method, **FIELDS[method])
    rec = StepRecorder(cb)
    args = trl.SFTConfig(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=4, learning_rate=5e-3,
                         logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, max_length=64,
                         disable_tqdm=True, seed=0)
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[cb, rec], optimizers=(cb.optimizer, None))
    trainer.train()
    assert model.is_activation_checkpointing  # SFTConfig's default: activations are recomputed in backward

    probe = FIELDS[method].get("probe_steps", 0)
    assert rec.probe == [True] * probe + [False] * (8 - probe)
    assert all(c == set() for c in rec.changed[:probe])
    for step in range(probe, 8):
        assert len(rec.active[step]) == 2 and rec.changed[step] == rec.active[step] | {"embed", "head"}, step
    assert len({frozenset(a) for a in rec.active[probe:]}) > 1
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert [set(r["active_layers"]) for r in rows] == rec.active
    assert rows[-1]["loss"] < rows[probe]["loss"]
