"""The detector cut into stages: voxelize, encoder+scatter, backbone, neck, head, decode+NMS.

Each stage is timed alone on the inputs the previous one produced, for the
eager reference (mmdet3d's modules: mmcv's voxelization, the head's
``predict_by_feat``) and for the one ONNX graph, whose stages run as graphs of
their own exported from the same modules as the whole graph. NMS, part of
decode+NMS, is also timed alone: mmdet3d's ``box3d_multiclass_nms`` and the
graph's on the same candidate boxes.
"""
import os
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn as nn

from ..deploy.detector_graph import DetectorGraph
from ..deploy.onnx_export import export_graph

STAGES = ('voxelize', 'encoder+scatter', 'backbone', 'neck', 'head', 'decode+NMS')
#: Timed alone besides, within decode+NMS.
NMS = 'NMS'

Stage = Callable[[], object]


def reference_stages(model: nn.Module, data: Dict) -> Dict[str, Stage]:
    """Closures running each stage of an eager mmdet3d detector on precomputed inputs.

    Args:
        model: An eval-mode MVX/PointPillars detector.
        data: A ``test_step`` batch.

    Returns:
        Stage name to a no-argument callable.
    """
    with torch.no_grad():
        batch = model.data_preprocessor(data, False)
        v = batch['inputs']['voxels']
        metas = [s.metainfo for s in batch['data_samples']]
        size = int(v['coors'][-1, 0]) + 1

        def encode():
            feats = model.pts_voxel_encoder(v['voxels'], v['num_points'], v['coors'], None, metas)
            return model.pts_middle_encoder(feats, v['coors'], size)
        x = encode()
        feats = model.pts_backbone(x)
        necked = model.pts_neck(feats)
        maps = model.pts_bbox_head(necked)
    head = model.pts_bbox_head
    return {'voxelize': lambda: model.data_preprocessor(data, False),
            'encoder+scatter': encode,
            'backbone': lambda: model.pts_backbone(x),
            'neck': lambda: model.pts_neck(feats),
            'head': lambda: head(necked),
            'decode+NMS': lambda: head.predict_by_feat(*maps, batch_input_metas=metas)}


class _Voxelizer(nn.Module):
    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.voxelizer = graph.voxelizer

    def forward(self, points):
        return tuple(self.voxelizer(points))


class _EncoderScatter(nn.Module):
    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.encoder, self.scatter = graph.encoder, graph.scatter
        self.max_points = graph.voxelizer.layout.max_points

    def forward(self, rows, voxel, slot, num_points, coors):
        feats = self.encoder(rows, num_points, coors, point_voxel=voxel, point_slot=slot,
                             max_points=self.max_points)
        return self.scatter(feats, coors, 1)


class _Neck(nn.Module):
    def __init__(self, neck: nn.Module) -> None:
        super().__init__()
        self.neck = neck

    def forward(self, *feats):
        return tuple(self.neck(list(feats)))


class _Head(nn.Module):
    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, *feats):
        return self.graph.head_outputs(list(feats))


class _Select(nn.Module):
    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.decoder = graph.decoder

    def forward(self, *candidates):
        return self.decoder.select(*candidates)


def _session(module: nn.Module, args: Tuple, folder: str, name: str,
             dynamic: Dict[str, Dict[int, str]]) -> Tuple[Stage, Tuple]:
    """A closure running ``module`` exported into ``folder`` on ``args``, and its outputs."""
    import onnxruntime as ort  # lazy: the [runtime] extra, for the ONNX stages only
    with torch.no_grad():
        outs = module(*args)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    in_names = [f'in{i}' for i in range(len(args))]
    out_names = [f'out{i}' for i in range(len(outs))]
    axes = {n: dict(dynamic.get(n, {})) for n in in_names + out_names}
    axes.update({n: {0: 'rows'} for n in out_names if n not in dynamic})
    path = os.path.join(folder, name.replace('+', '_') + '.onnx')
    export_graph(module, args, path, in_names, out_names, axes)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    feed = {n: a.contiguous().numpy() for n, a in zip(in_names, args)}
    return (lambda: session.run(None, feed)), tuple(outs)


def onnx_stages(graph: DetectorGraph, points: torch.Tensor,
                folder: str) -> Tuple[Dict[str, Stage], Tuple[torch.Tensor, ...]]:
    """Closures running each stage of the one graph on ONNX Runtime, as graphs of their own.

    Args:
        graph: The exported detector's graph (:func:`~mmregnet.deploy.export.detector_graph`).
        points: The frame, ``(N, C)``.
        folder: Where the stage graphs are written.

    Returns:
        Stage name to a no-argument callable (with :data:`NMS`), and the
        candidates of NMS (:meth:`~mmregnet.deploy.box_decoding.BoxDecoder.candidates`).
    """
    rows = {0: 'rows'}
    voxelize, (point, voxel, slot, num_points, coors, _) = _session(
        _Voxelizer(graph), (points,), folder, 'voxelize', dict(in0={0: 'points'}))
    pillars = (points.index_select(0, point), voxel, slot, num_points,
               nn.functional.pad(coors, (1, 0)))
    encode, (canvas,) = _session(_EncoderScatter(graph), pillars, folder, 'encoder+scatter',
                                 dict(in0=rows, in1=rows, in2=rows, in3=rows, in4=rows,
                                      out0={}))
    backbone, feats = _session(graph.backbone, (canvas,), folder, 'backbone', {})
    neck, necked = _session(_Neck(graph.neck), tuple(feats), folder, 'neck', {})
    head, maps = _session(_Head(graph), tuple(necked), folder, 'head', {})
    decode, _ = _session(graph.decoder, tuple(maps), folder, 'decode+NMS', {})
    with torch.no_grad():
        candidates = graph.decoder.candidates(*maps)
    nms, _ = _session(_Select(graph), candidates, folder, NMS,
                      {f'in{i}': rows for i in range(len(candidates))})
    return {'voxelize': voxelize, 'encoder+scatter': encode, 'backbone': backbone,
            'neck': neck, 'head': head, 'decode+NMS': decode, NMS: nms}, candidates


def reference_nms(head: nn.Module, candidates: Sequence[torch.Tensor]) -> Stage:
    """mmdet3d's NMS (``box3d_multiclass_nms``, as the head's ``predict_by_feat`` calls it).

    Args:
        head: The reference detector's head (its ``test_cfg``).
        candidates: ``(boxes, bev, scores, dirs)`` from :func:`onnx_stages`.
    """
    from mmdet3d.models.layers import box3d_multiclass_nms  # lazy: the [3d] extra
    boxes, bev, scores, dirs = candidates
    scores = torch.cat([scores, scores.new_zeros(len(scores), 1)], 1)  # the background column
    cfg = head.test_cfg
    return lambda: box3d_multiclass_nms(boxes, bev, scores, cfg.get('score_thr', 0),
                                        cfg.max_num, cfg, dirs)
