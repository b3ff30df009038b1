"""Ray casting, procedural textures and geometric flow of the synthetic driving world.

Rays are ``origin + t * direction``.  Camera rays use directions ``R_c K^-1 (u, v, 1)`` so that the
ray parameter ``t`` of a hit *is* the depth (z in the camera frame).  Every function works on whole
arrays of rays; the only Python loops run over boxes' chunks, texture octaves or materials.
"""
import numpy as np

from data.synthetic_world import (CROSS_HALF_WIDTH, LANE_EDGE, MATERIAL_CAR_BODY, MATERIAL_CAR_CABIN,
                                   MATERIAL_FACADE, MATERIAL_OBSTACLE, ROAD_HALF_WIDTH, SIDEWALK_OUTER)

GROUND = -1
NOTHING = -2
HIT_EPS = 1e-6
VISIBILITY_TOLERANCE = 1e-6
MAX_BROADCAST = 2_000_000
OCTAVES = np.array([3.0, 1.2, 0.48, 0.19, 0.077, 0.031])
OCTAVE_WEIGHTS = np.array([0.35, 0.3, 0.26, 0.22, 0.2, 0.18])
SKY_HORIZON = np.array([0.78, 0.84, 0.90])
SKY_ZENITH = np.array([0.32, 0.52, 0.85])
GLASS = np.array([0.10, 0.12, 0.16])
GROUND_REFLECTANCE = 0.25
BOX_REFLECTANCE = np.array([0.4, 0.6, 0.5, 0.1])


def cast_rays(boxes, origin, dirs):
    """First intersection of rays from one origin with the ground plane ``y = 0`` and oriented boxes.

    Boxes are first screened with their bounding spheres; the slab test runs on the surviving
    ray/box pairs only.

    Args:
        boxes: ``Boxes`` (``B`` of them).
        origin: ``[3]`` common ray origin (world; above the ground, outside every box).
        dirs: ``[N,3]`` ray directions (any length).
    Returns:
        ``(t [N], index [N])``: ray parameter of the first hit (``inf`` when none) and what was hit
        (box index, ``GROUND`` or ``NOTHING``).
    """
    origin = np.asarray(origin, float)
    with np.errstate(divide='ignore', invalid='ignore'):
        t_best = np.where((dirs[:, 1] > 0) & (origin[1] < 0), -origin[1] / dirs[:, 1], np.inf)
    index = np.where(np.isfinite(t_best), GROUND, NOTHING)
    if len(boxes) == 0:
        return t_best, index
    cos, sin = np.cos(boxes.yaw), np.sin(boxes.yaw)
    local_origin = _to_box_frame(origin - boxes.centre, cos, sin)
    chunk = max(1, MAX_BROADCAST // len(boxes))
    for start in range(0, len(dirs), chunk):
        ray, box = _sphere_candidates(boxes, origin, dirs[start:start + chunk])
        ray = ray + start
        local_dirs = _to_box_frame(dirs[ray], cos[box], sin[box])
        t_hit = _slab_hits(boxes.half[box], local_origin[box], local_dirs)
        closer = t_hit < t_best[ray]
        ray, box, t_hit = ray[closer], box[closer], t_hit[closer]
        np.minimum.at(t_best, ray, t_hit)
        winner = t_hit == t_best[ray]
        index[ray[winner]] = box[winner]
    return t_best, index


def _to_box_frame(vectors, cos, sin):
    """World vectors ``[P,3]`` in the frames of boxes with yaw cosines/sines ``[P]``: ``rotation_y(yaw)^T v``."""
    x, y, z = vectors.T
    return np.stack([cos * x - sin * z, y, sin * x + cos * z], 1)


def _sphere_candidates(boxes, origin, dirs):
    """Ray/box pairs ``(ray [P], box [P])`` whose ray meets the box's bounding sphere ahead of the origin."""
    to_centre = boxes.centre - origin
    distance_sq = (to_centre ** 2).sum(1)
    threshold = np.sqrt(np.maximum(distance_sq - (boxes.half ** 2).sum(1), 0))
    threshold[distance_sq <= (boxes.half ** 2).sum(1)] = -np.inf
    along = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)) @ to_centre.T
    return np.nonzero(along >= threshold)


