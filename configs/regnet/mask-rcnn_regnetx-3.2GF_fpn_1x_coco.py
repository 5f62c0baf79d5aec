# mmdet's config of the same name with mmdet's RegNet replaced by mmregnet's: the same
# detector, the neck's in_channels derived from the arch table.
_base_ = ['mmdet::regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py', '../_base_/mmregnet_runtime.py']

from mmregnet.detection import image_backbone, stage_channels

model = dict(
    # pycls trained its RegNets on BGR images with these statistics; its weights expect them.
    data_preprocessor=dict(
        mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], bgr_to_rgb=False),
    backbone=image_backbone(
        'regnetx_3.2gf', init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://regnetx_3.2gf')),
    neck=dict(in_channels=stage_channels('regnetx_3.2gf')))
