# mmdet3d's FreeAnchor config of the same name with its NoStemRegNet replaced by mmregnet's
# RegNet: the same network and schedule, the neck's in_channels derived from the arch table.
_base_ = ['mmdet3d::free_anchor/pointpillars_hv_regnet-3.2gf_fpn_head-free-anchor_sbn-all_8xb4-strong-aug-3x_nus-3d.py', '../_base_/mmregnet_runtime.py']

from mmregnet.detection import bev_backbone, stage_channels

model = dict(
    pts_backbone=bev_backbone(
        'regnetx_3.2gf', init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://regnetx_3.2gf')),
    pts_neck=dict(in_channels=stage_channels('regnetx_3.2gf', (1, 2, 3))))
