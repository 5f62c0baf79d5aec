# PointPillars with RegNetY-1.6GF (squeeze-and-excitation) and FPN on nuScenes (not in mmdet3d).
# No open-mmlab checkpoint exists for RegNetY: convert pycls's ImageNet weights with
# tools/model_converters/regnet2mmdet.py and set init_cfg=dict(type='Pretrained', checkpoint=...).
_base_ = ['./pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py']

from mmregnet.detection import bev_backbone, stage_channels

model = dict(
    pts_backbone=bev_backbone('regnety_1.6gf', init_cfg=None),
    pts_neck=dict(in_channels=stage_channels('regnety_1.6gf', (1, 2, 3))))
