"""Exporting a PointPillars detector to an ONNX folder: ``detector.onnx`` + ``detector.json``.

The folder is written whole or not at all (:func:`mmregnet.fileio.atomic_folder`).
``detector.json`` holds what the runtime needs beside the graph: the config as
text (for the voxelizer and the head's box decoding), the class names, the
voxelizer and decoder settings for the reader, the source checkpoint's sha256
and the graph's own sha256 and network fingerprint, by which a graph from
another export is recognised.
"""
import json
import os
import shutil
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.config import Config

from ..convert.safe_io import file_sha256
from ..fileio import atomic_folder
from .onnx_export import OPSET, export_graph, require_onnx
from .configs import (class_names, config_text, load_detector_config, network_fingerprint,
                      point_dims)
from .detector_graph import INPUT_NAMES, DetectorGraph
from .errors import DeployError
from .weights import load_weights, read_checkpoint

GRAPH_FILE = 'detector.onnx'
MANIFEST_FILE = 'detector.json'
FORMAT = 'mmregnet-onnx-detector'
FORMAT_VERSION = 2
#: How the graph lays out the head's 4-D maps (3-D ones, SSN's, are ``(B, anchors, C)``).
OUTPUT_LAYOUT = 'BHWC'


def example_pillars(cfg: Config, num_pillars: int = 24, seed: int = 0) -> tuple:
    """Graph inputs for tracing: pillars of one sample with 1 to ``M`` points each.

    Args:
        cfg: The detector config (points per pillar, values per point, grid).
        num_pillars: How many pillars.
        seed: Seed of the values.

    Returns:
        ``(voxels, num_points, coors, batch_size)`` as the graph takes them.
    """
    gen = torch.Generator().manual_seed(seed)
    m = int(cfg.model.data_preprocessor.voxel_layer.max_num_points)
    ny, nx = cfg.model.pts_middle_encoder.output_shape
    num_points = torch.randint(1, m + 1, (num_pillars,), generator=gen, dtype=torch.int32)
    num_points[0] = m  # a full pillar: a branch without padding
    voxels = torch.randn(num_pillars, m, point_dims(cfg), generator=gen)
    voxels *= (torch.arange(m) < num_points.view(-1, 1)).unsqueeze(-1)
    cells = torch.randperm(ny * nx, generator=gen)[:num_pillars]
    coors = torch.stack([torch.zeros_like(cells), torch.zeros_like(cells), cells // nx,
                         cells % nx], dim=1).int()
    return voxels, num_points, coors, torch.tensor(1)


#: Attributes a head's ``forward`` sets and its ``predict_by_feat`` reads (ShapeAwareHead,
#: SSN's head, keeps its feature-map sizes); the runtime's head never runs ``forward``.
HEAD_FORWARD_STATE = ('featmap_sizes',)


def head_forward_state(head: nn.Module) -> Dict[str, Any]:
    """The :data:`HEAD_FORWARD_STATE` of a head that has run, as JSON-able lists."""
    return {name: [[int(v) for v in size] for size in getattr(head, name)]
            for name in HEAD_FORWARD_STATE if getattr(head, name, None) is not None}


def _versions() -> Dict[str, str]:
    import mmdet3d
    import onnx

    from .. import __version__
    return dict(torch=torch.__version__, onnx=onnx.__version__, mmdet3d=mmdet3d.__version__,
                mmregnet=__version__)


