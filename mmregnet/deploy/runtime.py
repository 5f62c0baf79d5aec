"""Running an exported PointPillars detector on ONNX Runtime: points in, mmdet3d's boxes out.

Voxelization is the config's own ``Det3DDataPreprocessor`` (mmcv's op) and box
decoding + NMS the config's own head's ``predict_by_feat``, both in PyTorch,
so the boxes are mmdet3d's; the network between them is the ONNX graph.

Example::

    from mmregnet.deploy import OnnxDetector
    det = OnnxDetector('work_dirs/onnx')          # a folder of export_detector.py
    sample = det(points)                          # (N, C) float32 tensor or array
    sample.pred_instances_3d.bboxes_3d            # LiDARInstance3DBoxes
"""
import copy
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .errors import DeployError
from .export import FORMAT, FORMAT_VERSION, GRAPH_FILE, MANIFEST_FILE

Points = Union[torch.Tensor, np.ndarray]
_GPU_PROVIDERS = ('CUDAExecutionProvider',)
_GPU_HINT = 'CUDA and TensorRT need the onnxruntime-gpu package, a GPU and its libraries'


def read_manifest(folder: str) -> Dict[str, Any]:
    """The ``detector.json`` of an export folder, checked for format and graph file.

    Raises:
        DeployError: Not an export folder, or one of another format version.
    """
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isdir(folder):
        raise DeployError(f'exported detector {folder}: no such folder')
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DeployError(f'exported detector {folder}: cannot read {MANIFEST_FILE} ({e}); '
                          'expected a folder written by tools/deployment/export_detector.py') \
            from None
    if manifest.get('format') != FORMAT or manifest.get('version') != FORMAT_VERSION:
        again = ('; export the detector again with this mmregnet'
                 if manifest.get('format') == FORMAT else '')
        raise DeployError(f'{path}: expected format {FORMAT!r} version {FORMAT_VERSION}, got '
                          f"{manifest.get('format')!r} version {manifest.get('version')!r}{again}")
    if not os.path.isfile(os.path.join(folder, GRAPH_FILE)):
        raise DeployError(f'exported detector {folder}: {GRAPH_FILE} is missing')
    return manifest


def resolve_providers(requested: Optional[Sequence[Any]] = None) -> List[Any]:
    """The ONNX Runtime execution providers to use.

    Args:
        requested: Provider names (or ``(name, options)`` pairs) in order of
            preference; None picks CUDA where onnxruntime-gpu sees a GPU, then
            the CPU. TensorRT is used only when asked for (building its engine
            takes minutes on the first run).

    Returns:
        The list for ``InferenceSession``.

    Raises:
        DeployError: A requested provider is not in this onnxruntime build.
    """
    import onnxruntime as ort
    available = ort.get_available_providers()
    if requested is None:
        return [p for p in _GPU_PROVIDERS if p in available] + ['CPUExecutionProvider']
    requested = list(requested)
    if not requested:
        raise DeployError(f'providers is empty; expected names among {available}')
    for entry in requested:
        name = entry if isinstance(entry, str) else entry[0]
        if name not in available:
            raise DeployError(f'ONNX Runtime provider {name!r} is not available in this '
                              f'onnxruntime {ort.__version__} (available: {", ".join(available)})'
                              f'; {_GPU_HINT}')
    return requested


