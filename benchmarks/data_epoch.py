"""One epoch of data handling on the device: batches with pad-crop-flip augmentation against
the same batches without it (50,000 CIFAR-sized images, batch 100)."""

from __future__ import annotations

import torch

from benchmarks.harness import measure, report
from bopsweep.trial.cifar_files import Split
from bopsweep.trial.data import DeviceData


def run(n: int = 50_000, batch: int = 100, device: str = "cpu", rounds: int = 5) -> dict:
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen).numpy()
    data = DeviceData(Split(images, (torch.arange(n) % 10).numpy()), dev)

    def epoch(augment: bool) -> None:
        g = torch.Generator(device=dev).manual_seed(1)
        for _batch in data.batches(batch, g, augment):
            pass
        if dev.type == "cuda":
            torch.cuda.synchronize()

    results = measure(
        {"no augmentation": lambda: epoch(False), "augmentation": lambda: epoch(True)},
        "no augmentation",
        rounds,
        inner=1,
    )
    report(f"data, one epoch of {n:,} images, batch {batch}, {device}", results, "no augmentation")
    return results


if __name__ == "__main__":
    run()
