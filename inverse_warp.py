"""Camera geometry of Insta-DM: back-projection, poses, inverse/forward warping, flow warping.

Conventions (used everywhere in this project):

* Camera frame: x right, y down, z forward.  Pixel ``(u, v)`` is (column, row) and pixel
  *centres* lie at integer coordinates.  ``K`` maps camera points to these pixel coordinates.
* Sampling uses ``grid_sample(..., align_corners=True)`` with ``x_norm = 2 u / (W - 1) - 1``, the
  normalisation that matches integer pixel centres.  With ``padding_mode='zeros'`` a sample that
  falls outside the image contributes nothing (its coordinate is pushed far outside before
  sampling) and is marked invalid.
* A 6-DoF pose vector is ``(tx, ty, tz, rx, ry, rz)``; ``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` (``euler``)
  or a quaternion with real part fixed to 1 (``quat``).  The inverse warps reconstruct a *view* from a
  *source* image; their pose "view -> source" (``source_from_view``, kornia's ``dst_from_src``) maps
  view-camera points into the source camera: ``X_source = R X_view + t`` (docs/ARCHITECTURE.md).
* Depth maps are ``[B,1,H,W]``; functions that took ``[B,H,W]`` in the official code accept both.

Every function is pure: nothing is cached between calls, so any dtype and device works.
"""
import torch
import torch.nn.functional as F

from motion_field import MotionField

ROTATION_MODES = ('euler', 'quat')
PADDING_MODES = ('zeros', 'border')
GRID_TOLERANCE = 1e-5  # normalised coordinates this close outside [-1, 1] count as inside (float round-off)


def _check_shape(name, tensor, shape):
    """Raise a one-line ValueError unless ``tensor`` has ``shape`` (``None`` = any size)."""
    if not torch.is_tensor(tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    expected = '[' + ','.join('*' if s is None else str(s) for s in shape) + ']'
    if tensor.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, tensor.shape)):
        raise ValueError(f"{name} must have shape {expected}, got {list(tensor.shape)}")


def _as_depth4d(name, depth):
    """Return ``depth`` as ``[B,1,H,W]``; accepts ``[B,H,W]`` too."""
    if torch.is_tensor(depth) and depth.dim() == 3:
        depth = depth.unsqueeze(1)
    _check_shape(name, depth, (None, 1, None, None))
    return depth


def _check_image_like(name, img, depth):
    _check_shape(name, img, (depth.shape[0], None, depth.shape[2], depth.shape[3]))