def export_model(model: nn.Module, cfg: Config, out: str, force: bool = False,
                 config_path: Optional[str] = None, checkpoint: Optional[str] = None,
                 calibration: Optional[Sequence[torch.Tensor]] = None,
                 calibration_source: str = 'given clouds') -> Dict[str, Any]:
    """Exports a built detector (weights loaded) to the folder ``out``.

    Args:
        model: The config's mmdet3d detector (set to eval mode; weights unchanged).
        cfg: Its config (saved into the manifest).
        out: The folder to write.
        force: Replace an existing folder.
        config_path: The config's file, recorded in the manifest.
        checkpoint: The weights' file, recorded with its sha256.
        calibration: Point clouds to calibrate an int8 graph on
            (:mod:`~mmregnet.deploy.quantize`); None writes the float32 graph.
        calibration_source: Where the clouds came from, for the manifest.

    Returns:
        The manifest, as written to ``out/detector.json``.

    Raises:
        DeployError: A part the graph cannot hold.
        ImportError: Without the ``onnx`` package.
    """
    require_onnx()
    import onnx
    # The exporter folds each eval-mode BatchNorm into its conv itself; the pillar
    # encoder is DeployHardVFE (its own folded copy), the rest the model's modules.
    graph = DetectorGraph(model.eval())
    device = next(model.parameters()).device
    example = tuple(t.to(device) for t in example_pillars(cfg))
    levels = getattr(getattr(graph.head, 'prior_generator', None), 'num_levels', None)
    if levels is None:  # a head without an anchor generator: count its outputs
        with torch.no_grad():
            levels = len(graph(*example)) // len(graph.kinds)
    outputs = graph.output_names(levels)
    pillars = {0: 'pillars'}
    axes = dict(voxels=pillars, num_points=pillars, coors=pillars,
                **{name: {0: 'batch'} for name in outputs})
    fingerprint = network_fingerprint(cfg)
    manifest = dict(
        format=FORMAT, version=FORMAT_VERSION, graph=GRAPH_FILE, network=fingerprint,
        config_name=os.path.splitext(os.path.basename(config_path or 'config.py'))[0],
        config_path=os.path.abspath(config_path) if config_path else None,
        checkpoint=os.path.abspath(checkpoint) if checkpoint else None,
        checkpoint_sha256=file_sha256(checkpoint) if checkpoint else None,
        class_names=class_names(cfg), point_dims=point_dims(cfg),
        voxelizer=cfg.model.data_preprocessor.voxel_layer.to_dict(),
        decoder=(cfg.model.get('test_cfg') or {}).get('pts', {}),
        inputs=list(INPUT_NAMES), outputs=outputs, output_kinds=graph.kinds, levels=levels,
        output_layout=OUTPUT_LAYOUT,
        opset=OPSET, versions=_versions(), config=config_text(cfg),
        precision='int8' if calibration is not None else 'float32')
    if hasattr(manifest['decoder'], 'to_dict'):
        manifest['decoder'] = manifest['decoder'].to_dict()
    with atomic_folder(out, force=force) as tmp:
        path = os.path.join(tmp, GRAPH_FILE)
        export_graph(graph, example, path, INPUT_NAMES, outputs, axes)
        if calibration is not None:
            _quantize(path, cfg, calibration, tmp)
            manifest['calibration'] = dict(frames=len(calibration), source=calibration_source)
        proto = onnx.load(path)
        if len(proto.graph.output) != len(outputs):
            raise DeployError(f'the graph has {len(proto.graph.output)} outputs, expected '
                              f'{len(outputs)} ({levels} levels of {graph.kinds})')
        manifest['head_state'] = head_forward_state(graph.head)
        onnx.helper.set_model_props(proto, dict(mmregnet_network=fingerprint,
                                                mmregnet_config=manifest['config_name']))
        onnx.save(proto, path)
        manifest['graph_sha256'] = file_sha256(path)
        with open(os.path.join(tmp, MANIFEST_FILE), 'w') as f:
            json.dump(manifest, f, indent=1)
            f.write('\n')
    return manifest


def _quantize(path: str, cfg: Config, clouds: Sequence[torch.Tensor], tmp: str) -> None:
    """Replaces the float32 graph at ``path`` by its int8 version calibrated on ``clouds``."""
    from .quantize import calibration_feeds, quantize_graph
    scratch = os.path.join(tmp, 'quantizing')
    os.mkdir(scratch)
    fp32 = os.path.join(scratch, 'float32.onnx')
    os.replace(path, fp32)
    quantize_graph(fp32, path, calibration_feeds(cfg, clouds), scratch)
    shutil.rmtree(scratch)


def export_detector(config: str, checkpoint: str, out: str, force: bool = False,
                    cfg_options: Optional[Dict[str, Any]] = None, int8_frames: int = 0,
                    calibration_split: str = 'train') -> Dict[str, Any]:
    """Exports ``config`` with the weights of ``checkpoint`` to the folder ``out``.

    A checkpoint that does not fit the config's detector is refused, naming
    the backbone arch it holds and the config's
    (:func:`~mmregnet.deploy.weights.load_weights`).

    Args:
        config: A PointPillars config file.
        checkpoint: Its trained weights (an mmengine checkpoint or a state dict).
        out: The folder to write (``detector.onnx``, ``detector.json``).
        force: Replace an existing folder.
        cfg_options: Config overrides.
        int8_frames: Above 0, an int8 graph calibrated on that many clouds of
            the config's ``calibration_split`` (:mod:`~mmregnet.deploy.quantize`).
        calibration_split: ``'train'`` or ``'val'``.

    Returns:
        The manifest.

    Raises:
        DeployError: Bad config, checkpoint or destination; nothing is left in ``out``.
    """
    _check_out(out, force)
    if int8_frames < 0:
        raise DeployError(f'int8_frames must be >= 0, got {int8_frames}')
    cfg = load_detector_config(config, cfg_options)
    state = read_checkpoint(checkpoint)
    from .configs import build_detector
    model = build_detector(cfg, init=False)
    load_weights(model, state, checkpoint, config)
    clouds = None
    if int8_frames:
        from .quantize import dataset_clouds
        clouds = dataset_clouds(cfg, int8_frames, calibration_split)
    return export_model(model, cfg, out, force=force, config_path=config, checkpoint=checkpoint,
                        calibration=clouds, calibration_source=f'{calibration_split} split')


def _check_out(out: str, force: bool) -> None:
    """Fails before the slow work when ``out`` cannot be written."""
    from ..fileio import check_destination
    try:
        check_destination(out, force, 'folder')
    except (OSError, ValueError) as e:
        raise DeployError(str(e)) from None
