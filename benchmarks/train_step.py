"""Training steps at width 1/8 and 1/4, on the same model and data in one run:

* Bop2ndOrder against Bop (the optimizer's share of a step);
* π_t logging on against off (bopsweep's flip counting and its device-side windows);
* bopsweep's trainer loop against a minimal hand-written PyTorch loop (same model, optimizers,
  data and augmentation: the trainer's own overhead).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmarks.harness import measure, report
from bopsweep.studies import TrialConfig
from bopsweep.trial.cifar_files import Split
from bopsweep.trial.data import DeviceData, augment_batch, to_unit_range
from bopsweep.trial.flips import FlipLog
from bopsweep.trial.train import LAYOUT, Hyperparams, build_model, build_optimizers


def _data(n: int, device: torch.device) -> DeviceData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).numpy()
    labels = torch.randint(0, 10, (n,), generator=gen).numpy()
    return DeviceData(Split(images, labels), device)


class Setup:
    """A model, its two optimizers, the trainer's helpers, and fixed batches."""

    def __init__(
        self,
        optimizer: str,
        width: float,
        batch: int,
        device: torch.device,
        layout: torch.memory_format = LAYOUT,
    ) -> None:
        torch.manual_seed(0)
        self.config = TrialConfig(
            optimizer=optimizer, width=width, batch_size=batch, device=str(device)
        ).resolved()
        self.model = build_model(self.config).to(device, memory_format=layout)
        self.layout = layout
        self.binary, self.real = build_optimizers(self.config, self.model)
        self.hyper = Hyperparams(self.config, self.binary, self.real, steps_per_epoch=100)
        numels = [p.numel() for p in self.model.binary_parameters()]
        self.flips = FlipLog(self.model.binary_layer_names, numels, 10, device)
        self.data = _data(batch * 4, device)
        self.gen = torch.Generator(device=device).manual_seed(0)
        self.sums = torch.zeros(2, device=device)
        self.step = 0

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(
            0,
            len(self.data),
            (self.config.batch_size,),
            generator=self.gen,
            device=self.data.device,
        )
        x = augment_batch(self.data.images[idx], self.gen)
        return to_unit_range(x).contiguous(memory_format=self.layout), self.data.labels[idx]

    def minimal(self) -> None:
        """The hand-written loop: forward, backward, two optimizer steps."""
        x, y = self.batch()
        loss = F.cross_entropy(self.model(x), y)
        self.binary.zero_grad(set_to_none=True)
        self.real.zero_grad(set_to_none=True)
        loss.backward()
        self.binary.step()
        self.real.step()

    def trainer(self, log: bool = True) -> None:
        """The body of bopsweep.trial.train.run_trial's loop."""
        x, y = self.batch()
        self.hyper.apply(self.step)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.binary.zero_grad(set_to_none=True)
        self.real.zero_grad(set_to_none=True)
        loss.backward()
        self.binary.step()
        self.real.step()
        self.step += 1
        if log:
            self.flips.record(self.step, self.binary.flip_counts)
        self.sums += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum()])


def run(
    widths: tuple[float, ...] = (1 / 8, 1 / 4),
    batch: int = 100,
    rounds: int = 7,
    device: str = "cpu",
) -> dict:
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    results = {}
    for width in widths:
        bop, bop2 = Setup("bop", width, batch, dev), Setup("bop2", width, batch, dev)
        nchw = Setup("bop2", width, batch, dev, layout=torch.contiguous_format)
        candidates = {
            "Bop2ndOrder, trainer, NCHW layout": nchw.trainer,
            "Bop, trainer": bop.trainer,
            "Bop2ndOrder, trainer": bop2.trainer,
            "Bop2ndOrder, trainer without π_t": lambda s=bop2: s.trainer(log=False),
            "Bop2ndOrder, minimal loop": bop2.minimal,
        }
        r = measure(candidates, "Bop2ndOrder, minimal loop", rounds=rounds, sync=sync)
        name = f"width 1/{round(1 / width)}" if width < 1 else f"width {width:g}"
        report(f"training step, {name}, batch {batch}, {device}", r, "Bop2ndOrder, minimal loop")
        ratios = {
            "bop2_over_bop": r["Bop2ndOrder, trainer"]["seconds"] / r["Bop, trainer"]["seconds"],
            "pi_logging_overhead": r["Bop2ndOrder, trainer"]["seconds"]
            / r["Bop2ndOrder, trainer without π_t"]["seconds"]
            - 1,
            "trainer_over_minimal": r["Bop2ndOrder, trainer"]["ratio"],
            "channels_last_over_nchw": r["Bop2ndOrder, trainer"]["seconds"]
            / r["Bop2ndOrder, trainer, NCHW layout"]["seconds"],
        }
        for k, v in ratios.items():
            print(f"  {k}: {v:.3f}")
        results[name] = {"timings": r, **ratios}
        assert all(math.isfinite(v) for v in ratios.values())
    return results


if __name__ == "__main__":
    run()
