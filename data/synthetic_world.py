"""Layout of the synthetic driving world: street, buildings, obstacles, cars and the camera path.

World frame (metres): x right, y down, z forward along the street; the road surface is the plane
``y = 0``.  It has the axes of an unrotated camera, so a camera-to-world pose of a level camera
looking down the street has an identity rotation.  Everything is drawn from one
``numpy.random.Generator``; nothing here renders.

Street cross-section (|x|): driving lanes 0..3.5 (centres 1.75), parking lane 3.5..5.5, sidewalk
5.5..8.5, then buildings.  Optional cross street (for crossing cars) at ``z = cross_z``.
"""
from dataclasses import dataclass

import numpy as np

CAMERA_HEIGHT = 1.65
LANE_CENTRE = 1.75
LANE_EDGE = 3.5
PARKING_CENTRE = 4.5
ROAD_HALF_WIDTH = 5.5
SIDEWALK_OUTER = 8.5
CROSS_HALF_WIDTH = 6.0
BACKDROP_X = 45.0
VIEW_RANGE = 130.0
STREET_START = -40.0

MATERIAL_FACADE = 0
MATERIAL_OBSTACLE = 1
MATERIAL_CAR_BODY = 2
MATERIAL_CAR_CABIN = 3

CAR_KINDS = ('parked', 'same', 'opposite', 'crossing')
CAR_KIND_WEIGHTS = (0.3, 0.25, 0.25, 0.2)
MOVING_KINDS_FORCED = ('same', 'opposite')
CAR_COLOURS = np.array([[0.70, 0.08, 0.07], [0.10, 0.20, 0.55], [0.85, 0.85, 0.82], [0.55, 0.57, 0.60],
                        [0.12, 0.12, 0.13], [0.85, 0.65, 0.10], [0.15, 0.40, 0.22], [0.45, 0.25, 0.15]])
FACADE_COLOURS = np.array([[0.72, 0.62, 0.50], [0.60, 0.35, 0.28], [0.80, 0.78, 0.70], [0.55, 0.55, 0.58],
                           [0.75, 0.68, 0.45], [0.45, 0.42, 0.40], [0.68, 0.52, 0.42], [0.85, 0.82, 0.78]])
OBSTACLE_COLOURS = np.array([[0.90, 0.45, 0.05], [0.20, 0.45, 0.20], [0.85, 0.80, 0.10],
                             [0.30, 0.30, 0.35], [0.75, 0.15, 0.12]])
OBSTACLE_SIZES = np.array([[0.6, 1.0, 0.6], [0.25, 1.1, 0.25], [1.2, 0.9, 0.8], [0.3, 4.0, 0.3]])
NOISE_TABLE_SIZE = 256
CAR_CLEARANCE = 0.15


def rotation_y(angle):
    """Rotation about the world's (downward) y axis; heading ``(sin a, 0, cos a)`` for ``a`` = angle."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_x(angle):
    """Rotation about the x axis (pitch)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rigid(rot, trans):
    """4x4 homogeneous transform from a ``[3,3]`` rotation and a ``[3]`` translation."""
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = trans
    return out