def _check_motion_field(field, depth):
    """Raise a one-line error unless ``field`` is a MotionField matching ``[B,1,H,W]`` ``depth``."""
    if not isinstance(field, MotionField):
        raise TypeError(f"motion_field must be a MotionField, got {type(field).__name__}")
    _check_shape('motion_field.rotation', field.rotation, (depth.shape[0], 3))
    _check_shape('motion_field.translation', field.translation, (depth.shape[0], 3) + tuple(depth.shape[2:]))


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def pixel_grid(height, width, dtype=torch.float32, device=None):
    """Homogeneous pixel coordinates ``(u, v, 1)`` of an image: ``[1,3,H,W]``."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing='ij')
    return torch.stack([u, v, torch.ones_like(u)]).unsqueeze(0)


def pixel2cam(depth, K_inv):
    """Back-project every pixel to a 3-D camera point.

    Args:
        depth: ``[B,1,H,W]`` or ``[B,H,W]`` depth.
        K_inv: ``[B,3,3]`` inverse intrinsics.
    Returns:
        ``[B,3,H,W]`` camera coordinates ``depth * K_inv @ (u, v, 1)``.
    """
    depth = _as_depth4d('depth', depth)
    _check_shape('K_inv', K_inv, (depth.shape[0], 3, 3))
    b, _, h, w = depth.shape
    rays = (K_inv @ pixel_grid(h, w, depth.dtype, depth.device).reshape(1, 3, -1)).reshape(b, 3, h, w)
    return rays * depth


def cam2pixel(points, K):
    """Project camera points to pixel coordinates.

    Args:
        points: ``[B,3,H,W]`` camera points.
        K: ``[B,3,3]`` intrinsics.
    Returns:
        ``(pixels [B,2,H,W], z [B,1,H,W])``; ``z`` is clamped at 1e-3 before the division.
    """
    b, _, h, w = points.shape
    projected = (K @ points.reshape(b, 3, -1)).reshape(b, 3, h, w)
    z = projected[:, 2:3].clamp(min=1e-3)
    return projected[:, :2] / z, z


def transform_points(points, transform):
    """Apply ``[B,3,4]`` rigid transforms ``[R|t]`` to ``[B,3,H,W]`` points."""
    b, _, h, w = points.shape
    rotated = transform[:, :, :3] @ points.reshape(b, 3, -1)
    return (rotated + transform[:, :, 3:]).reshape(b, 3, h, w)


def euler2mat(angle):
    """Euler angles to rotation matrices, ``R = Rx(rx) @ Ry(ry) @ Rz(rz)``.

    Args:
        angle: ``[B,3]`` rotation angles ``(rx, ry, rz)`` in radians.
    Returns:
        ``[B,3,3]`` rotation matrices.
    """
    _check_shape('angle', angle, (None, 3))
    cx, cy, cz = torch.cos(angle).unbind(1)
    sx, sy, sz = torch.sin(angle).unbind(1)
    zero, one = torch.zeros_like(cx), torch.ones_like(cx)
    rot_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(-1, 3, 3)
    rot_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rot_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rot_x @ rot_y @ rot_z


def mat2euler(rot):
    """Exact inverse of :func:`euler2mat`: ``[B,3,3]`` rotation matrices -> ``[B,3]`` ``(rx, ry, rz)``.

    With ``R = Rx Ry Rz``: ``R[0,2] = sin ry``, ``(R[1,2], R[2,2]) = cos ry (-sin rx, cos rx)`` and
    ``(R[0,1], R[0,0]) = cos ry (-sin rz, cos rz)``.  At gimbal lock (``cos ry = 0``) ``rx`` is set to 0.
    """
    _check_shape('rot', rot, (None, 3, 3))
    ry = torch.asin(rot[:, 0, 2].clamp(-1, 1))
    cos_ry = torch.sqrt(rot[:, 0, 0] ** 2 + rot[:, 0, 1] ** 2)
    locked = cos_ry < 1e-6
    rx = torch.where(locked, torch.zeros_like(ry), torch.atan2(-rot[:, 1, 2], rot[:, 2, 2]))
    rz = torch.where(locked, torch.atan2(rot[:, 1, 0], rot[:, 1, 1]), torch.atan2(-rot[:, 0, 1], rot[:, 0, 0]))
    return torch.stack([rx, ry, rz], 1)


def quat2mat(quat):
    """Quaternion vector part to rotation matrices (real part fixed to 1, then normalised).

    Args:
        quat: ``[B,3]`` quaternion coefficients ``(x, y, z)``.
    Returns:
        ``[B,3,3]`` rotation matrices.
    """
    _check_shape('quat', quat, (None, 3))
    q = torch.cat([torch.ones_like(quat[:, :1]), quat], 1)
    w, x, y, z = F.normalize(q, dim=1).unbind(1)
    rot = [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (w * y + x * z),
           2 * (w * z + x * y), w * w - x * x + y * y - z * z, 2 * (y * z - w * x),
           2 * (x * z - w * y), 2 * (w * x + y * z), w * w - x * x - y * y + z * z]
    return torch.stack(rot, 1).view(-1, 3, 3)


def rotation_matrix(rot_vec, rotation_mode='euler'):
    """``[B,3]`` rotation parameters -> ``[B,3,3]`` matrices for ``rotation_mode`` 'euler' or 'quat'."""
    _check_choice('rotation_mode', rotation_mode, ROTATION_MODES)
    return euler2mat(rot_vec) if rotation_mode == 'euler' else quat2mat(rot_vec)


def pose_vec2mat(vec, rotation_mode='euler'):
    """6-DoF pose vectors ``(tx, ty, tz, rx, ry, rz)`` ``[B,6]`` -> transforms ``[B,3,4] = [R|t]``."""
    _check_shape('pose', vec, (None, 6))
    rot = rotation_matrix(vec[:, 3:], rotation_mode)
    return torch.cat([rot, vec[:, :3].unsqueeze(-1)], dim=2)


def invert_transform(transform):
    """Invert rigid ``[B,3,4]`` transforms: ``[R|t] -> [R^T | -R^T t]``."""
    rot_t = transform[:, :, :3].transpose(1, 2)
    return torch.cat([rot_t, -rot_t @ transform[:, :, 3:]], dim=2)


def sample_image(img, pixels, padding_mode='zeros'):
    """Bilinearly sample ``img`` at pixel coordinates.

    Args:
        img: ``[B,C,H,W]`` image to sample.
        pixels: ``[B,2,H',W']`` coordinates ``(u, v)`` in ``img``'s pixels.
        padding_mode: 'zeros' (outside samples give 0) or 'border'.
    Returns:
        ``(sampled [B,C,H',W'], valid [B,1,H',W'])``; ``valid`` is 1 where the sample lies inside
        the image (pixel centres span ``[0, W-1] x [0, H-1]``).
    """
    _check_choice('padding_mode', padding_mode, PADDING_MODES)
    h, w = img.shape[-2:]
    scale = pixels.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]).view(1, 2, 1, 1)
    grid = (pixels * scale - 1).permute(0, 2, 3, 1)
    valid = (grid.abs() <= 1 + GRID_TOLERANCE).all(dim=-1, keepdim=True)
    if padding_mode == 'zeros':
        grid = torch.where(valid, grid.clamp(-1, 1), torch.full_like(grid, 2.0))
    sampled = F.grid_sample(img, grid, mode='bilinear', padding_mode=padding_mode, align_corners=True)
    return sampled, valid.permute(0, 3, 1, 2).to(img.dtype)


def _inverse_warp_transform(img, depth, transform, K, padding_mode):
    """Warp ``img`` (source) into the view given the view's depth and the ``[B,3,4]`` transform view -> source."""
    points = transform_points(pixel2cam(depth, torch.linalg.inv(K)), transform)
    pixels, _ = cam2pixel(points, K)
    return sample_image(img, pixels, padding_mode)


