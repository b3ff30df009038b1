"""Video instance association between two frames (docs/ARCHITECTURE.md, "Data layout"), vectorised over instances.

The two frames are taken in time order: frame ``a`` (earlier) and frame ``b`` (later), with the
forward flow ``F_ab`` (a -> b, defined on a's pixels) and the backward flow ``F_ba`` (b -> a).
Instance masks are ``[N,H,W]`` boolean arrays holding the instance channels only (channel 0 of the
stored segmentation, which is empty, is dropped); the stored channel of instance ``i`` is ``i + 1``.

The result of an association is the list of accepted pairs ``[n,2]`` (instance index in a, index
in b) in acceptance order.  It is all a cache needs to store: :func:`pack_pairs` rebuilds the
non-overlapping instance tensors from it and the masks.
"""
import numpy as np
import torch

from inverse_warp import flow_warp

IOU_THRESHOLD = 0.5
CONSISTENCY_ABS_PX = 3.0
CONSISTENCY_REL = 0.05


def binary_instances(seg):
    """``[1+N,H,W]`` stored segmentation -> ``[N,H,W]`` bool instance masks (value > 0.5)."""
    return np.asarray(seg[1:]) > 0.5


def area_order(masks):
    """Indices that sort ``[N,H,W]`` masks by area, largest first (stable for equal areas): ``[N]`` int64."""
    areas = masks.sum(axis=(1, 2))
    return np.argsort(-areas, kind='stable')