@dataclass(frozen=True)
class Boxes:
    """Oriented boxes, ``B`` of them.

    Attributes:
        centre: ``[B,3]`` world centres.
        half: ``[B,3]`` half extents along the box axes.
        yaw: ``[B]`` rotation of each box about the world y axis (box-to-world ``rotation_y(yaw)``).
        material: ``[B]`` ``MATERIAL_*`` codes.
        owner: ``[B]`` 0 for the static world, ``j >= 1`` for car track ``j``.
        colour: ``[B,3]`` base albedo in [0,1].
        params: ``[B,4]`` texture parameters (offset s, offset t, period, floor height).
    """
    centre: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    material: np.ndarray
    owner: np.ndarray
    colour: np.ndarray
    params: np.ndarray

    def __len__(self):
        return len(self.centre)

    @property
    def rot(self):
        """``[B,3,3]`` box-to-world rotations (columns are the box axes in the world)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        zero, one = np.zeros_like(c), np.ones_like(c)
        return np.stack([c, zero, s, zero, one, zero, -s, zero, c], 1).reshape(-1, 3, 3)

    def subset(self, keep):
        """The boxes selected by a ``[B]`` boolean mask or index array."""
        return Boxes(*(getattr(self, name)[keep] for name in Boxes.__dataclass_fields__))

    @staticmethod
    def concat(parts):
        """Concatenate several ``Boxes``."""
        return Boxes(*(np.concatenate([getattr(p, name) for p in parts]) for name in Boxes.__dataclass_fields__))


def make_boxes(centre, half, yaw, material, owner, colour, params):
    """``Boxes`` from array-likes; ``material``, ``owner`` may be scalars shared by all boxes."""
    centre = np.asarray(centre, float).reshape(-1, 3)
    count = len(centre)
    return Boxes(centre, np.asarray(half, float).reshape(count, 3), np.asarray(yaw, float).reshape(count),
                 np.broadcast_to(np.asarray(material, int), (count,)).copy(),
                 np.broadcast_to(np.asarray(owner, int), (count,)).copy(),
                 np.asarray(colour, float).reshape(count, 3), np.asarray(params, float).reshape(count, 4))


@dataclass(frozen=True)
class CarTrack:
    """One car: a body box and a cabin box moving rigidly with a constant heading.

    Attributes:
        kind: 'parked', 'same' (same direction as the camera), 'opposite' or 'crossing'.
        size: ``[3]`` (length, width, height) of the body; the cabin sits on top.
        cabin: ``[3]`` (length, height, offset of its centre towards the rear).
        yaw: heading angle about y (0 = driving along +z).
        positions: ``[F,3]`` world position of the car's bottom centre per frame.
        colour: ``[3]`` body albedo.
        offset: ``[2]`` texture offset.
    """
    kind: str
    size: np.ndarray
    cabin: np.ndarray
    yaw: float
    positions: np.ndarray
    colour: np.ndarray
    offset: np.ndarray

    def pose(self, frame):
        """Car-to-world 4x4 pose at ``frame`` (car frame: x right, y down, z forward, origin bottom centre)."""
        return rigid(rotation_y(self.yaw), self.positions[frame])

    def boxes(self, frame, owner):
        """The car's two ``Boxes`` (body, cabin) at ``frame``."""
        length, width, height = self.size
        cab_len, cab_h, cab_back = self.cabin
        local = np.array([[0.0, -height / 2, 0.0], [0.0, -height - cab_h / 2, -cab_back]])
        half = np.array([[width / 2, height / 2, length / 2], [width / 2 - 0.08, cab_h / 2, cab_len / 2]])
        centre = self.positions[frame] + local @ rotation_y(self.yaw).T
        params = np.array([[self.offset[0], self.offset[1], 0.0, 0.0]] * 2)
        return make_boxes(centre, half, [self.yaw, self.yaw], [MATERIAL_CAR_BODY, MATERIAL_CAR_CABIN],
                          owner, [self.colour, self.colour], params)

    def footprint_circles(self):
        """``[F,3,2]`` (x, z) centres of three circles covering the car footprint, radius ``footprint_radius``."""
        heading = np.array([np.sin(self.yaw), np.cos(self.yaw)])
        along = np.array([-1.0, 0.0, 1.0]) * self.size[0] / 3
        return self.positions[:, None, [0, 2]] + along[None, :, None] * heading

    def footprint_radius(self):
        return float(np.hypot(self.size[0] / 6, self.size[1] / 2)) + CAR_CLEARANCE


