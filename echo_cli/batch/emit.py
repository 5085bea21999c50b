"""`echo-cli batch MANIFEST --emit slurm|k8s`: a ready array job for the manifest.

Both run the same command on every array element, `echo-cli batch MANIFEST ...`, which picks
its shard from the environment (SLURM_ARRAY_TASK_ID/COUNT, or JOB_COMPLETION_INDEX +
ECHO_SHARD_COUNT: see batch/shard.py). Shards are deterministic, so a rerun of the array
(after preemption or failures) renders exactly what is missing.

The text is generated, never executed; every argument is shell-quoted (SLURM) or a YAML list
item (Kubernetes), so a manifest named `; rm -rf ~` is just a file name.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from echo_cli.errors import UsageError


@dataclass(frozen=True)
class EmitOptions:
    shards: int                         # array size (number of shards)
    workers: int = 1                    # local workers per array element
    cpus: int = 2                       # CPUs per array element
    mem: str = "8G"                     # memory per array element
    time: str = "04:00:00"              # SLURM wall time
    partition: str | None = None        # SLURM partition
    max_parallel: int | None = None     # SLURM %N throttle / k8s parallelism
    image: str = "echo-cli:latest"      # container image for Kubernetes
    pvc: str = "echo-data"              # PersistentVolumeClaim holding manifest, inputs and outputs
    name: str = "echo-batch"
    batch_args: list[str] = field(default_factory=list)   # extra `echo-cli batch` flags


def _label(text: str) -> str:
    """A file name for a comment line: control characters (a newline in a name would end
    the comment and start a command) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _k8s_memory(mem: str) -> str:
    """SLURM-style 8G -> Kubernetes 8Gi; a Kubernetes quantity (8Gi, 512Mi) stays."""
    return re.sub(r"^(\d+(?:\.\d+)?)([KMGT])$", r"\1\2i", mem)


def _command(manifest: Path, opts: EmitOptions) -> list[str]:
    return ["echo-cli", "batch", str(manifest), "--workers", str(opts.workers), *opts.batch_args]


def emit_slurm(manifest: str | Path, opts: EmitOptions) -> str:
    if opts.shards < 1:
        raise UsageError("--shards must be at least 1", fix="e.g. --shards 8")
    manifest = Path(manifest).resolve()
    throttle = f"%{opts.max_parallel}" if opts.max_parallel else ""
    lines = [
        "#!/bin/bash",
        f"# SLURM array for {_label(manifest.name)}: {opts.shards} shard(s). Save it (e.g. > render.sbatch) and submit: sbatch render.sbatch",
        "# Each element renders shard SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT (detected by echo-cli).",
        "# Resubmitting the same script after failures or preemption renders only what is missing.",
        f"#SBATCH --job-name={opts.name}",
        f"#SBATCH --array=0-{opts.shards - 1}{throttle}",
        f"#SBATCH --cpus-per-task={opts.cpus}",
        f"#SBATCH --mem={opts.mem}",
        f"#SBATCH --time={opts.time}",
        "#SBATCH --requeue",
        f"#SBATCH --output={opts.name}-%A_%a.log",
    ]
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    lines += [
        "set -euo pipefail",
        f"export OMP_NUM_THREADS={max(1, opts.cpus // max(1, opts.workers))}",
        "# exit 8 = some jobs failed (listed in the shard's report); the rest of the shard completed",
        " ".join(shlex.quote(a) for a in _command(manifest, opts)),
        "",
    ]
    return "\n".join(lines)


def emit_k8s(manifest: str | Path, opts: EmitOptions) -> str:
    import yaml

    if opts.shards < 1:
        raise UsageError("--shards must be at least 1", fix="e.g. --shards 8")
    manifest = Path(manifest).resolve()
    mount = str(manifest.parent)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": opts.name, "labels": {"app": "echo-cli"}},
        "spec": {
            "completions": opts.shards,
            "parallelism": opts.max_parallel or opts.shards,
            "completionMode": "Indexed",
            "backoffLimitPerIndex": 2,
            "maxFailedIndexes": opts.shards,
            "podFailurePolicy": {"rules": [
                # exit 2/3 = usage or manifest error: retrying the pod cannot help
                {"action": "FailJob", "onExitCodes": {"containerName": "echo", "operator": "In", "values": [2, 3]}},
            ]},
            "template": {
                "metadata": {"labels": {"app": "echo-cli"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "echo",
                        "image": opts.image,
                        "command": _command(manifest, opts),
                        "env": [
                            # Kubernetes gives each pod JOB_COMPLETION_INDEX but not the completions
                            # count; echo-cli reads the shard count from here.
                            {"name": "ECHO_SHARD_COUNT", "value": str(opts.shards)},
                            {"name": "OMP_NUM_THREADS", "value": str(max(1, opts.cpus // max(1, opts.workers)))},
                        ],
                        "resources": {"requests": {"cpu": str(opts.cpus), "memory": _k8s_memory(opts.mem)},
                                      "limits": {"memory": _k8s_memory(opts.mem)}},
                        "volumeMounts": [{"name": "data", "mountPath": mount}],
                    }],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": opts.pvc}}],
                },
            },
        },
    }
    head = (f"# Kubernetes Indexed Job for {_label(manifest.name)}: {opts.shards} shard(s).\n"
            f"# Apply with: kubectl apply -f {opts.name}.yaml  (the PVC '{opts.pvc}' must hold the manifest,\n"
            f"# its inputs and the outputs, mounted at the manifest's folder so its relative paths work).\n")
    return head + yaml.safe_dump(job, sort_keys=False)