def inverse_warp(img, depth, pose, K, rotation_mode='euler', padding_mode='zeros'):
    """Rigid inverse warp of a source image into the view.

    Args:
        img: ``[B,C,H,W]`` source image.
        depth: ``[B,1,H,W]`` (or ``[B,H,W]``) depth of the view.
        pose: ``[B,6]`` pose view -> source (``source_from_view``).
        K: ``[B,3,3]`` intrinsics.
    Returns:
        ``(warped [B,C,H,W], valid [B,1,H,W])``.
    """
    depth = _as_depth4d('depth', depth)
    _check_image_like('img', img, depth)
    _check_shape('pose', pose, (depth.shape[0], 6))
    _check_shape('K', K, (depth.shape[0], 3, 3))
    return _inverse_warp_transform(img, depth, pose_vec2mat(pose, rotation_mode), K, padding_mode)


def inverse_warp_mof(img, view_depth, source_depth, motion_field, K, padding_mode='zeros', rotation_mode='euler'):
    """Inverse warp of a source image into the view with a per-pixel motion field (the second projection).

    View pixels are back-projected with ``view_depth``, rotated by the field's rotation (one per
    sample) and translated by their own translation: ``X_source = R X_view + t(p)``, then projected with ``K``.

    Args:
        img: ``[B,C,H,W]`` source image.
        view_depth: ``[B,1,H,W]`` depth of the view.
        source_depth: ``[B,1,H,W]`` depth of the source.
        motion_field: :class:`motion_field.MotionField` view -> source: rotation ``[B,3]`` (euler
            angles or quaternion coefficients after ``rotation_mode``), translation ``[B,3,H,W]``.
        K: ``[B,3,3]`` intrinsics.
    Returns:
        ``projected_img [B,C,H,W]``: source image sampled at the projections;
        ``in_image [B,1,H,W]``: projections inside the source image;
        ``projected_depth [B,1,H,W]``: ``source_depth`` sampled there;
        ``computed_depth [B,1,H,W]``: z of the transformed points (clamped at 1e-3);
        ``flow [B,2,H,W]``: projected pixel minus view pixel.
    """
    view_depth = _as_depth4d('view_depth', view_depth)
    source_depth = _as_depth4d('source_depth', source_depth)
    _check_image_like('img', img, view_depth)
    _check_shape('source_depth', source_depth, tuple(view_depth.shape))
    _check_motion_field(motion_field, view_depth)
    _check_shape('K', K, (view_depth.shape[0], 3, 3))
    b, _, h, w = view_depth.shape
    rot = rotation_matrix(motion_field.rotation, rotation_mode)
    points = pixel2cam(view_depth, torch.linalg.inv(K))
    points = (rot @ points.reshape(b, 3, -1)).reshape(b, 3, h, w) + motion_field.translation
    pixels, computed_depth = cam2pixel(points, K)
    sampled, in_image = sample_image(torch.cat([img, source_depth], 1), pixels, padding_mode)
    flow = pixels - pixel_grid(h, w, pixels.dtype, pixels.device)[:, :2]
    return sampled[:, :-1], in_image, sampled[:, -1:], computed_depth, flow


