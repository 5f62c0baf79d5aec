"""Exporting a PointPillars detector to an ONNX folder: ``detector.onnx`` + ``detector.json``.

The graph is the whole detector, one point cloud in and mmdet3d's final boxes
out (:class:`~mmregnet.deploy.detector_graph.DetectorGraph`), with the
config's voxelizer and test settings frozen in; it holds only operators of the
default ONNX domain. The folder is written whole or not at all
(:func:`mmregnet.fileio.atomic_folder`). ``detector.json`` holds what a reader
needs beside the graph (:mod:`mmregnet.deploy.format`): the class names, the
values per point, the box size, the frozen settings, the source checkpoint's
sha256, the graph's own sha256 and network fingerprint, and the config as text.
"""
import json
import os
import shutil
from typing import Any, Dict, Optional, Sequence

import mmdet3d
import torch
import torch.nn as nn
from mmengine.config import Config

from .. import __version__
from ..convert.safe_io import file_sha256
from ..fileio import atomic_folder, check_destination
from .box_decoding import BoxDecoder
from .configs import (build_detector, class_names, config_text, load_detector_config,
                      network_fingerprint, point_dims)
from .detector_graph import DetectorGraph
from .errors import DeployError
from .format import (FORMAT, FORMAT_VERSION, GRAPH_FILE, INPUT_NAME, MANIFEST_FILE,
                     OUTPUT_NAMES)
from .onnx_export import OPSET, export_graph, foreign_operators, require_onnx
from .quantize import calibration_feeds, dataset_clouds, quantize_graph
from .weights import load_weights, read_checkpoint