@dataclass(frozen=True)
class StreetWorld:
    """Everything that exists in one scene (static boxes, cars, appearance constants).

    Attributes:
        static: ``Boxes`` of buildings, backdrops and obstacles (owner 0).
        cars: tuple of ``CarTrack``; car ``j`` (1-based) is ``cars[j-1]``.
        cross_z: z of the cross street centre, or NaN when there is none.
        light: ``[3]`` unit vector towards the sun (world).
        noise: ``[T,T]`` random lattice for value noise.
        palette: ``[4,3]`` asphalt, paving, verge and marking albedos.
    """
    static: Boxes
    cars: tuple
    cross_z: float
    light: np.ndarray
    noise: np.ndarray
    palette: np.ndarray

    def boxes_at(self, frame):
        """All ``Boxes`` (static first, then the cars) at ``frame``."""
        return Boxes.concat([self.static] + [car.boxes(frame, j + 1) for j, car in enumerate(self.cars)])

    def car_displacements(self, frame_a, frame_b):
        """``[1+n_cars,3]`` world translation of every owner from ``frame_a`` to ``frame_b`` (row 0: static)."""
        moves = [np.zeros(3)] + [car.positions[frame_b] - car.positions[frame_a] for car in self.cars]
        return np.stack(moves)


def sample_camera_path(rng, frames):
    """Camera-to-world poses ``[F,4,4]``: forward 0.5-1.5 m/frame with small smooth yaw/pitch changes."""
    k = np.arange(frames)
    mean_speed = rng.uniform(0.6, 1.3)
    speed = np.clip(mean_speed * (1 + 0.08 * np.sin(2 * np.pi * k / rng.uniform(8, 20) + rng.uniform(0, 2 * np.pi))),
                    0.5, 1.5)
    yaw = np.radians(rng.uniform(0, 2.0)) * np.sin(2 * np.pi * k / rng.uniform(15, 40) + rng.uniform(0, 2 * np.pi))
    pitch = np.radians(rng.uniform(0, 0.6)) * np.sin(2 * np.pi * k / rng.uniform(6, 15) + rng.uniform(0, 2 * np.pi))
    bounce = 0.01 * np.sin(2 * np.pi * k / rng.uniform(5, 10))
    step = np.stack([speed * np.sin(yaw), np.zeros(frames), speed * np.cos(yaw)], 1)
    start = np.array([LANE_CENTRE + rng.uniform(-0.2, 0.2), -CAMERA_HEIGHT, 0.0])
    centres = start + np.concatenate([np.zeros((1, 3)), np.cumsum(step[:-1], 0)])
    centres[:, 1] += bounce
    return np.stack([rigid(rotation_y(a) @ rotation_x(b), c) for a, b, c in zip(yaw, pitch, centres)])


def _car_shape(rng):
    length, width, height = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9), rng.uniform(0.75, 0.95)
    cabin = np.array([length * rng.uniform(0.45, 0.6), rng.uniform(0.45, 0.6), length * rng.uniform(0.0, 0.1)])
    return np.array([length, width, height]), cabin


def _car_motion(rng, kind, frames, camera_speed, cross_z):
    """(yaw, ``[F,3]`` positions) of a car of ``kind``: parked, or a constant velocity along its heading."""
    if kind == 'parked':
        side = rng.choice([-1.0, 1.0])
        start, yaw, speed = [side * PARKING_CENTRE, 0.0, rng.uniform(4, 50)], rng.choice([0.0, np.pi]), 0.0
    elif kind == 'same':
        start, yaw = [LANE_CENTRE + rng.uniform(-0.2, 0.2), 0.0, rng.uniform(7, 30)], 0.0
        speed = camera_speed * rng.uniform(0.7, 1.3)
    elif kind == 'opposite':
        start, yaw = [-LANE_CENTRE + rng.uniform(-0.2, 0.2), 0.0, rng.uniform(15, 60)], np.pi
        speed = rng.uniform(0.5, 1.5)
    else:
        direction = rng.choice([-1.0, 1.0])
        start, yaw = [-direction * rng.uniform(8, 16), 0.0, cross_z - direction * LANE_CENTRE], direction * np.pi / 2
        speed = rng.uniform(0.5, 1.2)
    velocity = speed * np.array([np.sin(yaw), 0.0, np.cos(yaw)])
    return float(yaw), np.asarray(start) + np.arange(frames)[:, None] * velocity


