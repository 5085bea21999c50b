"""Training: stage 1 (talking head, lip sync) lives here; stage 2 / recipes are the LCU's.

    from echo_cli.train import stage1
    stage1.run(data=None, out="runs/stage1", steps=None, seed=0, resume=False, preset="tiny")
    python -m echo_cli.train.lipsync_eval runs/stage1/model.safetensors   # held-out lip sync
"""
