"""YolactLoss on hand-made cases: matching thresholds, crowd boxes, OHEM and a perfect prediction."""

import math

import pytest
import torch

from yolact import Yolact, YolactOutput, get_config
from yolact.box_utils import encode
from yolact.losses import NEUTRAL, YolactLoss, hard_negatives, match

CFG = get_config("yolact_tiny")
NO_BOXES = torch.zeros(0, 4)


def concentric_prior(box: list[float], iou: float) -> list[float]:
    """A square prior (center-size) centred on a square ``box`` and nested in it with the given IoU."""
    cx, cy, w = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0]
    side = w * math.sqrt(iou)
    return [cx, cy, side, side]


def test_match_thresholds_and_forced_best_prior():
    gt = [0.2, 0.2, 0.6, 0.6]
    small_gt = [0.9, 0.9, 1.0, 1.0]
    priors = torch.tensor(
        [
            concentric_prior(gt, 1.0),
            concentric_prior(gt, 0.6),  # positive
            concentric_prior(gt, 0.45),  # neutral
            concentric_prior(gt, 0.3),  # background
            [0.05, 0.9, 0.05, 0.05],  # far from everything
            [0.95, 0.95, 0.3, 0.3],  # IoU 0.11 with small_gt, yet its best prior
        ]
    )
    boxes = torch.tensor([gt, small_gt])
    labels = torch.tensor([2, 4])
    m = match(priors, [boxes], [labels], [NO_BOXES], CFG)
    assert m.labels.tolist() == [[3, 3, NEUTRAL, 0, 0, 5]]
    assert m.gt_index[0, [0, 1, 5]].tolist() == [0, 0, 1]
    torch.testing.assert_close(m.boxes[0, 5], boxes[1])


def test_match_each_gt_claims_a_distinct_prior():
    # Both boxes overlap prior 0 best; the stronger one takes it, the other falls back to its next best.
    priors = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    boxes = torch.tensor([[0.3, 0.3, 0.7, 0.7], [0.32, 0.32, 0.68, 0.68]])
    m = match(priors, [boxes], [torch.tensor([0, 1])], [NO_BOXES], CFG)
    assert m.labels[0, :2].tolist() == [1, 2]
    assert m.gt_index[0, :2].tolist() == [0, 1]


def test_crowd_box_neutralises_only_negatives():
    priors = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1], [0.9, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.2, 0.2, 0.4, 0.4]])
    crowd = torch.tensor([[0.1, 0.1, 0.9, 0.9]])  # covers priors 0 and 1 entirely, prior 2 by half
    m = match(priors, [boxes], [torch.tensor([0])], [crowd], CFG)
    assert m.labels.tolist() == [[1, NEUTRAL, 0]]


def test_match_batches_images_with_different_box_counts():
    priors = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    boxes = [torch.tensor([[0.2, 0.2, 0.4, 0.4], [0.6, 0.6, 0.8, 0.8]]), NO_BOXES]
    m = match(priors, boxes, [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.int64)], [NO_BOXES, NO_BOXES], CFG)
    assert m.labels.tolist() == [[1, 2], [0, 0]]


def test_ohem_picks_three_hardest_negatives_per_positive():
    torch.manual_seed(0)
    conf = torch.randn(2, 30, 6)
    labels = torch.zeros(2, 30, dtype=torch.int64)
    labels[0, 3] = 2
    labels[1, [0, 7]] = 1
    labels[:, 10:12] = NEUTRAL
    conf[:, 10:12, 1] = 50.0  # neutrals with the largest background loss are never mined
    neg = hard_negatives(conf, labels, negpos_ratio=3)
    assert neg.sum(dim=1).tolist() == [3, 6]
    background_loss = torch.logsumexp(conf, -1) - conf[..., 0]
    for i, count in enumerate([3, 6]):
        candidates = background_loss[i].masked_fill(labels[i] != 0, -1.0)
        assert set(neg[i].nonzero().flatten().tolist()) == set(candidates.topk(count).indices.tolist())