def _collides(car, others, camera_circles):
    """True if ``car``'s footprint comes near another car or the ego vehicle in any frame."""
    circles, radius = car.footprint_circles(), car.footprint_radius()
    for other_circles, other_radius in others + [(camera_circles, 1.2)]:
        gap = np.linalg.norm(circles[:, :, None] - other_circles[:, None], axis=-1)
        if (gap < radius + other_radius).any():
            return True
    return False


def _ego_circles(cam_to_world):
    """``[F,3,2]`` footprint circles of the ego vehicle (camera about 1.5 m behind its front)."""
    centre = cam_to_world[:, [0, 2], 3]
    heading = cam_to_world[:, [0, 2], 2] / np.linalg.norm(cam_to_world[:, [0, 2], 2], axis=1, keepdims=True)
    return centre[:, None] + np.array([0.0, -1.5, -3.0])[None, :, None] * heading[:, None]


def sample_cars(rng, kinds, cam_to_world, cross_z, tries=20):
    """Car tracks of the given kinds that collide with nothing (a car is dropped after ``tries`` failures)."""
    frames = len(cam_to_world)
    camera_speed = np.linalg.norm(np.diff(cam_to_world[:, :3, 3], axis=0), axis=1).mean() if frames > 1 else 1.0
    ego, cars, placed = _ego_circles(cam_to_world), [], []
    for kind in kinds:
        for _ in range(tries):
            size, cabin = _car_shape(rng)
            yaw, positions = _car_motion(rng, kind, frames, camera_speed, cross_z)
            car = CarTrack(kind, size, cabin, yaw, positions, CAR_COLOURS[rng.integers(len(CAR_COLOURS))]
                           * rng.uniform(0.85, 1.1), rng.uniform(0, 1000, 2))
            if not _collides(car, placed, ego):
                cars.append(car)
                placed.append((car.footprint_circles(), car.footprint_radius()))
                break
    return tuple(cars)


def _in_cross_street(z_lo, z_hi, cross_z):
    return bool(np.isfinite(cross_z)) and z_hi > cross_z - CROSS_HALF_WIDTH and z_lo < cross_z + CROSS_HALF_WIDTH


def sample_buildings(rng, street_end, cross_z):
    """Facade boxes along both sides of the street, leaving the cross street free."""
    boxes = []
    for side in (-1.0, 1.0):
        z = STREET_START
        while z < street_end:
            width = rng.uniform(6, 18)
            if _in_cross_street(z, z + width, cross_z):
                z = cross_z + CROSS_HALF_WIDTH
                continue
            depth, height, setback = rng.uniform(6, 14), rng.uniform(6, 22), rng.uniform(0, 1.5)
            colour = FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * rng.uniform(0.85, 1.1, 3)
            params = [rng.uniform(0, 1000), rng.uniform(0, 1000), rng.uniform(2.2, 3.6), rng.uniform(3.0, 3.6)]
            boxes.append(([side * (SIDEWALK_OUTER + setback + depth / 2), -height / 2, z + width / 2],
                          [depth / 2, height / 2, width / 2], colour, params))
            z += width + (0.0 if rng.random() < 0.5 else rng.uniform(1, 5))
    centre, half, colour, params = (np.array(v) for v in zip(*boxes))
    return make_boxes(centre, half, np.zeros(len(centre)), MATERIAL_FACADE, 0, colour, params)


def enclosing_walls(rng, street_end):
    """Backdrops on both sides and walls across both ends: the world is closed, depth stays finite."""
    length = street_end - STREET_START + 30
    mid = (street_end + STREET_START) / 2
    centre = [[-BACKDROP_X - 2.5, -15, mid], [BACKDROP_X + 2.5, -15, mid],
              [0.0, -15, street_end + 2.5], [0.0, -15, STREET_START - 12.5]]
    half = [[2.5, 15, length / 2], [2.5, 15, length / 2], [BACKDROP_X + 5, 15, 2.5], [BACKDROP_X + 5, 15, 2.5]]
    colour = FACADE_COLOURS[rng.integers(len(FACADE_COLOURS), size=4)] * 0.8
    params = np.column_stack([rng.uniform(0, 1000, (4, 2)), rng.uniform(2.5, 3.5, 4), rng.uniform(3.0, 3.6, 4)])
    return make_boxes(centre, half, np.zeros(4), MATERIAL_FACADE, 0, colour, params)


