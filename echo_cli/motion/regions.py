"""Landmark index sets of MediaPipe's 478-point face mesh (468 mesh points + 10 iris points).

Contours are ordered loops (usable as polygons); sets are sorted index tuples. Naming is the
subject's left/right (MediaPipe's "LEFT_EYE" is the subject's left eye, on the image's right
in an unmirrored photo). The jaw, cheek, eye-area and brow-area sets are not part of
MediaPipe's connection lists: `derive_area_sets` derives them from the mean frontal face
when the motion space is fitted on ../shared/data, and the fitted space stores them in its
checkpoint (so a fitted space never re-derives them).
"""
from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- lips (ordered loops)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
              375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
              324, 318, 402, 317, 14, 87, 178, 88, 95)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
# pairs (upper, lower) of inner-lip points facing each other: the mouth-opening measure
LIP_GAP_PAIRS = ((13, 14), (82, 87), (312, 317), (81, 178), (311, 402))
LIP_CORNERS = (61, 291)             # subject's right, left outer corner
LIP_CENTRE_TOP = 0
LIP_CENTRE_BOTTOM = 17

# ---------------------------------------------------------------- eyes (ordered loops)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)
# (upper lid, lower lid) pairs across the eye opening: the blink measure
RIGHT_LID_PAIRS = ((159, 145), (158, 153), (160, 144))
LEFT_LID_PAIRS = ((386, 374), (385, 380), (387, 373))
EYE_OUTER_CORNERS = (33, 263)       # inter-ocular distance (300-W convention: outer corners)
EYE_INNER_CORNERS = (133, 362)

# ---------------------------------------------------------------- irises (refine_landmarks)
RIGHT_IRIS_CENTRE = 468
RIGHT_IRIS = (469, 470, 471, 472)
LEFT_IRIS_CENTRE = 473
LEFT_IRIS = (474, 475, 476, 477)
IRISES = tuple(range(468, 478))

# ---------------------------------------------------------------- brows, nose, oval
RIGHT_BROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
LEFT_BROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294,
        326, 327, 344, 440)
NOSE_BRIDGE = (6, 168, 197, 195, 5, 4)   # rigid: the pose fit leans on these
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109)
CHIN = 152


def lips_all() -> tuple[int, ...]:
    return tuple(sorted(set(LIPS_OUTER) | set(LIPS_INNER)))


def eyes_all() -> tuple[int, ...]:
    return tuple(sorted(set(RIGHT_EYE) | set(LEFT_EYE)))


def brows_all() -> tuple[int, ...]:
    return tuple(sorted(set(RIGHT_BROW) | set(LEFT_BROW)))


# ---------------------------------------------------------------- derived area sets
def derive_area_sets(template: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Partition the 468 mesh points into expression areas from a frontal mean face.

    template: (478, 3) canonical frontal face, x right, y down, inter-ocular distance ~1.
    Returns disjoint sets: `lower` (lips, jaw, chin, cheeks: what mouth and smile move),
    `cheeks` (the part of `lower` beside the nose and mouth), `jaw`, `eyes` (lids and the
    skin around them), `brows` (brows and the forehead band above), `irises`, `rigid` (nose,
    upper forehead, temples: what the pose fit uses).
    """
    t = np.asarray(template, np.float64)
    mesh = np.arange(468)
    x, y = t[mesh, 0], t[mesh, 1]
    eye_r = t[list(RIGHT_EYE)].mean(0)
    eye_l = t[list(LEFT_EYE)].mean(0)
    eye_y = 0.5 * (eye_r[1] + eye_l[1])
    mouth = t[list(LIPS_OUTER)].mean(0)
    nose_tip = t[4]
    brow_y = t[list(brows_all())][:, 1].mean()
    iod = np.linalg.norm(t[EYE_OUTER_CORNERS[0]] - t[EYE_OUTER_CORNERS[1]])

    lower = y > nose_tip[1] - 0.05 * iod                       # below the nose tip line
    lower |= np.isin(mesh, lips_all())
    # cheeks: between eye line and mouth, lateral to the nose wings
    nose_half = 0.5 * np.ptp(t[[64, 294], 0])
    cheeks = (y > eye_y + 0.25 * iod) & (np.abs(x - nose_tip[0]) > nose_half * 1.1)
    lower |= cheeks
    lower &= ~np.isin(mesh, NOSE_BRIDGE)
    jaw = lower & (y > mouth[1] + 0.05 * iod) & ~np.isin(mesh, lips_all())
    # eyes: points close to either eye centre, lids included
    d_eye = np.minimum(np.linalg.norm(t[mesh, :2] - eye_r[:2], axis=1),
                       np.linalg.norm(t[mesh, :2] - eye_l[:2], axis=1))
    eyes = (d_eye < 0.30 * iod) & ~lower
    eyes |= np.isin(mesh, eyes_all())
    # brows: brow points and the band just above/around them
    d_brow = np.min(np.linalg.norm(t[mesh, None, :2] - t[None, list(brows_all()), :2], axis=2), axis=1)
    brows = ((d_brow < 0.12 * iod) | ((y < brow_y) & (y > brow_y - 0.35 * iod)
                                      & (np.abs(x - nose_tip[0]) < 0.75 * iod)))
    brows &= ~eyes & ~lower
    brows |= np.isin(mesh, brows_all())
    eyes &= ~np.isin(mesh, brows_all())
    rigid = ~(lower | eyes | brows)
    as_tuple = lambda m: tuple(int(i) for i in mesh[m])
    return {"lower": as_tuple(lower), "cheeks": as_tuple(cheeks & lower), "jaw": as_tuple(jaw),
            "eyes": as_tuple(eyes), "brows": as_tuple(brows), "irises": IRISES,
            "rigid": as_tuple(rigid)}