def _slab_hits(half, local_origin, local_dirs):
    """Entry parameter ``t [P]`` of rays into boxes by the slab method (box frames), ``inf`` when missed.

    Args:
        half: ``[P,3]`` half extents; local_origin, local_dirs: ``[P,3]`` rays in the box frames.
    """
    t_near, t_far = np.full(len(half), -np.inf), np.full(len(half), np.inf)
    for axis in range(3):
        d = local_dirs[:, axis]
        inverse = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (-half[:, axis] - local_origin[:, axis]) * inverse
        t2 = (half[:, axis] - local_origin[:, axis]) * inverse
        t_near = np.maximum(t_near, np.minimum(t1, t2))
        t_far = np.minimum(t_far, np.maximum(t1, t2))
    return np.where((t_near <= t_far) & (t_near > HIT_EPS), t_near, np.inf)


def cull_behind(boxes, cam_to_world):
    """Boxes with at least one corner in front of the camera plane of a ``[4,4]`` camera-to-world pose."""
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, 8).T
    corners = boxes.centre[:, None] + (signs[None] * boxes.half[:, None]) @ boxes.rot.transpose(0, 2, 1)
    forward = (corners - cam_to_world[:3, 3]) @ cam_to_world[:3, 2]
    return boxes.subset(forward.max(1) > 0)


def camera_rays(K, height, width):
    """``[H*W,3]`` camera-frame ray directions ``K^-1 (u, v, 1)`` (z = 1), row-major over pixels."""
    v, u = np.mgrid[0:height, 0:width].astype(float)
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(height * width)], 1)
    return pixels @ np.linalg.inv(K).T


def value_noise(table, x, y):
    """Smooth value noise in [-1, 1] at lattice coordinates ``x``, ``y`` (arrays of one shape).

    ``table`` is a square random lattice whose side is a power of two; the noise tiles with it.
    """
    size = table.shape[0]
    flat = table.ravel()
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    xi, yi = x0.astype(np.int64) & (size - 1), y0.astype(np.int64) & (size - 1)
    xj, row_j = (xi + 1) & (size - 1), ((yi + 1) & (size - 1)) * size
    row_i = yi * size
    a, b, c, d = flat[row_i + xi], flat[row_i + xj], flat[row_j + xi], flat[row_j + xj]
    top = a + sx * (b - a)
    bottom = c + sx * (d - c)
    return top + sy * (bottom - top)


def octave_fade(wavelength, footprint):
    """Weight of a texture component of ``wavelength`` at a pixel ``footprint`` (both metres): anti-aliasing."""
    return np.clip(wavelength / (2 * footprint) - 1, 0, 1)


def fbm(table, s, t, footprint, scale=1.0, offset=0.0):
    """Multi-scale value noise (sum of octaves, each faded out below ~4 pixels), roughly in [-1, 1].

    Octaves are only evaluated where their weight is not zero.
    """
    total = np.zeros_like(s)
    offset = np.broadcast_to(offset, s.shape)
    for octave, (wavelength, weight) in enumerate(zip(OCTAVES * scale, OCTAVE_WEIGHTS)):
        fade = octave_fade(wavelength, footprint)
        on = np.flatnonzero(fade > 0)
        if len(on) == 0:
            continue
        shift = offset[on] + 37.17 * octave
        total[on] += weight * fade[on] * value_noise(table, s[on] / wavelength + shift, t[on] / wavelength - shift)
    return total


def coverage(signed_distance, footprint):
    """Anti-aliased inside-ness in [0,1] of a point at ``signed_distance`` (positive inside) from an edge."""
    return np.clip(signed_distance / footprint + 0.5, 0, 1)


def interval(x, low, high, footprint):
    """Anti-aliased indicator of ``low <= x <= high``."""
    return coverage(np.minimum(x - low, high - x), footprint)


def periodic_band(x, period, start, width, footprint):
    """Anti-aliased indicator of ``[start, start + width]`` repeated with ``period``; its mean when too fine."""
    m = np.mod(x - start, period)
    inside = np.where(m < width, np.minimum(m, width - m), -np.minimum(m - width, period - m))
    sharp = coverage(inside, footprint)
    blend = np.clip(2 * footprint / period - 0.5, 0, 1)
    return sharp + blend * (width / period - sharp)


def mix(a, b, weight):
    """``a`` where weight is 0, ``b`` where 1: ``[N,3]`` colours, ``[N]`` weights."""
    return a + weight[:, None] * (b - a)


