"""Shared training machinery: run folders, resumable safetensors state, seeded steps,
torchrun data parallelism (gloo on CPU, NCCL on GPU), loss logs and the loss-curve PNG.

Run folder layout (RUN_DIR):
  state.safetensors / state.json   latest resumable state: model + optimizer tensors, step
  model.safetensors / model.json   the trained model (what other stages / the recipe load)
  losses.jsonl                     one JSON line per logged step
  loss.png                         the loss curves
Randomness is derived from (seed, step, rank) at every step, so a resumed run draws the
same batches as an uninterrupted one, without saving RNG states.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from echo_cli import log
from echo_cli.errors import ModelError, OutputError
from echo_cli.io_atomic import write_text

LOG = log.get("echo_cli.train.common")


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 1500
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 500
    stop_after: int | None = None   # end this invocation after that step (time-sliced jobs); resume later


#################################################################################
#                              Distributed set-up                               #
#################################################################################

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Under torchrun (WORLD_SIZE > 1): join the group (NCCL on GPU, gloo on CPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device="cuda" if torch.cuda.is_available() else "cpu")
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        backend, device = "nccl", f"cuda:{local}"
    else:
        backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, device=device)


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def step_generator(seed: int, step: int, rank: int = 0):
    import torch

    s = int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s), np.random.default_rng(s)


#################################################################################
#                               Run folder state                                #
#################################################################################

RUN_FILES = ("model.safetensors", "state.safetensors", "losses.jsonl")
STATE_SAVED_AT: int | None = None      # the step an interrupted run saved (the CLI's last line says it)


class RunDir:
    def __init__(self, path: str | Path, resume: bool = False, force: bool = False):
        self.path = Path(path)
        self.created = not self.path.exists()       # a new run's folder, which a failed start may remove
        done = next((n for n in RUN_FILES if (self.path / n).exists()), None)
        if done is not None and not (resume or force):      # a second run replaced the first without a word
            raise OutputError(f"this folder holds a training run already ({done})", path=self.path,
                              fix="pass --resume to continue it, --force to train over it, or choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the run folder: {e.strerror}", path=self.path,
                              fix="choose a writable --out folder") from e

    def discard_if_empty(self) -> None:
        """A run that failed before writing anything leaves no empty folder behind (only a
        folder this run created: an existing one is the user's)."""
        if not self.created:
            return
        try:
            self.path.rmdir()
        except OSError:
            pass

    state = property(lambda self: self.path / "state")
    model = property(lambda self: self.path / "model")
    losses = property(lambda self: self.path / "losses.jsonl")
    plot = property(lambda self: self.path / "loss.png")


def save_state(run: RunDir, model, opt, step: int, config: dict) -> None:
    from echo_cli.model.checkpoint import generator_tensors, save_checkpoint

    tensors = generator_tensors(model)
    for i, group in enumerate(opt.state_dict()["state"].items()):
        idx, st = group
        for k, v in st.items():
            tensors[f"optim.{idx}.{k}"] = v if hasattr(v, "dim") else __import__("torch").tensor(v)
    # the global torch RNG (training-time augmentation inside the model draws from it), so a
    # resumed run continues the same stream as an uninterrupted one
    tensors["rng.torch_cpu"] = __import__("torch").get_rng_state()
    save_checkpoint(run.state, tensors, {**config, "generator": model.cfg.to_dict(), "step": int(step)})


def load_state(run: RunDir, model, opt) -> int:
    """Restore model + optimizer from RUN_DIR/state; returns the step to continue from."""
    import torch

    from echo_cli.model.checkpoint import component, load_checkpoint, load_state as load_module

    tensors, config = load_checkpoint(run.state)
    if config.get("generator") != model.cfg.to_dict():
        raise ModelError("the run folder was made with a different model configuration", path=run.path,
                         fix="resume with the same --preset/options, or start a new --out folder")
    load_module(model, component(tensors, "generator"), run.path, "generator")
    sd = opt.state_dict()
    optim = component(tensors, "optim")
    state = {}
    for key, v in optim.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"].to(torch.uint8))
    return int(config["step"])


def append_losses(run: RunDir, step: int, losses: dict) -> None:
    with open(run.losses, "a") as f:
        f.write(json.dumps({"step": step, **{k: round(float(v), 6) for k, v in losses.items()}}) + "\n")


def read_losses(run: RunDir) -> list[dict]:
    if not run.losses.is_file():
        return []
    rows = []
    for line in run.losses.read_text(errors="replace").splitlines():
        try:        # a line cut by a kill or a full disk is skipped, not fatal to every later --resume
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def keep_losses_until(run: RunDir, step: int) -> None:
    """After a resume from `step`: drop the rows logged past it (and damaged ones), so the
    log and the plot hold each step once."""
    if run.losses.is_file():
        rows = [r for r in read_losses(run) if int(r["step"]) <= step]
        from echo_cli.io_atomic import write_text

        write_text(run.losses, "".join(json.dumps(r) + "\n" for r in rows))


def plot_losses(run: RunDir, title: str = "training losses") -> Path | None:
    rows = read_losses(run)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from echo_cli.io_atomic import atomic_path

    keys = [k for k in rows[0] if k != "step"]
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for k in keys:
        ax.plot(steps, [r.get(k, np.nan) for r in rows], label=k)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(run.plot) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return run.plot


#################################################################################
#                                  The loop                                     #
#################################################################################

def lr_at(step: int, cfg: LoopConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(1.0, p))))


