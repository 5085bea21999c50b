"""Evaluation: metrics of a rendered or real video, baselines, suites, reports.

Modules (heavy imports happen inside functions):
- metrics.py   pure metric functions on arrays (correlation/lag, LVE, rPCC, SID, Var, ...)
- measure.py   video -> Measurement (re-detected landmarks, thumbnails, audio, stream facts)
- syncnet.py   our SyncNet-style lip-sync scorer (LSE-D / LSE-C analogues), training
- baselines.py ceiling / still / mismatched / shifted, from a real clip's measurement
- suite.py     evaluate(), evaluate_file(), run_suite() ('talking-heldout', folder, manifest)
- report.py    versioned JSON (schema 'echo-cli.eval' v1) and Markdown tables
- plots.py     mouth opening vs speech envelope PNG

Typical use:
    from echo_cli.eval.suite import evaluate_file
    result, measurement, wave, turns = evaluate_file("out.mp4", ref="real.mp4")
"""
