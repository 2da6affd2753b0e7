"""The example of "Table 1 with error bars" in docs/readers.md: a synthetic study, not results.

    python docs/table_example.py example.db 3 && bopsweep table example.db

writes a study named ``table1-paper`` into ``example.db`` (which must not hold one yet): the
arms of ``studies/table1_paper.toml`` with 5 seeds each and a latent-weights arm with two seeds
done, as COMPLETE trials with made-up final, best-epoch and training accuracies (a per-seed
effect shared by every arm, as a seed's data order would be, plus noise; the second argument
seeds it). No arm is the study's base point, so the baseline is its first arm, Bop. No
training runs.
"""

import sys
from dataclasses import replace

import numpy as np
import optuna

from bopsweep.store import Store
from bopsweep.store.trial_config import config_attrs, study_base
from bopsweep.studies import expand, load_study_file

CENTRE = {
    "Bop": 0.910,
    "Bop2ndOrder biased": 0.919,
    "Bop2ndOrder unbiased": 0.9175,
    "latent weights": 0.885,
}
TRAIN_GAP = {  # training minus validation accuracy
    "Bop": 0.045,
    "Bop2ndOrder biased": 0.060,
    "Bop2ndOrder unbiased": 0.055,
    "latent weights": 0.030,
}


def main(database: str, seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_study_file("studies/table1_paper.toml")
    latent = {"label": "latent weights", "optimizer": "latent"}
    spec = replace(spec, seeds=5, arms=[*spec.arms, latent])
    study, _ = Store(f"sqlite:///{database}", create=True).create(spec)
    rng = np.random.default_rng(seed)
    seed_effect = rng.normal(0, 0.002, size=spec.seeds)
    base = study_base(study.user_attrs)
    for p in expand(spec):
        if p.label == "latent weights" and p.config.seed > 1:
            continue  # two seeds done so far
        final = CENTRE[p.label] + seed_effect[p.config.seed] + rng.normal(0, 0.0015)
        attrs = {
            "config_id": p.config_id,
            "label": p.label,
            **config_attrs(p.config.to_dict(), base),  # what differs from the study's base
            "best_val_acc": final + abs(rng.normal(0.002, 0.001)),
            "best_epoch": 400,
            "final_train_acc": final + TRAIN_GAP[p.label] + rng.normal(0, 0.001),
        }
        study.add_trial(
            optuna.trial.create_trial(
                value=final,
                params=p.params,
                distributions=p.distributions,
                user_attrs=attrs,
            )
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
