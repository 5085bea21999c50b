"""Render farm: manifests in, videos out, on local workers, array shards or Ray (docs/batch.md).

`batch` calls only `echo_cli.api` (the render API) and L0 modules.
"""
from echo_cli.batch.manifest import Job, Manifest, load_manifest, parse_manifest_text
from echo_cli.batch.runner import BatchOptions, BatchSummary, run_batch, run_manifest
from echo_cli.batch.shard import Shard, detect_shard, parse_shard

__all__ = ["Job", "Manifest", "load_manifest", "parse_manifest_text", "BatchOptions", "BatchSummary",
           "run_batch", "run_manifest", "Shard", "detect_shard", "parse_shard"]
