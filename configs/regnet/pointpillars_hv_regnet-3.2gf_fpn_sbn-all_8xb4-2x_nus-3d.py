# PointPillars with RegNetX-3.2GF and FPN on nuScenes: the 400MF config with a larger backbone (not in mmdet3d).
_base_ = ['./pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py']

from mmregnet.detection import bev_backbone, stage_channels

model = dict(
    pts_backbone=bev_backbone('regnetx_3.2gf', init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://regnetx_3.2gf')),
    pts_neck=dict(in_channels=stage_channels('regnetx_3.2gf', (1, 2, 3))))
