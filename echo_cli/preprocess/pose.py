"""Head pose from landmarks: a rigid (similarity) Umeyama fit to a canonical face.

Conventions (shared with motion/ and render/):
- Frame coordinates: x right, y down, z away from the camera (MediaPipe's z sign), in
  pixels, z in x units. Right-handed.
- Canonical face: the mean MediaPipe face (478, 3), frontal, centred on the centroid of its
  478 points, in units of the outer eye-corner distance (landmarks 33 and 263 are 1.0 apart).
- Fit per frame: landmarks ~= scale * rotation @ canonical + t, on the rigid landmarks only
  (forehead, nose bridge, temples, cheekbones: points that expressions barely move).
- Euler angles, radians: rotation = Ry(yaw) @ Rx(pitch) @ Rz(roll) (intrinsic Y-X-Z);
  yaw turns the head left/right, pitch nods, roll tilts.
- Canonical (pose-free) landmarks per frame: rotation.T @ (landmarks - t) / scale.

The canonical face is not shipped inside mediapipe 0.10.14's wheel (no
canonical_face_model.obj), so it was fitted on real data by generalized Procrustes
analysis and stored in canonical_face.npz next to this file (`python -m
echo_cli.preprocess.pose --build` re-fits it; see docs/preprocessing.md).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from echo_cli.schema import N_LANDMARKS, Pose

CANONICAL_PATH = Path(__file__).with_name("canonical_face.npz")
EYE_OUTER = (33, 263)          # right eye outer corner (image left), left eye outer corner
FOREHEAD, CHIN = 10, 152


@functools.lru_cache(maxsize=1)
def canonical_face() -> tuple[np.ndarray, np.ndarray]:
    """(mean shape (478, 3) float32, rigid landmark indices (K,) int)."""
    from echo_cli.errors import DependencyError

    try:
        with np.load(CANONICAL_PATH, allow_pickle=False) as z:
            mean, rigid = z["mean"].astype(np.float32), z["rigid"].astype(np.int64)
    except Exception as e:
        raise DependencyError(f"canonical face model unreadable: {e}", path=CANONICAL_PATH,
                              fix="reinstall echo-cli or run python -m echo_cli.preprocess.pose --build") from e
    if mean.shape != (N_LANDMARKS, 3):
        raise DependencyError("canonical face model has the wrong shape", path=CANONICAL_PATH,
                              fix="run python -m echo_cli.preprocess.pose --build")
    return mean, rigid


# --------------------------------------------------------------------------------------
# Rigid fit
# --------------------------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched similarity fit dst ~= s * R @ src + t.

    src: (N, 3) or (T, N, 3); dst: (T, N, 3). Returns R (T, 3, 3), s (T,), t (T, 3).
    """
    dst = np.asarray(dst, dtype=np.float64)
    src = np.broadcast_to(np.asarray(src, dtype=np.float64), dst.shape)
    N = dst.shape[1]
    w = np.full(N, 1.0 / N) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    # matmul rather than einsum: 3x faster on (T, N, 3) (the pose fit runs on every frame)
    mu_s = w @ src                                            # (T, 3)
    mu_d = w @ dst
    xs = src - mu_s[:, None]
    xd = dst - mu_d[:, None]
    cov = np.matmul((xd * w[:, None]).transpose(0, 2, 1), xs)  # (T, 3, 3)
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U) * np.linalg.det(Vt))         # no reflections
    D = np.zeros_like(cov)
    D[:, 0, 0] = 1.0
    D[:, 1, 1] = 1.0
    D[:, 2, 2] = d
    R = U @ D @ Vt
    var_s = (xs ** 2).sum(-1) @ w
    s = (S[:, 0] + S[:, 1] + d * S[:, 2]) / np.maximum(var_s, 1e-12)
    t = mu_d - s[:, None] * np.matmul(R, mu_s[..., None])[..., 0]
    return R, s, t


def matrix_to_euler(R: np.ndarray) -> np.ndarray:
    """(T, 3, 3) -> (T, 3) yaw, pitch, roll (R = Ry(yaw) @ Rx(pitch) @ Rz(roll))."""
    R = np.asarray(R, dtype=np.float64)
    pitch = np.arcsin(np.clip(-R[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(R[..., 0, 2], R[..., 2, 2])
    roll = np.arctan2(R[..., 1, 0], R[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


def euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    """(…, 3) yaw, pitch, roll -> (…, 3, 3) = Ry(yaw) @ Rx(pitch) @ Rz(roll)."""
    e = np.asarray(euler, dtype=np.float64)
    y, p, r = e[..., 0], e[..., 1], e[..., 2]
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    one, zero = np.ones_like(y), np.zeros_like(y)
    Ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sy, zero, cy], -1)], -2)
    Rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1),
                   np.stack([zero, sp, cp], -1)], -2)
    Rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return Ry @ Rx @ Rz


