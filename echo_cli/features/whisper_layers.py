"""Whisper-base encoder in plain torch, read from the packaged CTranslate2 model.bin, for
its *intermediate* layers.

Why: CTranslate2 returns only the encoder's last layer, and that layer is the most
contextual one (it is trained to serve the text decoder). For mouth motion the middle
layers carry more articulation: a ridge map from the hidden states after blocks 2 and 3
(of 6) to the mouth codes scores 0.664 in leave-one-speaker-out CV on the training
speakers and 0.526 on the held-out ones, against 0.547 / 0.469 for the last layer (same
fit, same score; docs/generator.md "Whisper's middle layers"). Stopping after block 3 keeps
the cost of the "audio features" stage where CTranslate2's whole int8 encoder had it
(`echo-cli bench end-to-end`, docs/generator.md).

The model file is read directly (CTranslate2's own layout: a version, the spec name, then
named tensors with shape and dtype), encoder tensors only; the decoder's bytes are skipped.
The torch forward is checked against CTranslate2's encoder on real speech in
tests/test_whisper_layers.py (its last layer correlates 0.998 with CTranslate2's int8 one).

    enc = load_encoder(depth=3)
    hidden = enc(mel)          # mel (80, 3000) -> list of depth + 1 arrays (1500, 512)
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np

from echo_cli.errors import DependencyError

# hidden states used as "whisper_mid" features: after these encoder blocks (1-based; 0 is
# the convolution stem + positions), concatenated: (T, 512 * len(MID_BLOCKS))
MID_BLOCKS = (2, 3)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5


def read_encoder_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """The "encoder/..." tensors of a CTranslate2 Whisper model.bin (float32, or int16 scalars)."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f:
            def num(fmt: str):
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

            def text() -> str:
                return f.read(num("H"))[:-1].decode("utf-8")

            num("I")                                          # binary version
            spec = text()
            if spec != "WhisperSpec":
                raise DependencyError(f"not a Whisper model ({spec})", path=path,
                                      fix="point ECHO_WHISPER_MODEL_DIR to a faster-whisper model folder")
            num("I")                                          # spec revision
            for _ in range(num("I")):
                name = text()
                shape = [num("I") for _ in range(num("B"))]
                dtype = num("B")
                size = num("I")
                if not name.startswith("encoder/"):
                    f.seek(size, 1)
                    continue
                raw = f.read(size)
                if dtype == _BFLOAT16:
                    a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
                elif dtype in _DTYPES:
                    a = np.frombuffer(raw, _DTYPES[dtype])
                else:
                    raise DependencyError(f"unknown tensor type {dtype} for {name}", path=path,
                                          fix="use the packaged Whisper base model")
                a = a.reshape(shape)
                out[name[len("encoder/"):]] = a.astype(np.float32) if a.dtype.kind == "f" else a
    except (OSError, struct.error, UnicodeDecodeError, ValueError) as e:
        raise DependencyError(f"cannot read the Whisper model: {e}", path=path,
                              fix="delete the joined model folder; echo-cli joins it again") from e
    if "conv1/weight" not in out:
        raise DependencyError("the Whisper model has no encoder tensors", path=path,
                              fix="use the packaged Whisper base model")
    if any(k.endswith("/scale") for k in out):
        raise DependencyError("the Whisper model is quantised on disk", path=path,
                              fix="use a float16/float32 faster-whisper model (the packaged base model is)")
    return out


class WhisperEncoder:
    """The first `depth` blocks of Whisper's audio encoder (pre-LN transformer), float32."""

    def __init__(self, tensors: dict[str, np.ndarray], depth: int):
        import torch

        self.w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()
                  if v.dtype == np.float32}
        self.heads = int(tensors["num_heads"])
        n_blocks = sum(1 for k in tensors if k.endswith("self_attention/linear_0/weight"))
        if not 0 <= depth <= n_blocks:
            raise ValueError(f"depth {depth} outside 0..{n_blocks}")
        self.depth = depth
        self.width = int(tensors["conv1/bias"].shape[0])

    def __call__(self, mel: np.ndarray) -> list[np.ndarray]:
        """mel (80, 3000) log-mel (faster-whisper's FeatureExtractor) -> [stem, block 1, ...,
        block depth] hidden states, each (1500, width)."""
        import torch
        import torch.nn.functional as F

        w, C, H = self.w, self.width, self.heads
        with torch.inference_mode():
            x = F.gelu(F.conv1d(torch.from_numpy(np.ascontiguousarray(mel, np.float32))[None],
                                w["conv1/weight"], w["conv1/bias"], padding=1))
            x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1))   # (1, C, 1500)
            x = x[0].T + w["position_encodings/encodings"][: x.shape[2]]                     # (1500, C)
            outs = [x.numpy().copy()]
            for i in range(self.depth):
                p = f"layer_{i}/"
                h = F.layer_norm(x, (C,), w[p + "self_attention/layer_norm/gamma"],
                                 w[p + "self_attention/layer_norm/beta"], 1e-5)
                qkv = F.linear(h, w[p + "self_attention/linear_0/weight"], w[p + "self_attention/linear_0/bias"])
                q, k, v = qkv.view(-1, 3, H, C // H).permute(1, 2, 0, 3)                      # 3 x (H, 1500, Dh)
                a = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]             # (H, 1500, Dh)
                a = a.permute(1, 0, 2).reshape(-1, C)                                        # (1500, C)
                x = x + F.linear(a, w[p + "self_attention/linear_1/weight"], w[p + "self_attention/linear_1/bias"])
                h = F.layer_norm(x, (C,), w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"], 1e-5)
                h = F.gelu(F.linear(h, w[p + "ffn/linear_0/weight"], w[p + "ffn/linear_0/bias"]))
                x = x + F.linear(h, w[p + "ffn/linear_1/weight"], w[p + "ffn/linear_1/bias"])
                outs.append(x.numpy().copy())
            return outs

    def final(self, mel: np.ndarray) -> np.ndarray:
        """The encoder output (after the final layer norm); needs depth == all blocks."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(self(mel)[-1])
        return F.layer_norm(x, (self.width,), self.w["layer_norm/gamma"], self.w["layer_norm/beta"], 1e-5).numpy()


@functools.lru_cache(maxsize=2)
def load_encoder(depth: int = max(MID_BLOCKS)) -> WhisperEncoder:
    """The packaged Whisper-base encoder's first `depth` blocks, once per process."""
    from echo_cli.features.audio import whisper_model_dir

    return WhisperEncoder(read_encoder_tensors(whisper_model_dir() / "model.bin"), depth)


def mid_features(mel: np.ndarray, encoder: WhisperEncoder | None = None) -> np.ndarray:
    """One 30-s window's "whisper_mid" rows: (1500, 512 * len(MID_BLOCKS)) at 50 Hz."""
    enc = encoder or load_encoder()
    hidden = enc(mel)
    return np.concatenate([hidden[b] for b in MID_BLOCKS], 1)
