"""The split deployment, raced against the one graph: ONNX Runtime for the network only.

mmcv's voxelization (the detector's ``data_preprocessor``) before the graph,
and the head's own box decoding + NMS (``predict_by_feat``) after it, both in
PyTorch, as mmdeploy deploys PointPillars; the graph is
:meth:`~mmregnet.deploy.detector_graph.DetectorGraph.pillar_maps` (pillars in,
the head's maps out). It is what ``tools/deployment/export_detector.py``
wrote before the whole detector became one graph.
"""
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..deploy.detector_graph import DetectorGraph, maps_from_outputs
from ..deploy.onnx_export import export_graph

#: The network graph's inputs: the voxelizer's output and the number of samples.
PILLAR_INPUTS = ('voxels', 'num_points', 'coors', 'batch_size')


class _PillarMaps(nn.Module):
    def __init__(self, graph: DetectorGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, voxels, num_points, coors, batch_size):
        return self.graph.pillar_maps(voxels, num_points, coors, batch_size)


def pillar_feeds(voxels: Dict[str, torch.Tensor], batch_size: int) -> Dict[str, np.ndarray]:
    """The network graph's inputs for a voxelizer output dict of ``batch_size`` samples."""
    return dict(voxels=voxels['voxels'].numpy(),
                num_points=voxels['num_points'].to(torch.int32).numpy(),
                coors=voxels['coors'].to(torch.int32).numpy(),
                batch_size=np.array(batch_size, dtype=np.int64))


class SplitDetector:
    """A deployed detector (:func:`~mmregnet.deploy.switch_detector_to_deploy`) split in three.

    Args:
        deployed: The deployed mmdet3d detector; its voxelizer and head are
            used as they are.
        example: ``(voxels, num_points, coors)`` of one sample, for tracing.
        folder: Where the network graph is written.
    """

    def __init__(self, deployed: nn.Module, example: Sequence[torch.Tensor],
                 folder: str) -> None:
        import onnxruntime as ort  # lazy: the [runtime] extra, for this contender only
        graph = DetectorGraph(deployed)
        self.kinds = graph.kinds
        args = (*example, torch.tensor(1))
        with torch.no_grad():
            levels = len(graph.pillar_maps(*args)) // len(self.kinds)
        names = graph.output_names(levels)
        pillars = {0: 'pillars'}
        axes = dict(voxels=pillars, num_points=pillars, coors=pillars,
                    **{name: {0: 'batch'} for name in names})
        path = os.path.join(folder, 'network.onnx')
        export_graph(_PillarMaps(graph), args, path, PILLAR_INPUTS, names, axes)
        options = ort.SessionOptions()
        # Voxelization and NMS run in PyTorch between graph runs: threads spinning on
        # after a run would hold the cores those steps need.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.add_session_config_entry('session.intra_op.dynamic_block_base', '4')
        self.session = ort.InferenceSession(path, sess_options=options,
                                            providers=['CPUExecutionProvider'])
        self.preprocessor = deployed.data_preprocessor
        self.head = deployed.pts_bbox_head

    def network(self, voxels: Dict[str, torch.Tensor], batch_size: int) -> List[List]:
        """The head's maps, kind by kind, for a voxelizer output dict."""
        outputs = self.session.run(None, pillar_feeds(voxels, batch_size))
        return maps_from_outputs([torch.from_numpy(o) for o in outputs], self.kinds)

    def predict(self, data: Dict) -> list:
        """``test_step`` on a batch: the data samples with ``pred_instances_3d``."""
        with torch.no_grad():
            batch = self.preprocessor(data, False)
            maps = self.network(batch['inputs']['voxels'], len(batch['data_samples']))
            metas = [s.metainfo for s in batch['data_samples']]
            results = self.head.predict_by_feat(*maps, batch_input_metas=metas)
        for sample, result in zip(batch['data_samples'], results):
            sample.pred_instances_3d = result
        return batch['data_samples']