def random_points(cfg: Config, num_points: int, seed: int = 0) -> torch.Tensor:
    """A point cloud spread uniformly over the config's point-cloud range.

    Args:
        cfg: The detector config (``data_preprocessor.voxel_layer.point_cloud_range``).
        num_points: Points to make.
        seed: Seed.

    Returns:
        ``(num_points, point_dims(cfg))``: x, y, z, then intensity in [0, 255]
        and, for a fifth value, a sweep time lag in [0, 0.5] s.
    """
    if num_points < 1:
        raise ValueError(f'num_points must be positive, got {num_points}')
    pc_range = torch.tensor(cfg.model.data_preprocessor.voxel_layer.point_cloud_range,
                            dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    xyz = pc_range[:3] + (pc_range[3:] - pc_range[:3]) * torch.rand(num_points, 3, generator=gen)
    extra = [torch.rand(num_points, 1, generator=gen) * 255,
             torch.rand(num_points, 1, generator=gen) * 0.5]
    dims = point_dims(cfg)
    cols = [xyz] + extra[:max(dims - 3, 0)]
    cols += [torch.zeros(num_points, 1)] * max(dims - 5, 0)
    return torch.cat(cols, 1)[:, :dims].contiguous()


#: Points of the cloud the graph is traced on.
EXAMPLE_POINTS = 200


def decoder_settings(cfg: Config) -> Dict[str, Any]:
    """The config's box decoding settings (``model.test_cfg.pts``) as plain data."""
    settings = (cfg.model.get('test_cfg') or {}).get('pts') or {}
    return settings.to_dict() if hasattr(settings, 'to_dict') else dict(settings)


def graph_props(manifest: Dict[str, Any]) -> Dict[str, str]:
    """The graph's metadata: a runtime knows it for the manifest's graph without hashing it."""
    props = dict(mmregnet_network=manifest['network'], mmregnet_config=manifest['config_name'],
                 mmregnet_precision=manifest['precision'])
    if manifest.get('checkpoint_sha256'):
        props['mmregnet_checkpoint_sha256'] = manifest['checkpoint_sha256']
    return props


def _versions() -> Dict[str, str]:
    import onnx  # lazy: the [deploy] extra, named by require_onnx() before the export
    return dict(torch=torch.__version__, onnx=onnx.__version__, mmdet3d=mmdet3d.__version__,
                mmregnet=__version__)


def detector_graph(model: nn.Module, cfg: Config,
                   example: Optional[torch.Tensor] = None) -> DetectorGraph:
    """The one graph of a built detector: its network and the config's box decoder.

    ``example`` (default: :func:`random_points`) is the cloud run once to size the decoder.

    Raises:
        DeployError: A part the graph cannot hold, or a model not on the CPU.
    """
    device = next(model.parameters()).device
    if device.type != 'cpu':  # the voxelizer's and decoder's constants are made on the CPU
        raise DeployError(f'export traces the detector on the CPU; the model is on {device}: '
                          f'export model.cpu() (the graph then runs on any provider)')
    graph = DetectorGraph(model.eval())
    with torch.no_grad():  # also sets the state SSN's head keeps for decoding
        maps = graph(random_points(cfg, EXAMPLE_POINTS) if example is None else example)
    levels = len(maps) // len(graph.kinds)
    sizes = [tuple(m.shape[1:3]) for m in maps[:levels] if m.dim() == 4] or None
    graph.decoder = BoxDecoder(graph.head, sizes, decoder_settings(cfg))
    return graph


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
        DeployError: A part the graph cannot hold, or a model not on the CPU.
        ImportError: Without the ``onnx`` package.
    """
    require_onnx()
    import onnx  # lazy: the [deploy] extra, named by require_onnx() above
    # The exporter folds each eval-mode BatchNorm into its conv itself; the pillar
    # encoder is DeployHardVFE (its own folded copy), the rest the model's modules.
    example = random_points(cfg, EXAMPLE_POINTS)
    graph = detector_graph(model, cfg, example)
    axes = {INPUT_NAME: {0: 'points'}, **{name: {0: 'boxes'} for name in OUTPUT_NAMES}}
    fingerprint = network_fingerprint(cfg)
    layout = graph.voxelizer.layout
    manifest = dict(
        format=FORMAT, version=FORMAT_VERSION, graph=GRAPH_FILE, network=fingerprint,
        config_name=os.path.splitext(os.path.basename(config_path or 'config.py'))[0],
        config_path=os.path.abspath(config_path) if config_path else None,
        checkpoint=os.path.abspath(checkpoint) if checkpoint else None,
        checkpoint_sha256=file_sha256(checkpoint) if checkpoint else None,
        class_names=class_names(cfg), point_dims=point_dims(cfg),
        box_dim=int(graph.head.box_code_size), inputs=[INPUT_NAME], outputs=list(OUTPUT_NAMES),
        point_cloud_range=list(layout.point_cloud_range), voxelizer=layout.to_dict(),
        decoder=decoder_settings(cfg), opset=OPSET, versions=_versions(),
        config=config_text(cfg), precision='int8' if calibration is not None else 'float32')
    with atomic_folder(out, force=force) as tmp:
        path = os.path.join(tmp, GRAPH_FILE)
        export_graph(graph, (example,), path, [INPUT_NAME], list(OUTPUT_NAMES), axes)
        if calibration is not None:
            _quantize(path, calibration, tmp)
            manifest['calibration'] = dict(frames=len(calibration), source=calibration_source)
        proto = onnx.load(path)
        foreign = foreign_operators(proto)
        if foreign:
            raise DeployError(f'the exported graph uses operators outside the default ONNX '
                              f'domain: {", ".join(foreign)}')
        onnx.helper.set_model_props(proto, graph_props(manifest))
        onnx.save(proto, path)
        manifest['graph_sha256'] = file_sha256(path)
        with open(os.path.join(tmp, MANIFEST_FILE), 'w') as f:
            json.dump(manifest, f, indent=1)
            f.write('\n')
    return manifest


def _quantize(path: str, clouds: Sequence[torch.Tensor], tmp: str) -> None:
    """Replaces the float32 graph at ``path`` by its int8 version calibrated on ``clouds``."""
    scratch = os.path.join(tmp, 'quantizing')
    os.mkdir(scratch)
    fp32 = os.path.join(scratch, 'float32.onnx')
    os.replace(path, fp32)
    quantize_graph(fp32, path, calibration_feeds(clouds), scratch)
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
    model = build_detector(cfg, init=False)
    load_weights(model, state, checkpoint, config)
    clouds = None
    if int8_frames:
        clouds = dataset_clouds(cfg, int8_frames, calibration_split)
    return export_model(model, cfg, out, force=force, config_path=config, checkpoint=checkpoint,
                        calibration=clouds, calibration_source=f'{calibration_split} split')


def _check_out(out: str, force: bool) -> None:
    """Fails before the slow work when ``out`` cannot be written."""
    try:
        check_destination(out, force, 'folder')
    except (OSError, ValueError) as e:
        raise DeployError(str(e)) from None