def upscale_intrinsics(K, scale):
    """Intrinsics of an image upsampled ``scale`` times, with pixel centres at integers in both.

    Pixel ``u'`` of the upsampled image sits at ``(u' + 0.5) / scale - 0.5`` in the original one.
    """
    offset = 0.5 * (scale - 1)
    top = K[:, :2] * scale
    top = torch.cat([top[:, :, :2], top[:, :, 2:] + offset], dim=2)
    return torch.cat([top, K[:, 2:]], dim=1)


def splat_depth(depth, transform, K, upscale=3):
    """Forward-project a depth map into another view with a z-buffer (the first projection's splat).

    The depth is upsampled ``upscale`` times (nearest), so every pixel ``u`` is represented by
    ``upscale`` sub-samples at ``u + (j - (upscale - 1) / 2) / upscale`` (the same pixel-centre
    convention as everywhere else, via ``K`` scaled accordingly); the points are transformed,
    projected with the original ``K`` and rounded to the nearest pixel.  Where several points land
    on one pixel the nearest (largest inverse depth) wins, through ``scatter_reduce(reduce='amax')``.

    Back-projection, rigid motion and projection are folded into one affine map per sample,
    ``d * (K R K_up^-1) (u', v', 1) + K t``, evaluated on the sub-sample grid without building the
    upsampled depth map.

    Args:
        depth: ``[B,1,H,W]`` source depth.
        transform: ``[B,3,4]`` source -> destination transform.
        K: ``[B,3,3]`` intrinsics.
    Returns:
        ``(depth_w [B,1,H,W], valid [B,1,H,W])``: splatted depth (0 where nothing landed) and its mask.
    """
    b, _, h, w = depth.shape
    s = upscale
    rays_to_pixels = K @ transform[:, :, :3] @ torch.linalg.inv(upscale_intrinsics(K, s))
    offset = K @ transform[:, :, 3:]
    columns = torch.arange(w * s, dtype=depth.dtype, device=depth.device)
    rows = torch.arange(h * s, dtype=depth.dtype, device=depth.device)[:, None]
    m = rays_to_pixels[..., None, None]
    rays = m[:, :, 0] * columns + (m[:, :, 1] * rows + m[:, :, 2])
    projected = (rays.view(b, 3, h, s, w, s) * depth.reshape(b, 1, h, 1, w, 1)).view(b, 3, -1) + offset
    z = projected[:, 2].clamp(min=1e-3)
    u = torch.round(projected[:, 0] / z)
    v = torch.round(projected[:, 1] / z)
    inside = (projected[:, 2] > 1e-3) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    index = torch.where(inside, v * w + u, 0).long()
    inv_depth = torch.where(inside, z.reciprocal(), 0)
    zbuffer = inv_depth.new_zeros(b, h * w).scatter_reduce(1, index, inv_depth, reduce='amax', include_self=True)
    valid = (zbuffer > 0).view(b, 1, h, w)
    depth_w = torch.where(valid, 1.0 / zbuffer.clamp(min=1e-12).view(b, 1, h, w), 0)
    return depth_w, valid.to(depth.dtype)