def fit_pose(landmarks: np.ndarray) -> tuple[Pose, np.ndarray]:
    """(T, 478, 3) pixel landmarks -> (Pose, canonical landmarks (T, 478, 3))."""
    lm = np.asarray(landmarks, dtype=np.float64)
    mean, rigid = canonical_face()
    R, s, t = umeyama(mean[rigid], lm[:, rigid])
    canon = np.matmul(lm - t[:, None], R) / s[:, None, None]      # rows: R.T @ (x - t) / s
    pose = Pose(rotation=R.astype(np.float32), euler=matrix_to_euler(R).astype(np.float32),
                translation=t[:, :2].astype(np.float32), scale=s.astype(np.float32))
    return pose, canon.astype(np.float32)


def pose_landmarks(canonical: np.ndarray, rotation: np.ndarray, scale: np.ndarray,
                   translation: np.ndarray, z_offset: np.ndarray | float = 0.0) -> np.ndarray:
    """Inverse of fit_pose: canonical (T, 478, 3) -> pixel landmarks (T, 478, 3).
    translation is (T, 2) (image plane) or (T, 3)."""
    tr = np.asarray(translation, dtype=np.float64)
    if tr.shape[-1] == 2:
        tr = np.concatenate([tr, np.broadcast_to(np.asarray(z_offset, np.float64), tr.shape[:-1])[..., None]], -1)
    out = np.einsum("tij,tnj->tni", rotation, canonical) * np.asarray(scale)[:, None, None] + tr[:, None]
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------
# Fitting the canonical face on data (generalized Procrustes analysis)
# --------------------------------------------------------------------------------------

def _normalise(mean: np.ndarray) -> np.ndarray:
    """Frontal orientation (eye line along +x, forehead->chin along +y), centred, unit eye distance."""
    m = mean - mean.mean(0)
    x = m[EYE_OUTER[1]] - m[EYE_OUTER[0]]
    x /= np.linalg.norm(x)
    y = m[CHIN] - m[FOREHEAD]
    y -= x * (y @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)                      # x right, y down -> z away from the camera
    m = m @ np.stack([x, y, z], 1)
    return m / np.linalg.norm(m[EYE_OUTER[1]] - m[EYE_OUTER[0]])


def build_canonical(shapes: np.ndarray, rigid_fraction: float = 0.35, iters: int = 10
                    ) -> tuple[np.ndarray, np.ndarray]:
    """GPA over many faces (N, 478, 3) -> (mean shape, rigid indices).

    Rigid points are those that move least relative to the head once aligned (lowest
    residual), restricted to the upper face, so expressions do not tilt the pose.
    """
    X = np.asarray(shapes, dtype=np.float64)
    mean = _normalise(X[0])
    weights = None
    for it in range(iters):
        R, s, t = umeyama(mean, X, weights)
        aligned = np.einsum("tji,tnj->tni", R, X - t[:, None]) / s[:, None, None]
        mean = _normalise(aligned.mean(0))
        if it == iters // 2:
            resid = np.sqrt(((aligned - mean) ** 2).sum(-1).mean(0))        # (478,)
            upper = mean[:, 1] < mean[1, 1] + 0.05                          # above the nose tip (1)
            order = np.argsort(np.where(upper, resid, np.inf))
            k = int(rigid_fraction * N_LANDMARKS)
            rigid = np.sort(order[:k])
            weights = np.zeros(N_LANDMARKS)
            weights[rigid] = 1.0
    return mean.astype(np.float32), rigid.astype(np.int64)


def _collect_shapes(data_dir: Path, every: int = 10) -> np.ndarray:
    """Static MediaPipe landmarks from portraits and every `every`-th frame of the clips."""
    from echo_cli.preprocess.face import _iter_video_frames_av, make_face_mesh, mesh_faces, read_image

    mesh = make_face_mesh(True, 1)
    shapes = []
    try:
        for p in sorted((data_dir / "portraits").glob("*")):
            f = mesh_faces(mesh, read_image(p))
            shapes += f[:1]
        for sub in ("talking", "clips"):
            for p in sorted((data_dir / sub).glob("*.mp4")):
                for i, img in enumerate(_iter_video_frames_av(p, None)):
                    if i % every == 0:
                        shapes += mesh_faces(mesh, img)[:1]
    finally:
        mesh.close()
    return np.stack(shapes)


def main() -> None:
    import argparse
    import os

    ap = argparse.ArgumentParser(description="fit and store the canonical face (GPA on real faces)")
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--data", default=os.environ.get("ECHO_SHARED_DATA",
                                                     str(Path(__file__).resolve().parents[2].parent / "shared" / "data")))
    ap.add_argument("--every", type=int, default=10)
    a = ap.parse_args()
    if not a.build:
        ap.print_help()
        return
    shapes = _collect_shapes(Path(a.data), a.every)
    mean, rigid = build_canonical(shapes)
    from echo_cli.io_atomic import write_npz

    write_npz(CANONICAL_PATH, dict(mean=mean, rigid=rigid, n_shapes=np.array(len(shapes)),
                                   note=np.array("GPA mean of MediaPipe 0.10.14 landmarks on ../shared/data "
                                                 "(portraits + every 10th frame of talking/ and clips/)")))
    print(f"canonical face from {len(shapes)} faces, {len(rigid)} rigid points -> {CANONICAL_PATH}")


if __name__ == "__main__":
    main()