def ground_albedo(world, x, z, footprint):
    """``[N,3]`` albedo of ground points (road with markings, sidewalk tiles, verge)."""
    table, palette = world.noise, world.palette
    ax = np.abs(x)
    if np.isfinite(world.cross_z):
        cross = coverage(CROSS_HALF_WIDTH - np.abs(z - world.cross_z), footprint)
    else:
        cross = np.zeros_like(x)
    road = np.maximum(coverage(ROAD_HALF_WIDTH - ax, footprint), cross)
    outer = np.maximum(coverage(SIDEWALK_OUTER - ax, footprint), cross)
    grain = fbm(table, x, z, footprint)
    asphalt = palette[0] * (1 + 0.45 * grain)[:, None]
    tile = 0.12 * octave_fade(0.5, footprint) * value_noise(table, np.floor(x / 0.5) + 0.5, np.floor(z / 0.5) + 0.5)
    joints = np.maximum(periodic_band(x, 0.5, 0.0, 0.03, footprint), periodic_band(z, 0.5, 0.0, 0.03, footprint))
    curb = interval(ax, ROAD_HALF_WIDTH, ROAD_HALF_WIDTH + 0.18, footprint)
    paving = palette[1] * ((1 + 0.25 * grain + tile) * (1 - 0.35 * joints) * (1 - 0.3 * curb))[:, None]
    verge = palette[2] * (1 + 0.6 * fbm(table, x, z, footprint, 0.7, 11.0))[:, None]
    colour = mix(verge, paving, outer)
    colour = mix(colour, asphalt, road)
    centre_line = interval(x, -0.06, 0.06, footprint) * periodic_band(z, 8.0, 0.0, 3.0, footprint)
    lane_edge = interval(ax, LANE_EDGE - 0.07, LANE_EDGE + 0.07, footprint)
    marks = np.maximum(centre_line, lane_edge) * (1 - cross)
    return mix(colour, palette[3] * (1 + 0.1 * grain)[:, None], marks)


def facade_albedo(table, s, e, footprint, colour, params):
    """``[N,3]`` albedo of building walls: noisy plaster, window grid with frames, dark plinth."""
    offset, period, floor = params[:, 0], params[:, 2], params[:, 3]
    plaster = colour * (1 + 0.3 * fbm(table, s, e, footprint, 1.0, offset))[:, None]
    upper = coverage(e - floor + 0.2, footprint)
    column = periodic_band(s, period, 0.25 * period, 0.5 * period, footprint)
    row = periodic_band(e, floor, 0.9, 1.5, footprint)
    shop = periodic_band(s, period, 0.1 * period, 0.8 * period, footprint) * interval(e, 0.5, floor - 0.5, footprint)
    glass_column = periodic_band(s, period, 0.25 * period + 0.08, 0.5 * period - 0.16, footprint)
    glass_row = periodic_band(e, floor, 0.98, 1.34, footprint)
    window = np.maximum(upper * column * row, (1 - upper) * shop)
    glass = np.maximum(upper * glass_column * glass_row, (1 - upper) * shop)
    reflection = GLASS * (1 + 0.8 * fbm(table, s, e, footprint, 2.0, offset + 5.0))[:, None]
    frame = np.array([0.88, 0.87, 0.84]) * (1 + 0.1 * fbm(table, e, s, footprint))[:, None]
    wall = mix(plaster, frame, window)
    wall = mix(wall, reflection, glass)
    return wall * (1 - 0.45 * coverage(0.4 - e, footprint))[:, None]


def obstacle_albedo(table, s, e, footprint, colour, params):
    """``[N,3]`` albedo of sidewalk obstacles: noisy paint with dark horizontal stripes."""
    stripes = periodic_band(e, params[:, 2], 0.0, params[:, 2] / 2, footprint)
    return colour * ((1 + 0.2 * fbm(table, s, e, footprint, 0.5, params[:, 0])) * (1 - 0.5 * stripes))[:, None]


def car_body_albedo(table, s, e, axis, sign, half, footprint, colour, params):
    """``[N,3]`` albedo of car bodies: paint, dark wheel strip, door lines, head and tail lights."""
    paint = colour * (1 + 0.12 * fbm(table, s, e, footprint, 0.4, params[:, 0]))[:, None]
    length, width = 2 * half[:, 2], 2 * half[:, 0]
    doors = np.maximum(interval(s, 0.33 * length - 0.02, 0.33 * length + 0.02, footprint),
                       interval(s, 0.62 * length - 0.02, 0.62 * length + 0.02, footprint)) * (axis == 0)
    lamp_rows = interval(e, 2 * half[:, 1] - 0.35, 2 * half[:, 1] - 0.15, footprint)
    lamps = (interval(s, 0.12, 0.42, footprint) + interval(s, width - 0.42, width - 0.12, footprint)) * lamp_rows
    front = (axis == 2) & (sign > 0)
    back = (axis == 2) & (sign < 0)
    colour_out = paint * (1 - 0.5 * doors)[:, None]
    colour_out = mix(colour_out, np.array([0.95, 0.93, 0.80]), lamps * front)
    colour_out = mix(colour_out, np.array([0.75, 0.08, 0.06]), lamps * back)
    wheels = coverage(0.3 - e, footprint) * (axis != 1)
    return mix(colour_out, np.array([0.07, 0.07, 0.08]), wheels)


