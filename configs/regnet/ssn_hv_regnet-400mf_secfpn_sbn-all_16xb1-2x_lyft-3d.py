# mmdet3d's SSN config of the same name with its NoStemRegNet replaced by mmregnet's RegNet:
# the same network and schedule, the neck's in_channels derived from the arch table.
# mmdet3d spells the arch out as a dict (w0=24, wa=24.48, wm=2.54, group_w=16, depth=22,
# bot_mul=1.0); those are RegNetX-400MF's parameters, named here by the preset.
_base_ = ['mmdet3d::ssn/ssn_hv_regnet-400mf_secfpn_sbn-all_16xb1-2x_lyft-3d.py', '../_base_/mmregnet_runtime.py']

from mmregnet.detection import bev_backbone, stage_channels

model = dict(
    pts_backbone=bev_backbone(
        'regnetx_400mf', init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://regnetx_400mf')),
    pts_neck=dict(in_channels=stage_channels('regnetx_400mf', (1, 2, 3))))
