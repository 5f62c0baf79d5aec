"""Running an exported PointPillars detector: points in, mmdet3d's boxes out, on ONNX Runtime.

The exported graph (``tools/deployment/export_detector.py``, format 3) holds
the whole detector, voxelization to NMS, so this module needs numpy and
onnxruntime only (``pip install "mmregnet[runtime]"``): no torch, mmcv,
mmengine or mmdet3d.

Example::

    import numpy as np
    from mmregnet.deploy import OnnxDetector
    det = OnnxDetector('work_dirs/onnx')          # a folder of export_detector.py
    points = np.fromfile('cloud.bin', np.float32).reshape(-1, 5)[:, :4]
    found = det.detect(points)                    # a Detections
    found.boxes, found.scores, found.names

A cloud's points must be finite: a point holding NaN or inf is refused (not
dropped), as it has no place in the voxel grid and most often means a broken
reader upstream.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DeployError
from .format import FORMAT, FORMAT_VERSION, GRAPH_FILE, INPUT_NAME, MANIFEST_FILE, OUTPUT_NAMES

_GPU_PROVIDERS = ('CUDAExecutionProvider',)
_GPU_HINT = 'CUDA and TensorRT need the onnxruntime-gpu package, a GPU and its libraries'
_INSTALL = 'pip install "mmregnet[runtime]"'
#: Graph metadata (key) that must equal a manifest field (value) when both are there.
_SAME_AS_MANIFEST = {'mmregnet_network': 'network', 'mmregnet_precision': 'precision',
                     'mmregnet_checkpoint_sha256': 'checkpoint_sha256'}


def _onnxruntime():
    """The onnxruntime module, or ImportError saying how to install it."""
    try:
        import onnxruntime  # lazy: the [runtime] extra, named in the error below
    except ImportError as e:
        raise ImportError(f'running an exported detector needs onnxruntime ({e}): {_INSTALL}') \
            from None
    return onnxruntime


@dataclasses.dataclass(frozen=True)
class Detections:
    """The boxes found in one point cloud, in mmdet3d's order (read-only arrays).

    mmdet3d lists the boxes class by class, best first within a class, or
    best first overall when more than the config's ``max_num`` survive NMS.

    Attributes:
        boxes: ``(M, box_dim)`` float32, mmdet3d's LiDAR boxes: the bottom
            centre ``x, y, z``, the sizes ``x_size, y_size, z_size``, the yaw
            (radians), then ``vx, vy`` where the detector predicts velocity.
        scores: ``(M,)`` float32.
        labels: ``(M,)`` int64 class indices.
        names: ``(M,)`` the class name of each box.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def to_records(self) -> List[Dict[str, Any]]:
        """One JSON-able dict per box: ``name``, ``label``, ``score``, ``box`` (a list)."""
        return [dict(name=str(n), label=int(lab), score=float(s), box=[float(v) for v in b])
                for n, lab, s, b in zip(self.names, self.labels, self.scores, self.boxes)]


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
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT \
            or manifest.get('version') != FORMAT_VERSION:
        got = manifest if not isinstance(manifest, dict) else manifest.get('format')
        version = manifest.get('version') if isinstance(manifest, dict) else None
        again = '; export the detector again with this mmregnet' if got == FORMAT else ''
        raise DeployError(f'{path}: expected format {FORMAT!r} version {FORMAT_VERSION}, got '
                          f'{got!r} version {version!r}{again}')
    missing = [k for k in ('class_names', 'point_dims', 'box_dim') if k not in manifest]
    if missing:
        raise DeployError(f'{path} lacks {", ".join(missing)}; export the detector again')
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
    ort = _onnxruntime()
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


def session_options():
    """ONNX Runtime settings for the detector graph on a CPU.

    Threads do not spin after a run: a frame is one run, and a caller's own
    work between frames (reading the next cloud) gets the cores (faster on the
    whole graph than ONNX Runtime's default). Work stays split into fixed
    shares: blocks taken on demand (``dynamic_block_base``) were faster on a
    busy machine, but they sum floats in a different order from run to run,
    and a box near a threshold then comes and goes between runs of one frame.
    """
    options = _onnxruntime().SessionOptions()
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return options


