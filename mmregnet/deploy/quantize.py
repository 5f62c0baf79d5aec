"""An int8 detector graph: ONNX Runtime's static quantization, calibrated on point clouds.

The backbone's and the neck's convolutions, with their ReLUs, additions and
upsamplings, run in int8 (per-channel weights, activation ranges taken from
the calibration clouds); the voxelizer, pillar encoder and scatter, whose
inputs are raw coordinates, the head's output convolutions, whose outputs are
the boxes, and the box decoder stay in float32. ONNX Runtime's quantizer does
the work (``onnxruntime.quantization``); this module picks what to quantize and
feeds it the clouds.

The int8 detector does not give the float32 detector's boxes: evaluate it with
``tools/test.py CONFIG FOLDER --backend onnxruntime`` on the data it will see.
"""
import copy
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from mmdet3d.registry import DATASETS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .errors import DeployError
from .format import INPUT_NAME

#: Operator types ONNX Runtime's quantizer may turn into int8 ones (inside the parts quantized).
QUANTIZED_OPS = ('Conv', 'Relu', 'Add', 'Resize', 'Concat')
#: Graph parts quantized, by node-name prefix (the attributes of ``DetectorGraph``).
QUANTIZED_PARTS = ('/backbone/', '/neck/')


def calibration_feeds(clouds: Sequence[torch.Tensor]) -> Iterator[Dict[str, np.ndarray]]:
    """The graph's input for each of ``clouds`` (``(N, C)`` float32 point clouds)."""
    for cloud in clouds:
        yield {INPUT_NAME: np.ascontiguousarray(cloud.detach().cpu().numpy(), np.float32)}


def dataset_clouds(cfg: Config, frames: int, split: str = 'train') -> List[torch.Tensor]:
    """``frames`` point clouds spread over a split of the config's dataset, unaugmented.

    The split's dataset is read with the config's test pipeline (no flips,
    rotations or point dropping), so the clouds are what the detector sees
    when it is deployed.

    Args:
        cfg: The detector config.
        frames: How many clouds.
        split: ``'train'`` or ``'val'`` (the config's dataloader of that name).

    Raises:
        DeployError: The split cannot be read (its files are missing) or is
            smaller than ``frames``.
    """
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        raise DeployError(f'the config has no {split}_dataloader to calibrate on')
    dataset = copy.deepcopy(loader.dataset)
    while 'dataset' in dataset:  # CBGS and repeat wrappers
        dataset = dataset['dataset']
    dataset.update(pipeline=copy.deepcopy(cfg.test_dataloader.dataset.pipeline), test_mode=True)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    try:
        built = DATASETS.build(dataset)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DeployError(f"cannot read the {split} split to calibrate on "
                          f"({dataset.get('data_root', '')}{dataset.get('ann_file', '')}): "
                          f'{type(e).__name__}: {e}') from None
    if len(built) < frames:
        raise DeployError(f'the {split} split has {len(built)} samples, fewer than the '
                          f'{frames} calibration frames asked for')
    picks = np.linspace(0, len(built) - 1, frames).round().astype(int)
    return [built[int(i)]['inputs']['points'] for i in picks]


def float_nodes(path: str) -> List[str]:
    """Names of the nodes of the graph at ``path`` left float32 (not in :data:`QUANTIZED_PARTS`)."""
    import onnx  # lazy: the [deploy] extra (require_onnx names it)
    graph = onnx.load(path, load_external_data=False).graph
    return [n.name for n in graph.node if not n.name.startswith(QUANTIZED_PARTS)]


def quantize_graph(src: str, dst: str, feeds: Iterable[Dict], scratch: str) -> None:
    """Writes the int8 version of the float32 detector graph ``src`` to ``dst``.

    Args:
        src: A float32 ``detector.onnx``.
        dst: The int8 graph to write.
        feeds: Calibration inputs (:func:`calibration_feeds`), at least one.
        scratch: A folder for the quantizer's intermediate files (left for the
            caller to remove).

    Raises:
        DeployError: No calibration input.
    """
    from onnxruntime.quantization import (  # lazy: onnxruntime, the [runtime] extra
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: as above
    feeds = list(feeds)
    if not feeds:
        raise DeployError('int8 calibration needs at least one point cloud')

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(feeds)

        def get_next(self) -> Optional[Dict]:
            return next(self.left, None)

    prepared = os.path.join(scratch, 'prepared.onnx')
    quant_pre_process(src, prepared, skip_symbolic_shape=True)
    quantize_static(prepared, dst, Frames(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=list(QUANTIZED_OPS),
                    nodes_to_exclude=float_nodes(prepared),
                    calibrate_method=CalibrationMethod.MinMax)