def car_cabin_albedo(table, s, e, axis, half, footprint, colour, params):
    """``[N,3]`` albedo of car cabins: glass on the four sides, paint on pillars and roof."""
    extent_s = np.where(axis == 0, 2 * half[:, 2], 2 * half[:, 0])
    height = 2 * half[:, 1]
    glass = interval(s, 0.12, extent_s - 0.12, footprint) * interval(e, 0.06, height - 0.06, footprint) * (axis != 1)
    paint = colour * (1 + 0.12 * fbm(table, s, e, footprint, 0.4, params[:, 0]))[:, None]
    reflection = GLASS * (1 + 0.9 * fbm(table, s, e, footprint, 1.0, params[:, 1]))[:, None]
    return mix(paint, reflection, glass)


def sky_colour(table, dirs, angular_footprint):
    """``[N,3]`` sky colour for world ray directions ``[N,3]`` (a function of direction only)."""
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    elevation = np.arcsin(np.clip(-unit[:, 1], -1, 1))
    azimuth = np.arctan2(unit[:, 0], unit[:, 2])
    gradient = np.clip(elevation / 0.6, 0, 1) ** 0.7
    colour = mix(np.broadcast_to(SKY_HORIZON, dirs.shape), np.broadcast_to(SKY_ZENITH, dirs.shape), gradient)
    clouds = np.clip(1.6 * fbm(table, 8 * azimuth, 16 * elevation, 16 * angular_footprint, 2.0, 3.0) + 0.1, 0, 1)
    return mix(colour, np.array([0.93, 0.94, 0.95]), 0.8 * clouds)


def face_geometry(boxes, index, points):
    """Local hit geometry on boxes.

    Args:
        boxes: ``Boxes``; index: ``[N]`` box index of each hit; points: ``[N,3]`` world hit points.
    Returns:
        ``(axis [N], sign [N], s [N], e [N], normal [N,3])``: the box axis of the hit face, its side,
        the horizontal face coordinate and the height above the box bottom (metres), world normal.
    """
    rot, half = boxes.rot[index], boxes.half[index]
    local = np.einsum('nji,nj->ni', rot, points - boxes.centre[index])
    axis = np.argmax(np.abs(local) / half, axis=1)
    rows = np.arange(len(index))
    sign = np.sign(local[rows, axis])
    e = half[:, 1] - local[:, 1]
    s = np.where(axis == 0, local[:, 2] + half[:, 2], local[:, 0] + half[:, 0])
    e = np.where(axis == 1, local[:, 2] + half[:, 2], e)
    normal = rot[rows, :, axis] * sign[:, None]
    return axis, sign, s, e, normal


def box_albedo(world, boxes, index, face, footprint):
    """``[N,3]`` albedo of box hits, dispatched per material.

    Args:
        world: ``StreetWorld``; boxes: ``Boxes``; index: ``[N]`` box of each hit.
        face: ``(axis, sign, s, e, normal)`` from :func:`face_geometry`; footprint: ``[N]`` metres per pixel.
    """
    axis, sign, s, e, _ = face
    material, colour, params, half = boxes.material[index], boxes.colour[index], boxes.params[index], boxes.half[index]
    table = world.noise
    albedo = np.zeros((len(index), 3))
    for code in (MATERIAL_FACADE, MATERIAL_OBSTACLE, MATERIAL_CAR_BODY, MATERIAL_CAR_CABIN):
        sel = material == code
        if not sel.any():
            continue
        args = (table, s[sel], e[sel])
        if code == MATERIAL_FACADE:
            albedo[sel] = facade_albedo(*args, footprint[sel], colour[sel], params[sel])
        elif code == MATERIAL_OBSTACLE:
            albedo[sel] = obstacle_albedo(*args, footprint[sel], colour[sel], params[sel])
        elif code == MATERIAL_CAR_BODY:
            albedo[sel] = car_body_albedo(*args, axis[sel], sign[sel], half[sel], footprint[sel], colour[sel],
                                          params[sel])
        else:
            albedo[sel] = car_cabin_albedo(*args, axis[sel], half[sel], footprint[sel], colour[sel], params[sel])
    return albedo


