"""Time and memory of FID and KID on 10,000 samples; spread of the reference VAE's metrics.

    .venv/bin/python benchmarks/metrics_timing.py

Runs each measurement in this process with torch limited to 2 threads (the CI machine's
cores) and prints seconds and the growth of peak RSS.
"""

from __future__ import annotations

import importlib.util
import resource
import statistics
import time
from pathlib import Path

import torch

from grader.data import digits
from grader.metrics import class_coverage, fid, kid, precision_recall
from grader.metrics.features import digit_features

REPO = Path(__file__).resolve().parent.parent


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    before, t0 = _rss_mib(), time.perf_counter()
    out = fn()
    print(f"{label:48s} {time.perf_counter() - t0:7.2f} s   peak RSS +{_rss_mib() - before:6.0f}"
          f" MiB")
    return out


def reference_vae():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ref_vae", REPO / "reference" / "vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    model = module.VAE()
    model.load_state_dict(torch.load(REPO / "reference/checkpoints/vae.pt", weights_only=True))
    return model.eval()


def main() -> None:
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    train = digits("train", "binary")
    fake = torch.bernoulli(train.mean(0, keepdim=True).expand(10_000, -1, -1, -1), generator=gen)
    real = train[torch.randint(0, len(train), (10_000,), generator=gen)]
    timed("features of 10,000 images (digits CNN)", lambda: digit_features(fake))
    timed("FID, 10,000 vs 10,000 (features included)", lambda: fid(real, fake))
    timed("KID, 100 subsets of 1,000 (features included)", lambda: kid(real, fake))
    timed("precision/recall k=3, 5,000 vs 5,000", lambda: precision_recall(
        digit_features(real[:5000]), digit_features(fake[:5000])))
    model, test = reference_vae(), digits("test", "binary")
    fids, covs = [], []
    for seed in range(5):
        torch.manual_seed(seed)
        with torch.no_grad():
            samples = torch.bernoulli(model.sample(1000), generator=torch.Generator()
                                      .manual_seed(seed))
        fids.append(fid(test, samples))
        covs.append(class_coverage(samples).covered)
    print(f"reference VAE, 1,000 binarised samples vs test, seeds 0-4: FID "
          f"{statistics.mean(fids):.2f} +- {statistics.stdev(fids):.2f} "
          f"({', '.join(f'{v:.2f}' for v in fids)}); classes covered {covs}")


if __name__ == "__main__":
    main()
