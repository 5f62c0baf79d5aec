# `make demo`: PointPillars + RegNetX-400MF-FPN, derived from the nuScenes config, trained
# on 2 CPU cores on the synthetic nuScenes-format data of tools/create_synthetic_data.py.
# What differs from the full config, all for CPU speed (the detector design is the same):
#   * point-cloud range +-12.8 m instead of +-50 m and 0.4 m pillars instead of 0.25 m (a
#     64 x 64 BEV grid instead of 400 x 400); the generator annotates objects only inside
#     this range (tools/demo.py derives its --annotation-range from point_cloud_range);
#   * at most 10 points per pillar and one VFE layer (full: 64 points, two layers);
#   * a 64-channel FPN and head (full: 256);
#   * the key frame plus 1 sweep (full: 10 sweeps);
#   * no ImageNet-pretrained backbone (nothing is downloaded);
#   * AdamW at a higher learning rate on a short cosine schedule; no validation during training
#     (tools/demo.py evaluates the final checkpoint with tools/test.py);
#   * at test time the 100 best anchors go to NMS with score threshold 0, at most 100 boxes
#     per sample (full: 1000, 0.05 and 500).
_base_ = ['./pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py']

data_root = 'data/synthetic/nuscenes/'
point_cloud_range = [-12.8, -12.8, -5.0, 12.8, 12.8, 3.0]
voxel_size = [0.4, 0.4, 8]
grid = 64  # (12.8 + 12.8) / 0.4
sweeps = 1
class_names = [
    'car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle', 'motorcycle',
    'pedestrian', 'traffic_cone', 'barrier'
]
epochs = 16
lr = 0.003
batch_size = 4

model = dict(
    data_preprocessor=dict(
        voxel_layer=dict(
            max_num_points=10, point_cloud_range=point_cloud_range, voxel_size=voxel_size,
            max_voxels=(12000, 12000))),
    pts_voxel_encoder=dict(
        feat_channels=[64], voxel_size=voxel_size, point_cloud_range=point_cloud_range),
    pts_middle_encoder=dict(output_shape=[grid, grid]),
    pts_backbone=dict(init_cfg=None),
    pts_neck=dict(out_channels=64),
    pts_bbox_head=dict(
        in_channels=64, feat_channels=64,
        anchor_generator=dict(ranges=[[-12.8, -12.8, -1.8, 12.8, 12.8, -1.8]])),
    # Every model, an untrained one too, submits its 100 best boxes whatever their scores: the
    # nuScenes devkit fails on an empty submission ("Invalid box type: None").
    test_cfg=dict(pts=dict(nms_pre=100, max_num=100, score_thr=0.0)))

backend_args = None
load_points = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5,
         backend_args=backend_args),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=sweeps, test_mode=True,
         backend_args=backend_args),
]
train_pipeline = load_points + [
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.3925, 0.3925],
         scale_ratio_range=[0.95, 1.05], translation_std=[0, 0, 0]),
    dict(type='RandomFlip3D', flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='PointShuffle'),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d'])
]
test_pipeline = load_points + [
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points'])
]

# NuScenesMetric evaluates the split of the dataset's `version` (mini_val for v1.0-mini).
metainfo = dict(classes=class_names, version='v1.0-mini')
train_dataloader = dict(
    batch_size=batch_size, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline, metainfo=metainfo))
test_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline, metainfo=metainfo))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_evaluator = dict(data_root=data_root, ann_file=data_root + 'nuscenes_infos_val.pkl')

optim_wrapper = dict(optimizer=dict(lr=lr))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=epochs, eta_min=lr * 0.05, by_epoch=True, begin=0,
         end=epochs)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
log_processor = dict(window_size=10)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