class OnnxDetector:
    """An exported PointPillars detector on ONNX Runtime.

    Args:
        folder: A folder written by ``tools/deployment/export_detector.py``.
        providers: ONNX Runtime providers (see :func:`resolve_providers`).
        decoder: Box decoding settings replacing the export's (the config's
            ``model.test_cfg.pts``: ``nms_pre``, ``score_thr``, ``max_num``...).

    Raises:
        DeployError: Not an export folder, a graph that is not the one the
            manifest describes, or a missing provider.
    """

    def __init__(self, folder: str, providers: Optional[Sequence[Any]] = None,
                 decoder: Optional[Dict[str, Any]] = None) -> None:
        import onnxruntime as ort
        from mmdet3d.registry import MODELS

        from .configs import config_from_text
        from ..convert.safe_io import file_sha256
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.providers = resolve_providers(providers)
        graph = os.path.join(folder, GRAPH_FILE)
        options = ort.SessionOptions()
        # Voxelization and NMS run in PyTorch between graph runs; ONNX Runtime's threads
        # spinning on after a run would hold the cores that those steps need.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        # Work split into small blocks taken on demand keeps both threads busy when one of
        # them is held up, instead of one waiting on the other's fixed share.
        options.add_session_config_entry('session.intra_op.dynamic_block_base', '4')
        self.session = ort.InferenceSession(graph, sess_options=options,
                                            providers=self.providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get('mmregnet_network') != self.manifest['network']:
            raise DeployError(
                f'{graph} was exported from config {meta.get("mmregnet_config", "unknown")} '
                f'(network {meta.get("mmregnet_network", "unknown")}), but {MANIFEST_FILE} '
                f"describes {self.manifest['config_name']} (network {self.manifest['network']}); "
                'export the detector again')
        if file_sha256(graph) != self.manifest.get('graph_sha256'):
            raise DeployError(f'{graph} is not the graph {MANIFEST_FILE} was written with '
                              '(sha256 differs: other weights); export the detector again')
        self.cfg = config_from_text(self.manifest['config'], os.path.join(folder, MANIFEST_FILE))
        model = self.cfg.model
        self.preprocessor = MODELS.build(model.data_preprocessor)
        head = copy.deepcopy(model.pts_bbox_head)
        head.update(train_cfg=None, test_cfg=decoder if decoder is not None
                    else (model.get('test_cfg') or {}).get('pts'))
        self.head = MODELS.build(head).eval()
        if hasattr(self.head, 'prior_generator'):
            from .detector_graph import ReusedAnchors
            self.head.prior_generator = ReusedAnchors(self.head.prior_generator)
        for name, sizes in self.manifest.get('head_state', {}).items():
            setattr(self.head, name, [tuple(size) for size in sizes])
        self.point_dims = int(self.manifest['point_dims'])
        self.class_names = list(self.manifest['class_names'])
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def precision(self) -> str:
        """``'float32'``, or ``'int8'`` for a graph quantized at export."""
        return self.manifest.get('precision', 'float32')

    @property
    def network(self) -> str:
        """The fingerprint of the exported network (:func:`~.configs.network_fingerprint`)."""
        return self.manifest['network']

    def check_config(self, cfg, source: str) -> None:
        """Refuses a config whose network is not the exported one.

        Args:
            cfg: A detector config.
            source: Its file, for the message.

        Raises:
            DeployError: The networks differ.
        """
        from .configs import network_fingerprint
        theirs = network_fingerprint(cfg)
        if theirs != self.network:
            raise DeployError(
                f'{self.folder} holds the graph of {self.manifest["config_name"]} (network '
                f'{self.network}), not of config {source} (network {theirs}); export {source}')

    def _cloud(self, points: Points, index: int) -> torch.Tensor:
        """One point cloud as a CPU float32 tensor, checked."""
        what = f'point cloud {index}'
        if isinstance(points, np.ndarray):
            points = torch.from_numpy(points)
        if not isinstance(points, torch.Tensor):
            raise DeployError(f'{what}: expected an (N, {self.point_dims}) float32 tensor or '
                              f'array, got {type(points).__name__}')
        if points.dim() != 2 or points.shape[1] != self.point_dims:
            raise DeployError(f'{what}: expected shape (N, {self.point_dims}) (x, y, z and '
                              f'{self.point_dims - 3} more values per point, as the config\'s '
                              f'voxel encoder reads), got {tuple(points.shape)}')
        if points.shape[0] == 0:
            raise DeployError(f'{what} is empty: expected at least one point')
        if not points.is_floating_point():
            raise DeployError(f'{what}: expected float32 values, got {points.dtype}')
        points = points.detach().to('cpu', torch.float32).contiguous()
        bad = ~torch.isfinite(points).all(dim=1)
        if bad.any():
            rows = bad.nonzero().view(-1)[:3].tolist()
            raise DeployError(f'{what}: {int(bad.sum())} points hold NaN or inf (rows {rows}...); '
                              'expected finite values')
        return points

    def run_graph(self, voxels: Dict[str, torch.Tensor], batch_size: int) -> List[torch.Tensor]:
        """The graph's flat outputs for a voxelizer output dict."""
        from .detector_graph import graph_feeds
        feeds = graph_feeds(voxels, batch_size)
        return [torch.from_numpy(o) for o in self.session.run(self.output_names, feeds)]

    def predict(self, clouds: Sequence[Points], data_samples: Optional[list] = None) -> list:
        """Detects boxes in a batch of point clouds.

        Args:
            clouds: ``(N_i, C)`` float32 tensors or arrays, one per sample.
            data_samples: ``Det3DDataSample``s carrying each sample's metainfo
                (a dataset's, for evaluation); new ones when None.

        Returns:
            The data samples with ``pred_instances_3d`` (``bboxes_3d``,
            ``scores_3d``, ``labels_3d``) and an empty ``pred_instances``.
        """
        from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
        from mmengine.structures import InstanceData

        from .detector_graph import maps_from_outputs
        if not clouds:
            raise DeployError('expected at least one point cloud, got an empty list')
        clouds = [self._cloud(c, i) for i, c in enumerate(clouds)]
        if data_samples is None:
            data_samples = [Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes))
                            for _ in clouds]
        with torch.no_grad():
            data = self.preprocessor(dict(inputs=dict(points=clouds),
                                          data_samples=data_samples), False)
            outputs = self.run_graph(data['inputs']['voxels'], len(clouds))
            maps = maps_from_outputs(outputs, self.manifest['output_kinds'])
            metas = [s.metainfo for s in data['data_samples']]
            results = self.head.predict_by_feat(*maps, batch_input_metas=metas)
        for sample, result in zip(data['data_samples'], results):
            sample.pred_instances_3d = result
            sample.pred_instances = InstanceData()
        return data['data_samples']

    def __call__(self, points: Union[Points, Sequence[Points]]):
        """Detects boxes in one point cloud (one sample back) or a list (a list back).

        Args:
            points: An ``(N, C)`` float32 tensor or array, or a list of them.

        Returns:
            mmdet3d's ``Det3DDataSample`` with ``pred_instances_3d``, or a list.
        """
        if isinstance(points, (list, tuple)):
            return self.predict(points)
        return self.predict([points])[0]
