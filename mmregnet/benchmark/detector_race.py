"""The whole PointPillars detector raced from points to boxes, with its stages and backbone.

Contenders, all with one set of weights and all on the same frame:

- ``reference``: mmdet3d's eager ``test_step`` (the config with ``NoStemRegNet``;
  for RegNetY, which mmdet3d lacks, mmregnet's eval model);
- ``reference+compile``: the same with its voxel encoder, scatter, backbone,
  neck and head under ``torch.compile`` (what a user would try first);
- ``deploy``: :func:`~mmregnet.deploy.switch_detector_to_deploy` in PyTorch;
- ``onnxruntime``: :class:`~mmregnet.deploy.OnnxDetector` on the exported
  graph, points to boxes (``onnxruntime-int8``: its int8 export).

Beside the race, the ONNX Runtime detector's cold start (:mod:`.cold_start`).
"""
import copy
import os
import tempfile
import time
from typing import Dict, List, Optional

import torch

from ..deploy.configs import load_detector_config
from ..deploy.detector_graph import switch_detector_to_deploy
from ..deploy.export import detector_graph, export_model
from ..deploy.runtime import OnnxDetector
from .backbone import BackboneCase, randomize_norms
from .cold_start import cold_start
from .detector import (anchor_scores, calibrate_boxes, detector_inputs, detector_pair, head_maps,
                       lidar_frame, load_points)
from .runs import race
from .stages import NMS, STAGES, onnx_stages, reference_nms, reference_stages
from .timing import num_threads, summarize, time_interleaved

COMPILED_PARTS = ('pts_voxel_encoder', 'pts_middle_encoder', 'pts_backbone', 'pts_neck',
                  'pts_bbox_head')


def prediction_error(expected: List, actual: List) -> float:
    """Largest relative difference of boxes and scores between two lists of samples.

    Each expected box is matched, best score first, with the closest unmatched
    actual box of its label: untrained heads give many anchors exactly equal
    scores (empty stretches of the canvas look alike), so the score order
    alone does not pair them. A different count, or a box without a partner
    of its label, gives ``inf``.
    """
    worst = 0.0
    for e, a in zip(expected, actual):
        e, a = e.pred_instances_3d, a.pred_instances_3d
        if len(e.scores_3d) != len(a.scores_3d):
            return float('inf')
        if len(e.scores_3d) == 0:
            continue
        boxes_e, boxes_a = e.bboxes_3d.tensor, a.bboxes_3d.tensor
        scale = boxes_e.abs().max().clamp_min(1e-12)
        free = torch.ones(len(a.scores_3d), dtype=torch.bool)
        for i in e.scores_3d.argsort(descending=True).tolist():
            box = (boxes_a - boxes_e[i]).abs().max(1).values / scale
            score = (a.scores_3d - e.scores_3d[i]).abs() / e.scores_3d[i].abs().clamp_min(1e-12)
            cost = torch.maximum(box, score)
            cost[~free | (a.labels_3d != e.labels_3d[i])] = float('inf')
            j = int(cost.argmin())
            if not torch.isfinite(cost[j]):
                return float('inf')
            free[j] = False
            worst = max(worst, float(cost[j]))
    return worst


def boxes_to_nms(model: torch.nn.Module, data: Dict) -> int:
    """How many anchors of the frame pass the score threshold, capped by ``nms_pre``."""
    head = model.pts_bbox_head
    cfg = head.test_cfg or {}
    thr, cap = float(cfg.get('score_thr', 0.0)), int(cfg.get('nms_pre', -1))
    logits = anchor_scores(head, head_maps(model, data)[0])
    scores = torch.cat([s.sigmoid().amax(1) for s in logits])
    passed = int((scores > thr).sum())
    return min(passed, cap) if cap > 0 else passed


