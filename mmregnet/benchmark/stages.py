"""The detector cut into stages: voxelize, encoder+scatter, backbone, neck, head, decode+NMS.

Each stage is timed alone on the inputs the previous one produced, for the
eager reference (mmdet3d's modules) and for the ONNX Runtime detector, whose
network stages run as separate graphs exported from the same deployed modules
as the whole-detector graph. Voxelization and decoding are the same PyTorch
code in both (the ONNX detector's own preprocessor and head).
"""
import os
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn

from ..deploy.detector_graph import DetectorGraph, maps_from_outputs
from ..deploy.onnx_export import export_graph

STAGES = ('voxelize', 'encoder+scatter', 'backbone', 'neck', 'head', 'decode+NMS')
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


class _EncoderScatter(nn.Module):
    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.encoder, self.scatter = graph.encoder, graph.scatter

    def forward(self, voxels, num_points, coors, batch_size):
        return self.scatter(self.encoder(voxels, num_points, coors), coors, batch_size)


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


def _session(module: nn.Module, args: Tuple, folder: str, name: str, input_names: List[str],
             batch_axis_inputs: List[str] = ()):
    """An ONNX Runtime session of ``module`` exported into ``folder``, and its output names."""
    import onnxruntime as ort
    with torch.no_grad():
        outs = module(*args)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    out_names = [f'out{i}' for i in range(len(outs))]
    axes = {n: {0: 'batch'} for n in out_names + list(batch_axis_inputs)}
    if name == 'encoder+scatter':
        axes.update({n: {0: 'pillars'} for n in ('voxels', 'num_points', 'coors')})
    path = os.path.join(folder, name.replace('+', '_') + '.onnx')
    export_graph(module, args, path, input_names, out_names, axes)
    return ort.InferenceSession(path, providers=['CPUExecutionProvider']), outs


def onnx_stages(detector, deployed: nn.Module, data: Dict, folder: str) -> Dict[str, Stage]:
    """Closures running each stage of the ONNX detector, network stages as their own graphs.

    Args:
        detector: The :class:`~mmregnet.deploy.OnnxDetector` (voxelizer and decoder).
        deployed: The detector after ``switch_detector_to_deploy`` (what was exported).
        data: A ``test_step`` batch.
        folder: Where the stage graphs are written.

    Returns:
        Stage name to a no-argument callable.
    """
    graph = DetectorGraph(deployed)
    clouds = data['inputs']['points']
    with torch.no_grad():
        batch = detector.preprocessor(dict(inputs=dict(points=clouds),
                                           data_samples=data['data_samples']), False)
    v = batch['inputs']['voxels']
    metas = [s.metainfo for s in batch['data_samples']]
    pillars = (v['voxels'], v['num_points'].int(), v['coors'].int(), torch.tensor(len(clouds)))
    enc, (canvas,) = _session(_EncoderScatter(graph), pillars, folder, 'encoder+scatter',
                              ['voxels', 'num_points', 'coors', 'batch_size'])
    bb, feats = _session(graph.backbone, (canvas.contiguous(),), folder, 'backbone', ['x'], ['x'])
    feat_names = [f'x{i}' for i in range(len(feats))]
    neck, necked = _session(_Neck(graph.neck), tuple(feats), folder, 'neck', feat_names,
                            feat_names)
    necked_names = [f'x{i}' for i in range(len(necked))]
    head, maps = _session(_Head(graph), tuple(necked), folder, 'head', necked_names,
                          necked_names)
    pillar_feed = dict(zip(('voxels', 'num_points', 'coors', 'batch_size'),
                           (t.numpy() for t in pillars)))
    canvas_feed = dict(x=canvas.contiguous().numpy())
    feats_feed = dict(zip(feat_names, (f.contiguous().numpy() for f in feats)))
    necked_feed = dict(zip(necked_names, (f.contiguous().numpy() for f in necked)))
    split = maps_from_outputs(list(maps), graph.kinds)
    return {'voxelize': lambda: detector.preprocessor(
                dict(inputs=dict(points=clouds), data_samples=data['data_samples']), False),
            'encoder+scatter': lambda: enc.run(None, pillar_feed),
            'backbone': lambda: bb.run(None, canvas_feed),
            'neck': lambda: neck.run(None, feats_feed),
            'head': lambda: head.run(None, necked_feed),
            'decode+NMS': lambda: detector.head.predict_by_feat(*split,
                                                                batch_input_metas=metas)}