class OnnxDetector:
    """An exported PointPillars detector on ONNX Runtime.

    Args:
        folder: A folder written by ``tools/deployment/export_detector.py``.
        providers: ONNX Runtime providers (see :func:`resolve_providers`).

    Raises:
        DeployError: Not an export folder of this format, a graph that is not
            the one the manifest describes, or a missing provider.
        ImportError: Without onnxruntime.
    """

    def __init__(self, folder: str, providers: Optional[Sequence[Any]] = None) -> None:
        ort = _onnxruntime()
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.providers = resolve_providers(providers)
        graph = os.path.join(folder, GRAPH_FILE)
        try:
            self.session = ort.InferenceSession(graph, sess_options=session_options(),
                                                providers=self.providers)
        except Exception as e:  # onnxruntime raises its own types for a damaged file
            raise DeployError(f'{graph}: ONNX Runtime cannot load it ({str(e)[:200]}); '
                              'export the detector again') from None
        meta = self.session.get_modelmeta().custom_metadata_map
        for key, field in _SAME_AS_MANIFEST.items():
            if key in meta and field in self.manifest and meta[key] != str(self.manifest[field]):
                raise DeployError(
                    f'{graph} was exported from config {meta.get("mmregnet_config", "unknown")} '
                    f'({field} {meta[key]}), but {MANIFEST_FILE} describes '
                    f'{self.manifest.get("config_name")} ({field} {self.manifest[field]}); '
                    'export the detector again')
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
            raise DeployError(f'{graph} takes {inputs} and gives {outputs}; expected '
                              f'[{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}: export the detector '
                              'again')
        self.point_dims = int(self.manifest['point_dims'])
        self.box_dim = int(self.manifest['box_dim'])
        self.class_names: Tuple[str, ...] = tuple(self.manifest['class_names'])

    @property
    def precision(self) -> str:
        """``'float32'``, or ``'int8'`` for a graph quantized at export."""
        return self.manifest.get('precision', 'float32')

    @property
    def network(self) -> str:
        """The fingerprint of the exported network (:func:`~.configs.network_fingerprint`)."""
        return self.manifest['network']

    def cloud(self, points: Any, index: int = 0) -> np.ndarray:
        """One point cloud checked: ``(N, C)`` float32, finite, C as exported.

        Args:
            points: A numpy array (a torch tensor is read into one).
            index: Its place in a list, for messages.

        Raises:
            DeployError: Another type, shape or dtype, or a point with NaN or inf.
        """
        what = f'point cloud {index}'
        if type(points).__module__.split('.')[0] == 'torch' and hasattr(points, 'numpy'):
            points = points.detach().cpu().numpy()
        if not isinstance(points, np.ndarray):
            raise DeployError(f'{what}: expected an (N, {self.point_dims}) float32 numpy array, '
                              f'got {type(points).__name__}')
        if points.ndim != 2 or points.shape[1] != self.point_dims:
            raise DeployError(f'{what}: expected shape (N, {self.point_dims}) (x, y, z and '
                              f'{self.point_dims - 3} more values per point, as the config\'s '
                              f'voxel encoder reads), got {points.shape}')
        if points.dtype != np.float32:
            raise DeployError(f'{what}: expected float32 values, got {points.dtype} '
                              '(convert with points.astype(np.float32))')
        bad = ~np.isfinite(points).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)[:3].tolist()
            raise DeployError(f'{what}: {int(bad.sum())} points hold NaN or inf (rows {rows}...); '
                              'expected finite values: drop those points first')
        return np.ascontiguousarray(points)

    def run(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph's ``(boxes, scores, labels)`` for a checked cloud (:meth:`cloud`)."""
        boxes, scores, labels = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: points})
        return boxes, scores, labels

    def detect(self, points: Union[np.ndarray, Sequence[np.ndarray]]
               ) -> Union[Detections, List[Detections]]:
        """Detects boxes in one point cloud (a :class:`Detections` back) or a list (a list back).

        Args:
            points: An ``(N, C)`` float32 array of finite values (N may be 0), or a list.

        Raises:
            DeployError: A cloud of another shape, dtype or with NaN/inf (see :meth:`cloud`).
        """
        if isinstance(points, (list, tuple)):
            clouds = [self.cloud(p, i) for i, p in enumerate(points)]
            return [self._detections(*self.run(c)) for c in clouds]
        return self._detections(*self.run(self.cloud(points)))

    def _detections(self, boxes: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray) -> Detections:
        names = np.array(self.class_names, dtype=str)[labels] if len(labels) \
            else np.zeros(0, dtype=str)
        for a in (boxes, scores, labels, names):
            a.setflags(write=False)
        return Detections(boxes, scores, labels, names)

    def predict(self, clouds: Sequence[Any], data_samples: Optional[list] = None) -> list:
        """Detects boxes in a batch of clouds as mmdet3d's ``Det3DDataSample`` (needs mmdet3d).

        Args:
            clouds: ``(N_i, C)`` float32 arrays or tensors, one per sample.
            data_samples: ``Det3DDataSample``s carrying each sample's metainfo
                (a dataset's, for evaluation); new ones when None.

        Returns:
            The data samples with ``pred_instances_3d`` (``bboxes_3d`` of the
            metainfo's ``box_type_3d``, LiDAR by default; ``scores_3d``,
            ``labels_3d``) and an empty ``pred_instances``.
        """
        try:  # the training stack, only for its result type
            import torch  # lazy: the training stack is optional here
            from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes  # lazy: as above
            from mmengine.structures import InstanceData  # lazy: as above
        except ImportError as e:
            raise ImportError(f'Det3DDataSample results need mmdet3d ({e}): pip install '
                              '"mmregnet[3d]", or call detect() for numpy arrays') from None
        if not clouds:
            raise DeployError('expected at least one point cloud, got an empty list')
        arrays = [self.cloud(c, i) for i, c in enumerate(clouds)]
        if data_samples is None:
            data_samples = [Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes))
                            for _ in arrays]
        for sample, points in zip(data_samples, arrays):
            boxes, scores, labels = self.run(points)
            box_type = sample.metainfo.get('box_type_3d', LiDARInstance3DBoxes)
            result = InstanceData()
            result.bboxes_3d = box_type(torch.from_numpy(boxes), box_dim=self.box_dim)
            result.scores_3d = torch.from_numpy(scores)
            result.labels_3d = torch.from_numpy(labels)
            sample.pred_instances_3d = result
            sample.pred_instances = InstanceData()
        return list(data_samples)

    def __call__(self, points: Any):
        """mmdet3d's result for one cloud (a ``Det3DDataSample``) or a list (a list back)."""
        if isinstance(points, (list, tuple)):
            return self.predict(points)
        return self.predict([points])[0]