def _flow_tensor(flow):
    """``[H,W,2]`` array -> ``[1,2,H,W]`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(flow, np.float32).transpose(2, 0, 1))).unsqueeze(0)


def compose_flows(flows):
    """Chain consecutive flows into one: ``F_0k(p) = F_01(p) + F_1k(p + F_01(p))``.

    Args:
        flows: list of ``[H,W,2]`` flows ``F_{i,i+1}``, in the order they are followed.
    Returns:
        ``[H,W,2]`` float32 flow from the first frame to the last.  Where an intermediate position
        leaves the image the flow there is read at the border; such pixels normally fail the
        forward-backward check.
    """
    total = _flow_tensor(flows[0])
    for flow in flows[1:]:
        step, _ = flow_warp(_flow_tensor(flow), total, padding_mode='border')
        total = total + step
    return total[0].permute(1, 2, 0).numpy()


def non_occlusion_masks(flow_ab, flow_ba):
    """Forward-backward consistency masks of a flow pair.

    A pixel ``p`` of a is consistent when ``p + F_ab(p)`` lands inside b and
    ``|F_ab(p) + F_ba(p + F_ab(p))| < max(3, 0.05 |F_ab(p)|)``; symmetrically for b.

    Args:
        flow_ab, flow_ba: ``[1,2,H,W]`` float tensors.
    Returns:
        ``(noc_a [H,W], noc_b [H,W])`` bool tensors.
    """
    return _consistent(flow_ab, flow_ba), _consistent(flow_ba, flow_ab)


def _consistent(flow, flow_back):
    """Squared-norm form of the check (same result, no square roots): ``[H,W]`` bool."""
    back, inside = flow_warp(flow_back, flow)
    error = flow + back
    error_sq = error[0, 0] ** 2 + error[0, 1] ** 2
    bound_sq = torch.clamp(CONSISTENCY_REL ** 2 * (flow[0, 0] ** 2 + flow[0, 1] ** 2), min=CONSISTENCY_ABS_PX ** 2)
    return (error_sq < bound_sq) & (inside[0, 0] > 0)


def soft_iou(warped, masks, valid):
    """IoU of every (soft) warped instance against every binary instance, on valid pixels only.

    Intersection ``sum(w * m)``, union ``sum(min(1, w + m))`` (= ``sum(w) + sum(m) - sum(w m)``
    for binary ``m``), as the official implementation.

    Args:
        warped: ``[Nw,H,W]`` float tensor in [0,1] (instances warped into this frame).
        masks: ``[Nm,H,W]`` bool tensor (this frame's instances).
        valid: ``[H,W]`` bool tensor (consistent pixels).
    Returns:
        ``[Nw,Nm]`` float tensor; 0 where the union is empty.
    """
    w = (warped * valid).reshape(warped.shape[0], -1)
    m = (masks & valid).reshape(masks.shape[0], -1).to(w.dtype)
    intersection = w @ m.T
    union = w.sum(1, keepdim=True) + m.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-12), torch.zeros_like(union))


def mutual_matches(iou_ab, iou_ba):
    """Candidate pairs: best matches that agree both ways with both IoUs above 0.5.

    Args:
        iou_ab: ``[Na,Nb]`` IoU of a's instances warped into b against b's instances.
        iou_ba: ``[Nb,Na]`` IoU of b's instances warped into a against a's instances.
    Returns:
        ``[n,2]`` int64 array of (index in a, index in b), in a's index order.
    """
    best_b = iou_ab.argmax(1)
    best_a = iou_ba.argmax(1)
    index_a = torch.arange(iou_ab.shape[0])
    mutual = best_a[best_b] == index_a
    strong = (iou_ab[index_a, best_b] > IOU_THRESHOLD) & (iou_ba[best_b, index_a] > IOU_THRESHOLD)
    keep = mutual & strong
    return torch.stack([index_a[keep], best_b[keep]], 1).numpy().astype(np.int64)


def accept_without_overlap(candidates, masks_a, masks_b):
    """Greedy acceptance in candidate order: a pair is kept when both masks still have pixels
    after removing those claimed by the pairs kept before it.

    Args:
        candidates: ``[n,2]`` int64 (index in a, index in b).
        masks_a, masks_b: ``[Na,H,W]``, ``[Nb,H,W]`` bool arrays.
    Returns:
        ``[k,2]`` int64 accepted pairs (k <= n), in order.
    """
    claimed_a = np.zeros(masks_a.shape[1:], bool)
    claimed_b = np.zeros(masks_b.shape[1:], bool)
    accepted = []
    for index_a, index_b in candidates:
        left_a = masks_a[index_a] & ~claimed_a
        left_b = masks_b[index_b] & ~claimed_b
        if left_a.any() and left_b.any():
            accepted.append((index_a, index_b))
            claimed_a |= left_a
            claimed_b |= left_b
    return np.array(accepted, np.int64).reshape(-1, 2)


def associate_pair(masks_a, masks_b, flow_ab, flow_ba):
    """Associate the instances of two frames (all matches, no ``mni`` cap).

    Args:
        masks_a: ``[Na,H,W]`` bool instance masks of the earlier frame, sorted by area (largest first).
        masks_b: ``[Nb,H,W]`` bool instance masks of the later frame, sorted by area.
        flow_ab: ``[H,W,2]`` forward flow a -> b.
        flow_ba: ``[H,W,2]`` backward flow b -> a.
    Returns:
        ``[k,2]`` int64 accepted pairs (index into masks_a, index into masks_b), in the order of
        a's instances; capping at ``mni`` keeps the first ``mni`` rows.
    """
    if masks_a.shape[0] == 0 or masks_b.shape[0] == 0:
        return np.zeros((0, 2), np.int64)
    f_ab, f_ba = _flow_tensor(flow_ab), _flow_tensor(flow_ba)
    noc_a, noc_b = non_occlusion_masks(f_ab, f_ba)
    tensor_a, tensor_b = torch.from_numpy(masks_a), torch.from_numpy(masks_b)
    a_in_b, _ = flow_warp(tensor_a.unsqueeze(0).float(), f_ba)
    b_in_a, _ = flow_warp(tensor_b.unsqueeze(0).float(), f_ab)
    iou_ab = soft_iou(a_in_b[0], tensor_b, noc_b)
    iou_ba = soft_iou(b_in_a[0], tensor_a, noc_a)
    return accept_without_overlap(mutual_matches(iou_ab, iou_ba), masks_a, masks_b)


def associate_stored(masks_a, masks_b, flow_ab, flow_ba):
    """:func:`associate_pair` on masks in their stored order (any order; sorted by area here).

    Returns:
        ``[k,2]`` int64 stored channel numbers (1-based: channel 0 of a segmentation file is empty)
        of the accepted pairs, in area order of a's instances.
    """
    order_a, order_b = area_order(masks_a), area_order(masks_b)
    sorted_pairs = associate_pair(masks_a[order_a], masks_b[order_b], flow_ab, flow_ba)
    return np.stack([order_a[sorted_pairs[:, 0]], order_b[sorted_pairs[:, 1]]], 1) + 1


def pack_pairs(pairs, masks_a, masks_b, max_num_instances):
    """Build the instance tensors of a pair from its accepted matches.

    Channel 0 holds the number ``n`` of kept pairs everywhere; channel ``k`` (1..n) holds the mask
    of the k-th pair minus the pixels of the pairs before it (so masks never overlap).

    Args:
        pairs: ``[k,2]`` int64 accepted pairs (index in a, index in b).
        masks_a, masks_b: ``[Na,H,W]``, ``[Nb,H,W]`` bool masks the indices refer to.
        max_num_instances: ``mni``; only the first ``mni`` pairs are kept.
    Returns:
        ``(inst_a, inst_b)``: two ``[1+mni,H,W]`` float32 arrays.
    """
    pairs = pairs[:max_num_instances]
    return (_pack(masks_a, pairs[:, 0], max_num_instances),
            _pack(masks_b, pairs[:, 1], max_num_instances))


def _pack(masks, indices, max_num_instances):
    height, width = masks.shape[1:]
    out = np.zeros((1 + max_num_instances, height, width), np.float32)
    out[0] = len(indices)
    claimed = np.zeros((height, width), bool)
    for channel, index in enumerate(indices, start=1):
        out[channel] = masks[index] & ~claimed
        claimed |= masks[index]
    return out


def drop_empty_pairs(inst_a, inst_b):
    """Remove pairs whose mask is empty in either frame (e.g. cropped away) and re-pack the rest.

    Args:
        inst_a, inst_b: ``[1+mni,H,W]`` instance arrays or tensors of a pair (channel 0 = count).
    Returns:
        ``(inst_a, inst_b)`` of the same type and shape, channels ``1..n'`` all non-empty and
        channel 0 = ``n'``.
    """
    as_numpy = not torch.is_tensor(inst_a)
    a, b = torch.as_tensor(inst_a), torch.as_tensor(inst_b)
    count = int(round(float(a[0, 0, 0])))
    nonempty = (a[1:1 + count].flatten(1).amax(1) > 0) & (b[1:1 + count].flatten(1).amax(1) > 0)
    keep = 1 + torch.nonzero(nonempty).flatten()
    if len(keep) == count:
        return inst_a, inst_b
    out_a, out_b = torch.zeros_like(a), torch.zeros_like(b)
    for out, source in ((out_a, a), (out_b, b)):
        out[0] = len(keep)
        out[1:1 + len(keep)] = source[keep]
    return (out_a.numpy(), out_b.numpy()) if as_numpy else (out_a, out_b)