def compiled_detector(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose network parts run under ``torch.compile`` (compiled lazily)."""
    compiled = copy.deepcopy(model)
    for name in COMPILED_PARTS:
        part = getattr(compiled, name, None)
        if part is not None:
            part.compile()
    return compiled


def run_detector(config: str, checkpoint: Optional[str] = None, num_points: int = 30000,
                 points_file: Optional[str] = None, load_dim: int = 5, reps: int = 5,
                 warmup: int = 1, threads: int = 0, boxes: int = 300, compile: bool = True,
                 seed: int = 0, int8: bool = True, cold_runs: int = 3) -> Dict:
    """Races the whole detector, its stages and its backbone (CPU).

    Args:
        config: A PointPillars config with mmregnet's RegNet as ``pts_backbone``.
        checkpoint: Trained weights; without, seeded random ones with random
            BatchNorm statistics and a class bias that passes ``boxes`` anchors.
        num_points: Points of the generated frame (:func:`~.detector.lidar_frame`).
        points_file: A real ``.bin`` point cloud instead.
        load_dim: Values per point stored in ``points_file``.
        reps: Timed rounds.
        warmup: Untimed rounds first (at least 1 with ``compile``: it compiles).
        threads: Torch threads (0: the default).
        boxes: Anchors passing the score threshold with random weights.
        compile: Race ``reference+compile`` too.
        seed: Seed of the weights and the frame.
        int8: Race ``onnxruntime-int8`` too: the export quantized to int8,
            calibrated on four other generated frames (its boxes differ).
        cold_runs: Fresh interpreters timing the ONNX Runtime detector's cold
            start (0: none).

    Returns:
        ``detector`` (the race, with each contender's ``rel_error`` of boxes
        and scores against the reference), ``stages`` (median ms per stage for
        the reference and ONNX Runtime), ``backbone_only`` (a race on the
        frame's pseudo image), ``cold_start`` (:func:`~.cold_start.cold_start`,
        None without ``cold_runs``) and the setting: points, pillars, boxes to NMS.
    """
    cfg = load_detector_config(config)
    with num_threads(threads), torch.no_grad():
        ours, ref = detector_pair(cfg, checkpoint, seed=seed)
        points = (load_points(points_file, cfg, load_dim) if points_file
                  else lidar_frame(cfg, num_points, seed))
        data = detector_inputs([points])
        if checkpoint is None:
            randomize_norms(ours, seed)
            calibrate_boxes(ours, data, boxes)
            ref.load_state_dict(ours.state_dict())
        deployed = switch_detector_to_deploy(copy.deepcopy(ours))
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, 'onnx')
            export_model(ours, cfg, folder, config_path=config, checkpoint=checkpoint)
            det = OnnxDetector(folder, providers=['CPUExecutionProvider'])
            cloud = points.numpy()
            started = cold_start(folder, cloud, cold_runs) if cold_runs > 0 else None
            ours_stages, candidates = onnx_stages(detector_graph(deployed, cfg), points, tmp)
            fns = {'reference': lambda: ref.test_step(data),
                   'deploy': lambda: deployed.test_step(data),
                   'onnxruntime': lambda: det.detect(cloud)}
            samples = {'onnxruntime': lambda: det.predict([points])}
            if int8:
                # Calibrated on other scenes than the timed one, as a user's export would be.
                clouds = [lidar_frame(cfg, num_points, seed + k) for k in range(1, 5)]
                export_model(ours, cfg, os.path.join(tmp, 'int8'), config_path=config,
                             checkpoint=checkpoint, calibration=clouds,
                             calibration_source='generated frames')
                det8 = OnnxDetector(os.path.join(tmp, 'int8'),
                                    providers=['CPUExecutionProvider'])
                fns['onnxruntime-int8'] = lambda: det8.detect(cloud)
                samples['onnxruntime-int8'] = lambda: det8.predict([points])
        result = dict(config=config, checkpoint=checkpoint, threads=torch.get_num_threads(),
                      num_points=int(points.shape[0]), boxes_to_nms=boxes_to_nms(ref, data),
                      cold_start=started)
        ref_stages = reference_stages(ref, data)
        ref_stages[NMS] = reference_nms(ref.pts_bbox_head, candidates)
        pseudo_image = ref_stages['encoder+scatter']()
        result['pillars'] = int(ref.data_preprocessor(data, False)['inputs']['voxels']
                                ['coors'].shape[0])
        if compile:
            compiled = compiled_detector(ref)
            start = time.perf_counter()
            compiled.test_step(data)
            result['compile_s'] = time.perf_counter() - start
            fns['reference+compile'] = lambda: compiled.test_step(data)
        expected = ref.test_step(data)
        errors = {name: prediction_error(expected, samples.get(name, fn)())
                  for name, fn in fns.items()}
        result['detector'] = race(fns, 1, reps, warmup, 'cpu')
        for name, err in errors.items():
            result['detector'][name]['rel_error'] = err
        stage_fns = {f'{who}/{stage}': chain[stage] for who, chain in
                     (('reference', ref_stages), ('onnxruntime', ours_stages))
                     for stage in STAGES + (NMS,)}
        times = time_interleaved(stage_fns, reps, warmup)
        medians = {stage: {who: summarize(times[f'{who}/{stage}'])['median_ms']
                           for who in ('reference', 'onnxruntime')}
                   for stage in STAGES + (NMS,)}
        result['nms'] = medians.pop(NMS)
        result['stages'] = medians
        backbone = dict(cfg.model.pts_backbone)
        case = BackboneCase(backbone['arch'], tuple(pseudo_image.shape), with_stem=False)
        result['backbone'] = dict(arch=backbone['arch'], input_shape=list(pseudo_image.shape),
                                  flops=case.flops(), params=case.params())
        bb = dict(reference=lambda: ref.pts_backbone(pseudo_image),
                  deploy=lambda: deployed.pts_backbone(pseudo_image),
                  onnxruntime=ours_stages['backbone'])
        if compile:
            bb['reference+compile'] = lambda: compiled.pts_backbone(pseudo_image)
        result['backbone_only'] = race(bb, 1, reps, warmup, 'cpu', case.flops())
    return result