def forward_warp(img, depth, pose, K, upscale=3, rotation_mode='euler'):
    """Forward-warp a source frame into the other view (the paper's first projection).

    The source depth is splatted into the destination view with a z-buffer (:func:`splat_depth`);
    the image is then obtained by inverse-warping the source image with the splatted depth and the
    inverted pose, so colours are sampled bilinearly.  Any channels can be warped (images, and
    instance masks, which the caller rounds afterwards).

    Args:
        img: ``[B,C,H,W]`` source image (or masks).
        depth: ``[B,1,H,W]`` (or ``[B,H,W]``) source depth.
        pose: ``[B,6]`` pose source -> destination (``dst_from_src``: ``X_dst = R X_src + t``).
        K: ``[B,3,3]`` intrinsics.
        upscale: depth upsampling factor that fills the gaps between projected points.
    Returns:
        ``(img_w [B,C,H,W], depth_w [B,1,H,W], valid [B,1,H,W])``, all multiplied by ``valid``
        (splat-valid times inverse-warp-valid).
    """
    depth = _as_depth4d('depth', depth)
    _check_image_like('img', img, depth)
    _check_shape('pose', pose, (depth.shape[0], 6))
    _check_shape('K', K, (depth.shape[0], 3, 3))
    transform = pose_vec2mat(pose, rotation_mode)
    depth_w, splat_valid = splat_depth(depth, transform, K, upscale)
    img_w, warp_valid = _inverse_warp_transform(img, depth_w, invert_transform(transform), K, 'zeros')
    valid = splat_valid * warp_valid
    return img_w * valid, depth_w * valid, valid


def flow_warp(img, flow, padding_mode='zeros'):
    """Backward warp with an optical flow: ``warped(p) = img(p + flow(p))`` (bilinear).

    Args:
        img: ``[B,C,H,W]`` image (or masks, flows) to sample.
        flow: ``[B,2,H,W]`` flow ``(du, dv)`` in pixels from the output view into ``img``.
    Returns:
        ``(warped [B,C,H,W], valid [B,1,H,W])``.
    """
    _check_shape('flow', flow, (None, 2, None, None))
    _check_shape('img', img, (flow.shape[0], None) + tuple(flow.shape[2:]))
    h, w = flow.shape[-2:]
    return sample_image(img, pixel_grid(h, w, flow.dtype, flow.device)[:, :2] + flow, padding_mode)


def depth2flow(depth, pose, K, rotation_mode='euler'):
    """Rigid optical flow induced by a depth map and a camera motion.

    Args:
        depth: ``[B,1,H,W]`` (or ``[B,H,W]``) depth of the first view.
        pose: ``[B,6]`` pose first view -> second view (maps first-camera points into the second camera).
        K: ``[B,3,3]`` intrinsics.
    Returns:
        ``[B,2,H,W]`` flow: projected pixel minus original pixel.
    """
    depth = _as_depth4d('depth', depth)
    _check_shape('pose', pose, (depth.shape[0], 6))
    _check_shape('K', K, (depth.shape[0], 3, 3))
    h, w = depth.shape[-2:]
    points = transform_points(pixel2cam(depth, torch.linalg.inv(K)), pose_vec2mat(pose, rotation_mode))
    pixels, _ = cam2pixel(points, K)
    return pixels - pixel_grid(h, w, pixels.dtype, pixels.device)[:, :2]
