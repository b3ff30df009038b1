"""Optional Rerun recording of the demo (``demo.py --rerun RECORDING.rrd``; needs ``pip install rerun-sdk``).

On the timeline ``frame`` it logs, per frame ``t``: the camera pose (``world/camera``, a pinhole with
the intrinsics), the image and the depth map seen through it, the coloured point cloud in the world
(``world/points``), the camera trajectory so far (``world/trajectory``) and, per tracked object,
its position, its trajectory so far and its motion vector to the next frame
(``world/objects/ID/...``).  Open it with ``rerun RECORDING.rrd`` and scrub through time.
World frame: the camera of the first frame, x right, y down, z forward (the demo's).
"""
import importlib
import os
import secrets
from pathlib import Path

import numpy as np

INSTALL_HINT = "--rerun needs the optional rerun-sdk package (pip install rerun-sdk); it is not installed"
TIMELINE = 'frame'
MAX_CLOUD_POINTS = 50000


class RerunUnavailable(ImportError):
    """rerun-sdk is not installed (one-line message saying how to install it)."""


def import_rerun():
    """The ``rerun`` module, or :class:`RerunUnavailable` with an installation hint."""
    try:
        return importlib.import_module('rerun')
    except ImportError:
        raise RerunUnavailable(INSTALL_HINT) from None


def thin_cloud(points, colours, max_points=MAX_CLOUD_POINTS):
    """Every k-th point so that at most ``max_points`` remain: ``([N',3], [N',3])``."""
    step = max(1, int(np.ceil(len(points) / max_points)))
    return points[::step], colours[::step]


def log_camera(rr, rec, image, depth, K, cam_to_world):
    """Camera pose, pinhole, image and depth of one frame."""
    height, width = depth.shape
    rec.log('world/camera', rr.Transform3D(translation=cam_to_world[:3, 3], mat3x3=cam_to_world[:3, :3]))
    rec.log('world/camera/image', rr.Pinhole(image_from_camera=K, resolution=[width, height],
                                             camera_xyz=rr.ViewCoordinates.RDF))
    rec.log('world/camera/image/rgb', rr.Image(image))
    rec.log('world/camera/image/depth', rr.DepthImage(depth.astype(np.float32), meter=1.0))


def log_tracks(rr, rec, tracks, t, colours):
    """Position, trajectory so far and motion vector of every object tracked in frame ``t``."""
    for track_id, track in tracks.items():
        if t not in track['frames']:
            rec.log(f'world/objects/{track_id}', rr.Clear(recursive=True))
            continue
        upto = track['frames'].index(t) + 1
        path = np.asarray(track['positions'][:upto], np.float64)
        colour = colours[track_id]
        rec.log(f'world/objects/{track_id}/position', rr.Points3D(path[-1:], colors=[colour], radii=0.1,
                                                                  labels=[f'object {track_id}']))
        rec.log(f'world/objects/{track_id}/track', rr.LineStrips3D([path], colors=[colour]))
        motion = track['motion'][upto - 1]
        if motion is None:
            rec.log(f'world/objects/{track_id}/motion', rr.Clear(recursive=False))
        else:
            rec.log(f'world/objects/{track_id}/motion', rr.Arrows3D(origins=path[-1:], vectors=[motion],
                                                                    colors=[colour]))


def write_recording(path, frames, K, cam_to_world, tracks, colours, clouds):
    """Write the demo's recording to ``path`` (atomically).

    Args:
        frames: ``F`` pairs ``(image [H,W,3] uint8, depth [H,W])``.
        K: ``[3,3]`` intrinsics; cam_to_world: ``[F,4,4]``.
        tracks: the demo's tracks (``{id: {'frames', 'positions', 'motion', ...}}``, world frame).
        colours: ``{id: (r, g, b)}`` uint8 colour of each track.
        clouds: ``F`` pairs ``(points [N,3] world, colours [N,3] uint8)``.
    Raises:
        RerunUnavailable: rerun-sdk is not installed.
    """
    rr = import_rerun()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f'.{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp.rrd')
    rec = rr.RecordingStream('insta_dm_demo')
    try:
        rec.save(tmp_path)
        rec.log('world', rr.ViewCoordinates.RDF, static=True)
        centres = cam_to_world[:, :3, 3]
        for t, ((image, depth), (points, point_colours)) in enumerate(zip(frames, clouds)):
            rec.set_time(TIMELINE, sequence=t)
            log_camera(rr, rec, image, depth, K, cam_to_world[t])
            points, point_colours = thin_cloud(points, point_colours)
            rec.log('world/points', rr.Points3D(points, colors=point_colours, radii=0.02))
            rec.log('world/trajectory', rr.LineStrips3D([centres[:t + 1]], colors=[(255, 255, 255)]))
            log_tracks(rr, rec, tracks, t, colours)
        rec.flush()
        rec.disconnect()
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
