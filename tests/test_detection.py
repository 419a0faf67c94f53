"""Fast NMS, traditional NMS, box coding, cropping and mask assembly on cases whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import batched_nms

from yolact import YolactOutput, assemble_masks, detect, detect_traditional, get_config
from yolact.box_utils import center_size, crop, decode, encode, point_form

CFG = get_config("yolact_tiny", class_names=("a", "b", "c"))


def make_output(boxes_xyxy, class_probs, coeffs=None, protos=None) -> YolactOutput:
    """A batch of one whose priors are exactly ``boxes_xyxy`` (loc = 0) and whose softmax gives
    ``class_probs`` (background first)."""
    priors = center_size(torch.tensor(boxes_xyxy, dtype=torch.float32))
    probs = torch.tensor(class_probs, dtype=torch.float32)
    n = len(priors)
    coeffs = torch.zeros(1, n, 4) if coeffs is None else coeffs
    protos = torch.ones(1, 8, 8, 4) if protos is None else protos
    return YolactOutput(torch.zeros(1, n, 4), probs.log()[None], coeffs, priors, protos, None)


def probs(score, cls, num_classes=3):
    """Class distribution with ``score`` on foreground class ``cls``, the rest on background."""
    row = [0.0] * (num_classes + 1)
    row[0] = 1 - score
    row[cls + 1] = score
    return row


def valid(dets):
    """Boxes, scores, classes, priors of image 0's detections that score above zero.

    ``probs`` gives a prior's other classes probability 0, and those ride along with score 0 (no second
    threshold, see test_prefilter_uses_the_best_class_only_and_no_second_threshold).
    """
    n = int(dets.num_dets[0])
    keep = dets.scores[0, :n] > 0
    return tuple(t[0, :n][keep] for t in (dets.boxes, dets.scores, dets.classes, dets.prior_index))


# A overlaps B (IoU 0.67), B overlaps C (IoU 0.67), A and C barely touch (IoU 0.11).
CHAIN = [[0.0, 0.0, 0.5, 0.5], [0.1, 0.0, 0.6, 0.5], [0.2, 0.0, 0.7, 0.5]]


def test_fast_nms_relaxation_suppressed_box_still_suppresses():
    out = make_output(CHAIN, [probs(0.9, 0), probs(0.8, 0), probs(0.7, 0)])
    _, scores, classes, priors = valid(detect(out, CFG))
    assert priors.tolist() == [0]  # C is dropped by B even though B itself was dropped by A
    assert scores.tolist() == pytest.approx([0.9])
    _, scores, _, priors = valid(detect_traditional(out, CFG))
    assert priors.tolist() == [0, 2]  # exact NMS keeps C: its only suppressor B is gone


def test_classes_do_not_suppress_each_other_and_iou_threshold_is_inclusive():
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25]]
    out = make_output(boxes, [probs(0.9, 0), probs(0.8, 1), probs(0.7, 0), probs(0.6, 2)])
    _, scores, classes, priors = valid(detect(out, CFG))
    assert priors.tolist() == [0, 1, 3]  # prior 2 duplicates prior 0 in class 0
    assert classes.tolist() == [0, 1, 2]
    # IoU exactly 0.5 is kept (suppression needs > 0.5): the half box under the full one, same class.
    out = make_output([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25]], [probs(0.9, 0), probs(0.8, 0)])
    assert valid(detect(out, CFG))[3].tolist() == [0, 1]


def test_prefilter_uses_the_best_class_only_and_no_second_threshold():
    far = [[0.0, 0.0, 0.2, 0.2], [0.6, 0.6, 0.9, 0.9]]
    # Prior 0: best class 0.6 passes; its class-1 score 0.03 rides along. Prior 1: best 0.04 fails.
    out = make_output(far, [[0.37, 0.6, 0.03, 0.0], [0.92, 0.04, 0.02, 0.02]])
    dets = detect(out, CFG)
    n = int(dets.num_dets[0])
    scores, classes, priors = dets.scores[0, :n], dets.classes[0, :n], dets.prior_index[0, :n]
    assert list(zip(priors.tolist(), classes.tolist())) == [(0, 0), (0, 1), (0, 2)]
    assert scores.tolist() == pytest.approx([0.6, 0.03, 0.0])


def test_per_class_top_k_and_global_cap_with_padding():
    cfg = CFG.replace(nms_top_k=5, max_num_detections=4)
    # Eight disjoint boxes of class 0 with falling scores: only the best 5 enter NMS, 4 come out.
    boxes = [[i / 8, 0.0, (i + 0.9) / 8, 0.1] for i in range(8)]
    out = make_output(boxes, [probs(0.9 - 0.05 * i, 0) for i in range(8)])
    dets = detect(out, cfg)
    assert dets.num_dets.tolist() == [4]
    assert dets.prior_index[0].tolist() == [0, 1, 2, 3]
    # Fewer kept than slots: the rest is padding with score 0, box 0, class -1 and an empty mask.
    single_class = cfg.replace(class_names=("a",))
    dets = detect(make_output(boxes[:2], [probs(0.9, 0, 1), probs(0.8, 0, 1)]), single_class)
    assert dets.num_dets.tolist() == [2]
    assert dets.classes[0].tolist() == [0, 0, -1, -1]
    assert dets.scores[0, 2:].eq(0).all() and dets.boxes[0, 2:].eq(0).all()
    assert assemble_masks(torch.ones(1, 8, 8, 4), dets)[0, 2:].eq(0).all()


def test_no_candidates_gives_no_detections():
    out = make_output(CHAIN, [probs(0.04, 0)] * 3)
    dets = detect(out, CFG)
    assert dets.num_dets.tolist() == [0] and dets.classes.eq(-1).all()


def test_traditional_nms_matches_torchvision_batched_nms():
    gen = torch.Generator().manual_seed(0)
    n, num_classes = 300, 3
    xy = torch.rand(n, 2, generator=gen) * 0.8
    wh = torch.rand(n, 2, generator=gen) * 0.2 + 0.02
    boxes = torch.cat((xy, xy + wh), dim=1)
    class_probs = torch.softmax(torch.randn(n, num_classes + 1, generator=gen) * 2, dim=1)
    out = make_output(boxes.tolist(), class_probs.tolist())
    dets = detect_traditional(out, CFG.replace(max_num_detections=1000))
    _, scores, classes, priors = valid(dets)
    candidates = class_probs[:, 1:].max(dim=1).values > CFG.nms_conf_thresh
    prior, cls = torch.nonzero((class_probs[:, 1:] > CFG.nms_conf_thresh) & candidates[:, None], as_tuple=True)
    keep = batched_nms(boxes[prior], class_probs[prior, cls + 1], cls, CFG.nms_iou_thresh)
    assert len(keep) > 50
    assert sorted(zip(priors.tolist(), classes.tolist())) == sorted(zip(prior[keep].tolist(), cls[keep].tolist()))
    assert torch.all(scores[:-1] >= scores[1:])


def test_batched_detection_equals_single_image():
    gen = torch.Generator().manual_seed(1)
    n = 400
    priors = torch.cat((torch.rand(n, 2, generator=gen), torch.rand(n, 2, generator=gen) * 0.3 + 0.05), dim=1)
    outputs = [
        YolactOutput(
            torch.randn(1, n, 4, generator=gen) * 0.5,
            torch.randn(1, n, 4, generator=gen) * 3,
            torch.rand(1, n, 4, generator=gen) * 2 - 1,
            priors,
            torch.rand(1, 8, 8, 4, generator=gen),
            None,
        )
        for _ in range(3)
    ]
    batch = YolactOutput(
        *(torch.cat(parts) for parts in zip(*(o[:3] for o in outputs))), priors, torch.cat([o.protos for o in outputs]), None
    )
    together = detect(batch, CFG)
    for i, single in enumerate(outputs):
        alone = detect(single, CFG)
        for a, b in zip(alone, together):
            torch.testing.assert_close(a[0], b[i])


def test_decode_encode_round_trip():
    gen = torch.Generator().manual_seed(2)
    priors = torch.cat((torch.rand(50, 2, generator=gen), torch.rand(50, 2, generator=gen) * 0.5 + 0.01), dim=1)
    loc = torch.randn(50, 4, generator=gen)
    torch.testing.assert_close(encode(decode(loc, priors), priors), loc, atol=1e-4, rtol=1e-4)
    boxes = point_form(priors)
    torch.testing.assert_close(decode(encode(boxes, priors), priors), boxes, atol=1e-6, rtol=1e-5)
    # The authors' variances: a unit offset moves the centre by 0.1 prior widths, scales by exp(0.2).
    one = decode(torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    width = 0.2 * math.exp(0.2)
    torch.testing.assert_close(one, torch.tensor([[0.52 - width / 2, 0.4, 0.52 + width / 2, 0.6]]))


def test_crop_pads_one_pixel_and_clamps_at_borders():
    masks = torch.ones(3, 8, 8)
    boxes = torch.tensor(
        [
            [0.5, 0.5, 0.75, 0.75],  # pixels 4..6 -> padded 3..6 (x1 - 1 <= c < x2 + 1)
            [0.0, 0.0, 0.25, 0.125],  # left/top border: clamped at 0
            [0.875, 0.6, 1.2, 0.99],  # past the right border: clamped at 8; y1 = 4.8 - 1 keeps rows 4..
        ]
    )
    out = crop(masks, boxes)
    cols = [torch.nonzero(m.any(dim=0)).flatten().tolist() for m in out]
    rows = [torch.nonzero(m.any(dim=1)).flatten().tolist() for m in out]
    assert cols[0] == [3, 4, 5, 6] and rows[0] == [3, 4, 5, 6]
    assert cols[1] == [0, 1, 2] and rows[1] == [0, 1]
    assert cols[2] == [6, 7] and rows[2] == [4, 5, 6, 7]
    # Fractional edges: x1 = 0.3 * 8 - 1 = 1.4 keeps column 2 onwards; x2 = 0.45 * 8 + 1 = 4.6 keeps up to 4.
    out = crop(torch.ones(1, 8, 8), torch.tensor([[0.3, 0.0, 0.45, 1.0]]))
    assert torch.nonzero(out[0].any(dim=0)).flatten().tolist() == [2, 3, 4]
    assert not crop(torch.ones(1, 8, 8), torch.tensor([[0.3, 0.0, 0.45, 1.0]]), padding=0)[0, :, 2].any()


def test_assemble_masks_is_sigmoid_of_linear_combination_then_crop():
    gen = torch.Generator().manual_seed(3)
    protos = torch.rand(1, 8, 8, 4, generator=gen)
    coeffs = torch.rand(1, 2, 4, generator=gen) * 2 - 1
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.25, 0.25, 0.5, 0.5]]])
    out = make_output(
        point_form(torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.375, 0.375, 0.25, 0.25]])).tolist(),
        [probs(0.9, 0), probs(0.8, 1)],
        coeffs=coeffs,
        protos=protos,
    )
    dets = detect(out, CFG)
    masks = assemble_masks(protos, dets)
    expected = torch.sigmoid(torch.einsum("hwk,nk->nhw", protos[0], coeffs[0]))
    torch.testing.assert_close(masks[0, 0], expected[0])
    torch.testing.assert_close(masks[0, 1], crop(expected[1:2], boxes[0, 1:2])[0])
    assert masks[0, 1, 0].eq(0).all() and masks[0, 1, 1:5, 1:5].gt(0).all()