def shade_hits(world, boxes, index, t, origin, dirs, focal):
    """Linear RGB ``[N,3]`` of camera rays given their hits (sun-lit albedo; sky where nothing is hit).

    Textures are filtered with the pixel footprint ``t |d| / (focal cos)`` (metres per pixel).

    Args:
        world: ``StreetWorld``; boxes: the ``Boxes`` that were cast against.
        index, t: outputs of :func:`cast_rays`; origin: ``[3]`` camera centre; dirs: ``[N,3]`` world rays.
        focal: focal length in pixels.
    """
    colour = sky_colour(world.noise, dirs, np.full(len(dirs), 1.0 / focal))
    ray_length = np.linalg.norm(dirs, axis=1)
    points = origin + np.where(np.isfinite(t), t, 0)[:, None] * dirs
    normals = np.zeros_like(dirs)
    ground, on_box = index == GROUND, index >= 0
    normals[ground] = [0.0, -1.0, 0.0]
    if on_box.any():
        face = face_geometry(boxes, index[on_box], points[on_box])
        normals[on_box] = face[4]
    cosine = np.abs(np.einsum('ni,ni->n', normals, dirs)) / ray_length
    footprint = t * ray_length / focal / np.maximum(cosine, 0.15)
    if on_box.any():
        colour[on_box] = box_albedo(world, boxes, index[on_box], face, footprint[on_box])
    if ground.any():
        colour[ground] = ground_albedo(world, points[ground, 0], points[ground, 2], footprint[ground])
    hit = ground | on_box
    colour[hit] *= (0.6 + 0.4 * np.clip(normals[hit] @ world.light, 0, 1))[:, None]
    return colour


def geometric_flow(world, points, owner, dirs, frame_a, frame_b, cam_to_world_b, K, shape):
    """Optical flow of frame ``a``'s pixels into frame ``b`` from the scene's geometry and motion.

    Each pixel's 3-D point moves with its owner (static world or car), is projected into camera
    ``b``; sky pixels (no point) move as directions at infinity.  Out-of-view, behind-the-camera
    and hidden targets are flagged in the occlusion mask; their flow is still the geometric one
    (with the depth clamped at 1e-3 for points behind the camera).

    Args:
        points: ``[N,3]`` world points of frame ``a`` (ignored where ``owner < 0``).
        owner: ``[N]`` -1 sky, 0 static, ``j`` car ``j``.
        dirs: ``[N,3]`` world ray directions of frame ``a``.
        cam_to_world_b: ``[4,4]`` pose of camera ``b``; K: ``[3,3]``; shape: ``(H, W)``.
    Returns:
        ``(flow [H,W,2] float32, occluded [H,W] bool)``.
    """
    height, width = shape
    sky = owner < 0
    moved = points + world.car_displacements(frame_a, frame_b)[np.maximum(owner, 0)]
    rot, centre = cam_to_world_b[:3, :3], cam_to_world_b[:3, 3]
    camera_points = np.where(sky[:, None], dirs, moved - centre) @ rot
    z = camera_points[:, 2]
    projected = camera_points @ K.T
    pixel = projected[:, :2] / np.maximum(z, 1e-3)[:, None]
    v, u = np.mgrid[0:height, 0:width].astype(float)
    flow = pixel - np.stack([u.ravel(), v.ravel()], 1)
    inside = ((z > 1e-3) & (pixel[:, 0] >= 0) & (pixel[:, 0] <= width - 1)
              & (pixel[:, 1] >= 0) & (pixel[:, 1] <= height - 1))
    visible = np.zeros(len(points), bool)
    boxes = cull_behind(world.boxes_at(frame_b), cam_to_world_b)
    check = np.flatnonzero(inside)
    rays = np.where(sky[check, None], dirs[check], moved[check] - centre)
    t_hit, index = cast_rays(boxes, centre, rays)
    visible[check] = np.where(sky[check], index == NOTHING, t_hit >= 1 - VISIBILITY_TOLERANCE)
    return flow.reshape(height, width, 2).astype(np.float32), ~visible.reshape(height, width)


def lidar_reflectance(boxes, index):
    """``[N]`` reflectance in [0,1] of lidar hits by material."""
    if len(boxes) == 0:
        return np.full(len(index), GROUND_REFLECTANCE)
    return np.where(index >= 0, BOX_REFLECTANCE[boxes.material[np.maximum(index, 0)]], GROUND_REFLECTANCE)
