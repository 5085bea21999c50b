"""Benchmarks: `echo-cli bench <target>` runs `echo_cli.bench.<target>.run(BenchArgs)`.

Targets: preprocess, generate, render, end-to-end, batch (module names use underscores:
end-to-end -> end_to_end). Shared machinery (timers, peak memory, the H.264 floor, result
files, docs/performance.md sections, history) lives in bench/common.py.
"""
TARGETS = ("preprocess", "generate", "render", "end-to-end", "batch")