def train_loop(model, loss_fn: Callable, cfg: LoopConfig, run: RunDir, dist_: Dist,
               resume: bool = False, config: dict | None = None) -> dict:
    """loss_fn(model_or_ddp, step, torch_gen, np_rng) -> dict of scalar tensors with key "loss"."""
    import torch

    config = dict(config or {})
    config["loop"] = asdict(cfg)
    torch.manual_seed(cfg.seed)
    net = model
    if dist_.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, find_unused_parameters=True)     # stage 1 leaves the user path unused
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if resume and Path(str(run.state) + ".safetensors").is_file():
        start = load_state(run, model, opt)
        LOG.info("resuming %s at step %d", run.path, start)
    elif resume:    # start-or-continue: one command line for preemptible jobs, said out loud
        LOG.warning("--resume: no saved state in %s yet; starting at step 0", run.path)
    if start == 0 and dist_.main and run.losses.is_file():
        run.losses.unlink()
    elif dist_.main:
        keep_losses_until(run, start)
    t0 = time.time()
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    acc: dict[str, float] = {}
    n_acc = 0
    completed = start       # the last step whose update, log line and checkpoint are all done
    try:
        for step in range(start, end):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            tg, rng = step_generator(cfg.seed, step, dist_.rank)
            losses = loss_fn(net, step, tg, rng)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if torch.isfinite(gn):
                opt.step()
            for k, v in losses.items():
                acc[k] = acc.get(k, 0.0) + float(v.detach())
            n_acc += 1
            done = step + 1
            if dist_.main and (done % cfg.log_every == 0 or done == end):
                means = {k: v / n_acc for k, v in acc.items()}
                append_losses(run, done, means)
                LOG.info("step %d/%d  %s  (%.1f steps/s)", done, cfg.steps,
                         " ".join(f"{k}={v:.4f}" for k, v in means.items()), (done - start) / (time.time() - t0))
                acc, n_acc = {}, 0
            if dist_.main and (done % cfg.ckpt_every == 0 or done == end):
                save_state(run, model, opt, done, config)
                plot_losses(run)
            completed = done
    except KeyboardInterrupt:
        # SIGINT/SIGTERM (a preempted job): keep what was trained, so `--resume` goes on from
        # here (a signal inside an optimizer step can leave that one step half applied)
        if dist_.main and completed > start:
            save_state(run, model, opt, completed, config)
            plot_losses(run)
            global STATE_SAVED_AT
            STATE_SAVED_AT = completed
            LOG.warning("stopped at step %d of %d; state saved: rerun with --resume to continue", completed, cfg.steps)
        raise
    return {"steps": end, "start": start, "seconds": round(time.time() - t0, 1),
            "final": read_losses(run)[-1] if dist_.main and read_losses(run) else {}}


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
