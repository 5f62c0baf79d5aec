"""Evaluating an exported detector with a config's own dataset and metric.

``tools/test.py CONFIG CHECKPOINT --backend onnxruntime`` swaps the config's
model for :class:`OnnxDetectorModel`, whose ``test_step`` runs the ONNX graph
(:class:`~mmregnet.deploy.runtime.OnnxDetector`); mmengine's test loop, the
config's dataloader and evaluator stay as they are, so the metrics are those
of the detector a user ships.
"""
import contextlib
import json
import os
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence

from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope

from ..registry import MODELS
from .configs import build_detector, check_pointpillars, network_fingerprint
from .errors import DeployError
from .export import decoder_settings, export_model
from .runtime import OnnxDetector, read_manifest, resolve_providers
from .weights import load_weights, read_checkpoint


@MODELS.register_module()
class OnnxDetectorModel(BaseModel):
    """A test-loop model that runs an exported PointPillars detector on ONNX Runtime.

    Args:
        folder: An export folder (``detector.onnx`` + ``detector.json``).
        providers: ONNX Runtime providers (default: CUDA if available, then CPU).
        data_preprocessor: Unused: the graph voxelizes itself.
        init_cfg: Unused.
    """

    def __init__(self, folder: str, providers: Optional[Sequence[Any]] = None,
                 data_preprocessor=None, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.detector = OnnxDetector(folder, providers=providers)

    def forward(self, inputs: Dict, data_samples: Optional[list] = None,
                mode: str = 'predict') -> List:
        """Predicts boxes (the only mode an exported detector has).

        Raises:
            DeployError: For ``mode`` other than ``'predict'``.
        """
        if mode != 'predict':
            raise DeployError(f"an exported detector only predicts; got mode={mode!r}")
        return self.detector.predict(inputs['points'], data_samples)

    def test_step(self, data: Dict) -> List:
        """Boxes for a dataloader's batch: ``dict(inputs=dict(points=...), data_samples=...)``."""
        return self.forward(data['inputs'], data.get('data_samples'))

    val_step = test_step


@contextlib.contextmanager
def onnx_test_config(cfg: Config, checkpoint: str, source: str,
                     providers: Optional[Sequence[Any]] = None) -> Iterator[Config]:
    """Points ``cfg``'s model at an exported detector for the length of the block.

    Args:
        cfg: The evaluation config (dataloader, evaluator, ``model.test_cfg``).
        checkpoint: An export folder of this config's network, or a checkpoint
            file, exported first into a temporary folder removed afterwards.
        source: The config's file, for messages.
        providers: ONNX Runtime providers.

    Yields:
        ``cfg`` with ``model`` replaced and ``load_from`` cleared.

    Raises:
        DeployError: A folder of another network or other test settings, or a
            checkpoint that does not fit.
    """
    check_pointpillars(cfg, source)
    resolve_providers(providers)  # a missing provider fails before the export
    with contextlib.ExitStack() as stack:
        if os.path.isdir(checkpoint):
            folder = checkpoint
            manifest = read_manifest(folder)
            theirs = network_fingerprint(cfg)
            if manifest['network'] != theirs:
                raise DeployError(
                    f"{folder} holds the graph of {manifest['config_name']} (network "
                    f"{manifest['network']}), not of config {source} (network {theirs}); "
                    f'export {source} with its checkpoint')
            settings = json.loads(json.dumps(decoder_settings(cfg)))
            if manifest.get('decoder') != settings:
                raise DeployError(
                    f"{folder} decodes boxes with test_cfg.pts {manifest.get('decoder')}, frozen "
                    f'into its graph; config {source} asks for {settings}: export the detector '
                    'again with this config')
        else:
            init_default_scope(cfg.get('default_scope', 'mmdet3d'))
            state = read_checkpoint(checkpoint)
            model = build_detector(cfg, init=False)
            load_weights(model, state, checkpoint, source)
            folder = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), 'onnx')
            export_model(model, cfg, folder, config_path=source, checkpoint=checkpoint)
            del model, state
        cfg.model = dict(type='mmregnet.OnnxDetectorModel', folder=os.path.abspath(folder),
                         providers=list(providers) if providers else None)
        cfg.load_from = None
        cfg.resume = False
        yield cfg
