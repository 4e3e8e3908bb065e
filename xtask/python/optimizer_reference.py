"""torch.optim.SGD with two parameter groups, momentum, weight decay, and
the poly schedule with warm-up (LambdaLR), on a fixed sequence of
gradients: the reference of crates/pspnet-train/tests/sgd.rs.

Usage: python optimizer_reference.py OUT.json   (pip install torch)
"""

import json
import sys

import torch


def main(out):
    torch.manual_seed(0)
    iters, power, warmup, base = 8, 0.9, 3, 0.01
    shapes = [(4, 3, 3, 3), (4,), (5, 4, 1, 1)]
    groups = [0, 0, 1]  # the backbone at the base rate, the head at 10x
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    initial = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(
        [
            {"params": [p for p, g in zip(params, groups) if g == 0], "lr": base},
            {"params": [p for p, g in zip(params, groups) if g == 1], "lr": base * 10},
        ],
        lr=base,
        momentum=0.9,
        weight_decay=1e-4,
    )

    def factor(i):
        warm = (i + 1) / warmup if i < warmup else 1.0
        return (1 - i / iters) ** power * warm

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    steps = []
    for _ in range(6):
        grads = [torch.randn(s) for s in shapes]
        rates = [group["lr"] for group in optimizer.param_groups]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
        scheduler.step()
        steps.append(
            {
                "grads": [g.flatten().tolist() for g in grads],
                "rates": rates,
                "params": [p.detach().flatten().tolist() for p in params],
            }
        )
    json.dump(
        {
            "torch": torch.__version__,
            "schedule": {"base": base, "iters": iters, "power": power, "warmup": warmup},
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "groups": groups,
            "initial": [p.flatten().tolist() for p in initial],
            "steps": steps,
        },
        open(out, "w"),
    )


if __name__ == "__main__":
    main(sys.argv[1])