def sample_obstacles(rng, street_end, cross_z):
    """A few static boxes (bins, posts, crates, poles) on the sidewalks."""
    boxes = []
    for _ in range(rng.integers(2, 7)):
        size = OBSTACLE_SIZES[rng.integers(len(OBSTACLE_SIZES))]
        z = rng.uniform(2, min(60.0, street_end))
        if _in_cross_street(z - 1, z + 1, cross_z):
            continue
        side = rng.choice([-1.0, 1.0])
        x = side * rng.uniform(ROAD_HALF_WIDTH + 0.9, SIDEWALK_OUTER - 0.9)
        boxes.append(([x, -size[1] / 2, z], size / 2, rng.uniform(-0.4, 0.4),
                      OBSTACLE_COLOURS[rng.integers(len(OBSTACLE_COLOURS))],
                      [rng.uniform(0, 1000), rng.uniform(0, 1000), rng.uniform(0.2, 0.5), 0.0]))
    if not boxes:
        return make_boxes(np.zeros((0, 3)), np.zeros((0, 3)), [], MATERIAL_OBSTACLE, 0, np.zeros((0, 3)),
                          np.zeros((0, 4)))
    centre, half, yaw, colour, params = (np.array(v) for v in zip(*boxes))
    return make_boxes(centre, half, yaw, MATERIAL_OBSTACLE, 0, colour, params)


def with_moving_cars(kinds, min_moving):
    """``kinds`` with parked cars turned into (then extra) moving ones until ``min_moving`` cars move.

    Forced cars alternate between 'same' and 'opposite' (both drive along the street, in view).
    """
    kinds = list(kinds)
    forced = 0
    while sum(kind != 'parked' for kind in kinds) < min_moving:
        kind = MOVING_KINDS_FORCED[forced % len(MOVING_KINDS_FORCED)]
        if 'parked' in kinds:
            kinds[kinds.index('parked')] = kind
        else:
            kinds.append(kind)
        forced += 1
    return kinds


def sample_world(rng, cam_to_world, min_cars=0, max_cars=4, min_moving=0):
    """A ``StreetWorld`` around a camera path ``[F,4,4]``, with ``min_cars..max_cars`` cars.

    With ``min_moving > 0`` at least that many of the sampled cars move (a car that cannot be placed
    without a collision is still dropped: callers check what is in view).
    """
    kinds = list(rng.choice(CAR_KINDS, size=rng.integers(min_cars, max_cars + 1), p=CAR_KIND_WEIGHTS))
    if min_moving:
        kinds = with_moving_cars(kinds, min_moving)
    cross_z = rng.uniform(14, 35) if ('crossing' in kinds or rng.random() < 0.3) else np.nan
    street_end = cam_to_world[-1, 2, 3] + VIEW_RANGE
    static = Boxes.concat([sample_buildings(rng, street_end, cross_z), enclosing_walls(rng, street_end),
                           sample_obstacles(rng, street_end, cross_z)])
    cars = sample_cars(rng, kinds, cam_to_world, cross_z)
    sun = np.array([rng.uniform(-0.8, 0.8), -1.0, rng.uniform(-0.6, 0.6)])
    palette = np.array([[0.33, 0.33, 0.34], [0.66, 0.63, 0.58], [0.35, 0.42, 0.22], [0.92, 0.92, 0.88]])
    palette = palette * rng.uniform(0.9, 1.1, (4, 1))
    noise = rng.uniform(-1, 1, (NOISE_TABLE_SIZE, NOISE_TABLE_SIZE))
    return StreetWorld(static, cars, float(cross_z), sun / np.linalg.norm(sun), noise, palette)
