"""Train the shipped digits feature network (seeded; a few seconds on 2 CPU cores).

    python -m grader.metrics.train_features            # writes grader/metrics/digits_cnn.pt

Trains on the train split in the binary, continuous and scaled forms together, with
one-pixel random shifts, and prints the test accuracy of each form.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import digit_labels, digits
from .features import WEIGHTS, DigitsCNN

FORMS = ("binary", "continuous", "scaled")


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    padded = F.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=gen).tolist()
    return padded[..., dy:dy + 8, dx:dx + 8]


def train(epochs: int = 40, seed: int = 0) -> tuple[DigitsCNN, dict[str, float]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([digits("train", f) for f in FORMS])
    y = digit_labels("train").repeat(len(FORMS))
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = F.cross_entropy(model(_shift(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = {f: float((model(digits("test", f)).argmax(1) == digit_labels("test"))
                        .double().mean()) for f in FORMS}
    return model, acc


def main() -> None:
    torch.set_num_threads(2)
    model, acc = train()
    out = Path(__file__).with_name(WEIGHTS)
    torch.save(model.state_dict(), out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); test accuracy: " +
          ", ".join(f"{f} {a:.4f}" for f, a in acc.items()))


if __name__ == "__main__":
    main()
