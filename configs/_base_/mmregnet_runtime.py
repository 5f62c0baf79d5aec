# Registers mmregnet's RegNet and checks each neck against its backbone before a run.
# PortableCheckpointHook saves checkpoints that torch.load(..., weights_only=True),
# mmengine's load_checkpoint and mmdet3d's init_model read as they are, and rebuilds the
# message hub's buffers on --resume (mmregnet/runtime/portable_checkpoint.py).
custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)
custom_hooks = [dict(type='mmregnet.NeckChannelsCheckHook'),
                dict(type='mmregnet.PortableCheckpointHook')]
