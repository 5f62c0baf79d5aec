"""Distributed training on CPUs.

mmengine 0.10.7's ``pytorch`` launcher assumes GPUs: it calls
``torch.cuda.set_device`` before creating the process group and wraps the
model in DDP with ``device_ids=[LOCAL_RANK]``, and both fail on a CPU-only
machine. :func:`prepare_cpu_distributed` starts the gloo
process group itself (mmengine then skips its own ``init_dist``) and selects
:class:`CPUDistributedDataParallel`, mmengine's DDP wrapper without device
ids, through the config's ``model_wrapper_cfg``. With CUDA nothing changes.
"""
import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper that leaves ``device_ids`` unset for a CPU model.

    torch's DDP requires ``device_ids=None`` for modules on the CPU; mmengine
    always passes the local rank. A model on a GPU keeps its device ids.
    """

    def __init__(self, module: torch.nn.Module, device_ids=None, **kwargs) -> None:
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)


def prepare_cpu_distributed(cfg) -> bool:
    """Readies a ``launcher='pytorch'`` run for a machine without CUDA.

    Starts the gloo process group from torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), sets the config's
    backend to gloo and its model wrapper to :class:`CPUDistributedDataParallel`
    (with mmengine's defaults: no buffer broadcast, ``find_unused_parameters``
    from the config).

    Args:
        cfg: The run's mmengine Config (modified in place).

    Returns:
        Whether anything was changed (False with CUDA or without a launcher).
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'CPUDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return True
