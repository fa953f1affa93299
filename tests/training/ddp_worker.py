"""DDP worker for tests/training/test_trainer.py, launched with
``python -m torch.distributed.run --nproc_per_node 2 ddp_worker.py DATA RUN_DIR [key=value ...]``.

Every rank trains the toy task through the real entry point and saves its final online
weights to ``RUN_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmark.training.command import prepare_run, run_training  # noqa: E402
from benchmark.training.distributed import init_distributed  # noqa: E402
from tests.training.toy import register  # noqa: E402


def main() -> None:
    data, run_dir, *overrides = sys.argv[1:]
    register()
    ctx = init_distributed("cpu")
    try:
        run = prepare_run("toy", "tiny", data, run_dir=run_dir, overrides=overrides)
        result = run_training(run, ctx=ctx)
        torch.save({"model": result.model.state_dict(), "world": ctx.world_size, "step": result.step},
                   Path(run_dir) / f"rank{ctx.rank}.pt")
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
