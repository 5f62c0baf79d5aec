"""TorchScript and ONNX files of a backbone (one image-like input) or of any module."""
import contextlib
import importlib.util
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..fileio import atomic_output

#: The ONNX opset of every file mmregnet writes (ScatterElements' max reduction needs 18).
OPSET = 18
#: The ONNX domains of mmregnet's graphs: the default one only (no custom operator).
DEFAULT_DOMAINS = ('', 'ai.onnx')


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silences, within the block, the tracing warnings about shapes a graph fixes by design.

    RegNet's input-channel check and mmdet3d's box coder (``DeltaXYZWLHRBBoxCoder``:
    seven values per box or more) are Python ``if`` s on shapes that are fixed
    for a config, so baking them in is right; torch's exporter warns that a
    strided ``Slice`` cannot be constant-folded, and it stays in the graph,
    where ONNX Runtime runs it. Every other warning still shows.
    """
    with warnings.catch_warnings():
        for module in (r'mmregnet\.models\.regnet',
                       r'mmdet3d\.models\.task_modules\.coders\.delta_xyzwhlr_bbox_coder'):
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning, module=module)
        warnings.filterwarnings('ignore', message='Constant folding - Only steps=1',
                                category=UserWarning, module=r'torch\.onnx\.')
        yield


def trace(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` by tracing (RegNet's forward is not scriptable).

    Args:
        model: A backbone or any network taking one tensor.
        example: An input of the shape it will see, ``(N, C, H, W)``.

    Returns:
        The traced module; ``torch.jit.freeze`` it for oneDNN fusions.
    """
    with quiet_tracing(), torch.no_grad():
        return torch.jit.trace(model, example)


def filled(like: Tensor, size: Union[int, Tensor], value: int) -> Tensor:
    """A 1-D tensor of ``size`` entries ``value``, of ``like``'s dtype, made when the graph runs.

    A full tensor of a fixed size traces to a constant that the exporter
    stores in the graph file (a grid of cells: megabytes); tied to ``like``'s
    length, it is a ``ConstantOfShape`` at run time.

    Example:
        >>> filled(torch.arange(3), 4, 7).tolist()
        [7, 7, 7, 7]
    """
    return like.new_full((size + like.shape[0] * 0,), value)


def foreign_operators(model: Any) -> List[str]:
    """``domain::op`` of each operator outside the default domain, of the graph in a file
    (a path) or of a loaded ``onnx.ModelProto``."""
    if isinstance(model, str):
        import onnx  # lazy: the [deploy] extra (require_onnx names it)
        model = onnx.load(model, load_external_data=False)
    graph = model.graph
    found = set()

    def visit(nodes) -> None:
        for node in nodes:
            if node.domain not in DEFAULT_DOMAINS:
                found.add(f'{node.domain}::{node.op_type}')
            for attr in node.attribute:  # the bodies of Loop and If
                for sub in ([attr.g] if attr.HasField('g') else []) + list(attr.graphs):
                    visit(sub.node)
    visit(graph.node)
    return sorted(found)


def require_onnx() -> None:
    """Raises ImportError naming the package when ``onnx`` is missing (torch.onnx needs it)."""
    if importlib.util.find_spec('onnx') is None:
        raise ImportError('ONNX export needs the onnx package (torch.onnx writes through it): '
                          'pip install onnx')


def export_graph(module: nn.Module, args: Tuple, path: str, input_names: Sequence[str],
                 output_names: Sequence[str], dynamic_axes: Dict[str, Dict[int, str]],
                 force: bool = True) -> str:
    """Writes ``module`` called on ``args`` as an ONNX file, complete or not at all.

    The one place mmregnet calls ``torch.onnx.export``: the TorchScript-based
    exporter (``dynamo=False``, which needs ``onnx`` but not ``onnxscript``),
    opset :data:`OPSET`, within :func:`quiet_tracing`.

    Args:
        module: The module to trace.
        args: Example inputs.
        path: The ``.onnx`` file (:func:`mmregnet.fileio.atomic_output`).
        input_names: A name per input.
        output_names: A name per output.
        dynamic_axes: Name to ``{axis: symbol}`` for the sizes that vary.
        force: Replace an existing file.

    Returns:
        ``path``.

    Raises:
        ImportError: Without the ``onnx`` package.
    """
    require_onnx()
    with atomic_output(path, force=force) as tmp, quiet_tracing(), torch.no_grad():
        torch.onnx.export(module, tuple(args), tmp, dynamo=False, opset_version=OPSET,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes)
    return path


def export_onnx(model: nn.Module, example: torch.Tensor, path: str,
                output_names: Optional[Sequence[str]] = None, force: bool = True) -> str:
    """Writes a backbone as ONNX with dynamic batch and spatial sizes.

    Args:
        model: A network taking one ``(N, C, H, W)`` tensor, named ``input``.
        example: An input for tracing.
        path: Where to write the ``.onnx`` file (complete or not at all).
        output_names: Names of the outputs (default ``output0``, ``output1``...).
        force: Replace an existing file.

    Returns:
        ``path``.

    Raises:
        ImportError: Without the ``onnx`` package.
        ValueError: If ``output_names`` does not name every output.
    """
    require_onnx()
    with torch.no_grad():
        outputs = model(example)
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    names = list(output_names or [f'output{i}' for i in range(len(outputs))])
    if len(names) != len(outputs):
        raise ValueError(f'{len(names)} output names for {len(outputs)} outputs')
    spatial = {0: 'batch', 2: 'height', 3: 'width'}
    axes = {'input': spatial, **{n: spatial for n, o in zip(names, outputs) if o.dim() == 4}}
    return export_graph(model, (example,), path, ['input'], names, axes, force=force)