def perfect_case() -> tuple[YolactOutput, list[dict]]:
    """One image (64 px, prototypes 16 px) with one square, predicted exactly by prior 0."""
    size, proto, k, num_classes = 64, 16, 4, CFG.num_classes
    gt_box = torch.tensor([[0.25, 0.25, 0.75, 0.75]])
    label = 3
    mask = torch.zeros(1, size, size, dtype=torch.uint8)
    mask[:, 16:48, 16:48] = 1
    priors = torch.tensor([[0.5, 0.5, 0.45, 0.45]] + [[0.05 + 0.1 * i, 0.05, 0.08, 0.08] for i in range(9)])
    num_priors = len(priors)

    loc = torch.zeros(1, num_priors, 4)
    loc[0, 0] = encode(gt_box, priors[:1])[0]
    conf = torch.full((1, num_priors, num_classes + 1), -20.0)
    conf[0, :, 0] = 20.0
    conf[0, 0, 0], conf[0, 0, label + 1] = -20.0, 20.0
    coeffs = torch.zeros(1, num_priors, k)
    coeffs[0, 0, 0] = 1.0
    protos = torch.full((1, proto, proto, k), -40.0)
    protos[0, 4:12, 4:12, 0] = 40.0  # the square at prototype resolution
    segm = torch.full((1, num_classes, 8, 8), -40.0)
    segm[0, label, 2:6, 2:6] = 40.0
    target = {
        "boxes": gt_box,
        "labels": torch.tensor([label]),
        "masks": mask,
        "crowd_boxes": NO_BOXES,
    }
    return YolactOutput(loc, conf, coeffs, priors, protos, segm), [target]


def test_perfect_prediction_has_near_zero_loss():
    output, targets = perfect_case()
    losses = YolactLoss(CFG)(output, targets)
    for name in ("box", "conf", "mask", "segm", "total"):
        assert losses[name].item() < 1e-6, (name, losses[name].item())


def test_wrong_prediction_is_penalised_in_every_term():
    output, targets = perfect_case()
    wrong = output._replace(loc=output.loc + 1.0, conf=-output.conf, protos=-output.protos, segm=-output.segm)
    losses = YolactLoss(CFG)(wrong, targets)
    for name in ("box", "conf", "mask", "segm"):
        assert losses[name].item() > 1.0, name
    # Box loss: smooth-L1 of an offset of 1 on 4 coordinates (0.5 each), x1.5, one positive.
    assert losses["box"].item() == pytest.approx(4 * 0.5 * CFG.bbox_alpha)


def test_mask_loss_is_normalised_by_box_area():
    output, targets = perfect_case()
    coeffs = output.coeffs.clone()
    coeffs[0, 0, 0] = 0.0  # every mask pixel predicts 0.5: BCE = log 2 inside the (8+2)^2-pixel crop
    losses = YolactLoss(CFG)(output._replace(coeffs=coeffs), targets)
    expected = math.log(2) * 10 * 10 / (8 * 8) * CFG.mask_alpha
    assert losses["mask"].item() == pytest.approx(expected, rel=1e-5)


def test_loss_on_real_model_output_is_finite_and_differentiable():
    torch.manual_seed(0)
    model = Yolact(CFG).train()
    images = torch.randn(2, 3, CFG.max_size, CFG.max_size)
    mask = torch.zeros(2, CFG.max_size, CFG.max_size, dtype=torch.uint8)
    mask[0, 10:60, 20:90] = 1
    mask[1, 70:120, 5:40] = 1
    targets = [
        {"boxes": torch.tensor([[20, 10, 90, 60.0]]) / 128, "labels": torch.tensor([1]), "masks": mask[:1], "crowd_boxes": NO_BOXES},
        {
            "boxes": torch.tensor([[5, 70, 40, 120.0], [0, 0, 64, 64]]) / 128,
            "labels": torch.tensor([0, 4]),
            "masks": mask,
            "crowd_boxes": torch.tensor([[0.5, 0.5, 1.0, 1.0]]),
        },
    ]
    losses = YolactLoss(CFG)(model(images), targets)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert model.prediction_layers[0].mask_layer.weight.grad.abs().sum() > 0
    assert model.semantic_seg_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("before_relu", [False, True])
def test_mask_iou_loss_revives_a_dead_class_only_before_the_relu(before_relu):
    """A class whose mask-IoU output is below zero for every input gets no gradient through the final ReLU
    (the authors' loss: its mask scores stay 0 for good); regressed before the ReLU it is pulled back up."""
    from yolact.losses import MaskIoUSamples
    from yolact.model import MaskIoUNet

    cfg = get_config("yolact_plus_tiny", maskiou_loss_before_relu=before_relu)
    torch.manual_seed(0)
    net = MaskIoUNet(cfg.maskiou_channels, cfg.num_classes)
    final = net.maskiou_net[-2]
    with torch.no_grad():
        final.bias[1] = -100.0  # class 1 is dead
    samples = MaskIoUSamples(torch.rand(4, 1, 32, 32), torch.full((4,), 0.8), torch.tensor([1, 1, 0, 0]))
    assert torch.all(net(samples.masks)[:, 1] == 0)
    YolactLoss(cfg).mask_iou_loss(net, samples).backward()
    assert (final.bias.grad[1] != 0) == before_relu
    assert final.bias.grad[1] <= 0  # a step raises it towards the 0.8 targets
