"""`echo-cli batch MANIFEST`: render every job of a manifest (docs/batch.md).

Convention (see cli/main.py): `register(app)`; light imports; results via common.emit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from echo_cli.cli import common

EXAMPLE = """Examples:

  echo-cli batch jobs.csv --workers 2                 # local worker processes

  echo-cli batch jobs.yaml --shard 1/4                # one shard of four (or from SLURM/k8s env)

  echo-cli batch jobs.jsonl --emit slurm --shards 8 > render.sbatch

  echo-cli batch jobs.yaml --engine ray --address auto

Exit codes: 0 all jobs done or already done; 3 invalid manifest (rows listed with line numbers);
8 some jobs failed (see the report; the others completed); 130 interrupted (rerun to finish)."""


def register(app: typer.Typer) -> None:
    @app.command("batch", help="Render every job of a manifest (YAML, CSV or JSON Lines); reruns finish what is missing.",
                 epilog=EXAMPLE)
    def batch(
        manifest: Annotated[Path, typer.Argument(help="manifest file: .yaml, .csv or .jsonl", show_default=False)],
        workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="local worker processes")] = 1,
        retries: Annotated[int, typer.Option("--retries", min=0, help="extra attempts for transient errors (not bad input)")] = 2,
        backoff: Annotated[float, typer.Option("--backoff", min=0.0, help="first retry delay in seconds (doubles each time)")] = 2.0,
        shard: Annotated[Optional[str], typer.Option("--shard", help="i/n: run shard i of n (default: from SLURM/k8s env, else all)")] = None,
        engine: Annotated[str, typer.Option("--engine", help="local | ray")] = "local",
        address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: start a local Ray)")] = None,
        skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="run the valid rows of a manifest with bad rows")] = False,
        allow_outside: Annotated[bool, typer.Option("--allow-outside", help="allow paths outside the manifest's folder")] = False,
        output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="where rows without 'output' write (default: <manifest folder>/renders)")] = None,
        report: Annotated[Optional[Path], typer.Option("--report", help="JSON Lines report (default: <manifest>.report.jsonl beside it)")] = None,
        check: Annotated[bool, typer.Option("--check", help="validate the manifest and exit; render nothing")] = False,
        emit: Annotated[Optional[str], typer.Option("--emit", help="slurm | k8s: print an array job for this manifest and exit")] = None,
        shards: Annotated[Optional[int], typer.Option("--shards", min=1, help="array size for --emit (default: min(jobs, 16))")] = None,
        cpus: Annotated[int, typer.Option("--cpus", min=1, help="CPUs per array element for --emit")] = 2,
        mem: Annotated[str, typer.Option("--mem", help="memory per array element for --emit")] = "8G",
        time_limit: Annotated[str, typer.Option("--time", help="SLURM wall time for --emit slurm")] = "04:00:00",
        partition: Annotated[Optional[str], typer.Option("--partition", help="SLURM partition for --emit slurm")] = None,
        image: Annotated[str, typer.Option("--image", help="container image for --emit k8s")] = "echo-cli:latest",
        pvc: Annotated[str, typer.Option("--pvc", help="PersistentVolumeClaim with the data, for --emit k8s")] = "echo-data",
    ) -> None:
        """Render every job of a manifest, in worker processes, array shards or on Ray."""
        from echo_cli.batch.manifest import load_manifest
        from echo_cli.batch.runner import BatchOptions, run_manifest
        from echo_cli.batch.shard import detect_shard
        from echo_cli.errors import UsageError

        st = common.state()
        if engine not in ("local", "ray"):
            raise UsageError(f"unknown engine '{engine}'", fix="use --engine local or --engine ray")
        m = load_manifest(manifest, allow_outside=allow_outside, output_dir=output_dir)

        if emit is not None:
            _emit(manifest, m, emit, shards, workers, cpus, mem, time_limit, partition, image, pvc,
                  retries=retries, skip_invalid=skip_invalid, allow_outside=allow_outside, output_dir=output_dir,
                  backoff=backoff, report=report)
            return
        sh = detect_shard(shard)        # a bad --shard (or array env) is a usage error for --check too
        if check:
            if m.invalid and not skip_invalid:
                m.raise_if_invalid()
            import logging

            for p in m.invalid:         # --skip-invalid: say which rows a run would skip
                logging.getLogger("echo_cli.batch").warning("%s: %s", manifest, p)
            mine = len(sh.select(m.jobs))
            part = "" if sh.is_whole else f" ({mine} in shard {sh.label})"
            common.emit({"manifest": str(manifest), "jobs": len(m.jobs), "shard": sh.label, "shard_jobs": mine,
                         "invalid": [str(p) for p in m.invalid]},
                        human=f"{manifest}: {len(m.jobs)} valid job(s){part}, {len(m.invalid)} invalid row(s)")
            return
        opts = BatchOptions(workers=workers, retries=retries, backoff=backoff, skip_invalid=skip_invalid,
                            shard=sh, engine=engine, address=address, report=report,
                            progress=not (st.quiet or st.no_progress or st.json))
        summary = run_manifest(m, opts)
        d = summary.to_dict()
        rtf = f", real-time factor {summary.real_time_factor:.2f}" if summary.real_time_factor else ""
        human = (f"batch {manifest.name} shard {summary.shard}: {summary.done} done, {summary.skipped} already done, "
                 f"{summary.failed} failed, {summary.invalid} invalid, {summary.locked} busy elsewhere "
                 f"in {summary.wall_s:.1f}s ({summary.videos_per_min:.1f} videos/min{rtf}); report {summary.report}")
        others = "the others completed" if summary.done + summary.skipped else "no job completed"
        err = None
        if summary.exit_code:       # the README's promise under --json: an `error` object beside the counts
            err = {"kind": "partial", "exit_code": summary.exit_code, "path": str(manifest),
                   "message": f"{summary.failed + summary.invalid + summary.locked} job(s) not rendered; {others}",
                   "fix": f"see {summary.report}, correct the inputs and rerun"}
        common.emit({**d, **({"error": err} if err else {})}, human=human, ok=not summary.exit_code)
        if summary.exit_code:
            import sys

            for f in summary.failures[:20]:
                # the file the error is about, unless its message already names it
                where = f"{f['path']}: " if f.get("path") and str(f["path"]) not in (f["error"] or "") else ""
                fix = f" (fix: {f['fix']})" if f.get("fix") else ""
                print(f"error: line {f['line']} ({f['id']}): {where}{f['error']}{fix}", file=sys.stderr)
            print(f"error: {err['message']} (fix: {err['fix']})", file=sys.stderr)
            raise typer.Exit(summary.exit_code)


def _emit(manifest: Path, m, kind: str, shards, workers, cpus, mem, time_limit, partition, image, pvc, *,
          retries: int, skip_invalid: bool, allow_outside: bool, output_dir, backoff: float, report) -> None:
    import sys

    from echo_cli.batch.emit import EmitOptions, emit_k8s, emit_slurm
    from echo_cli.errors import UsageError

    if kind not in ("slurm", "k8s"):
        raise UsageError(f"unknown --emit '{kind}'", fix="use --emit slurm or --emit k8s")
    # values that land on a line of the script: one token each, or a line could be smuggled in
    for flag, value in (("--mem", mem), ("--time", time_limit), ("--partition", partition), ("--image", image),
                        ("--pvc", pvc)):
        if value is not None and (not value or any(c.isspace() or not c.isprintable() for c in value)):
            raise UsageError(f"{flag} must be one word without spaces, got {value!r}", fix=f"e.g. {flag} value")
    if report is not None:      # every element writes its own shard report; one path would be clobbered
        raise UsageError("--report names one file; the elements of an array job each write their own "
                         "(<manifest>.shard<i>of<n>.report.jsonl beside the manifest)", fix="drop --report with --emit")
    if m.invalid and not skip_invalid:
        m.raise_if_invalid()
    n = shards or max(1, min(len(m.jobs), 16))
    args = ["--retries", str(retries), "--backoff", f"{backoff:g}"]
    if skip_invalid:
        args.append("--skip-invalid")
    if allow_outside:
        args.append("--allow-outside")
    if output_dir is not None:
        args += ["--output-dir", str(Path(output_dir).resolve())]
    opts = EmitOptions(shards=n, workers=workers, cpus=cpus, mem=mem, time=time_limit, partition=partition,
                       image=image, pvc=pvc, name=_name(manifest), batch_args=args)
    text = emit_slurm(manifest, opts) if kind == "slurm" else emit_k8s(manifest, opts)
    from echo_cli.cli import common

    if common.state().json:         # still exactly one JSON object: the script inside it
        common.emit({"manifest": str(manifest), "emit": kind, "shards": n, "script": text})
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def _name(manifest: Path) -> str:
    import re

    base = re.sub(r"[^a-z0-9-]+", "-", manifest.stem.lower()).strip("-")[:40].strip("-") or "batch"
    return f"echo-{base}"
