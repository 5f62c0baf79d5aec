# The CPU demo on the synthetic Lyft-format data (tools/create_synthetic_data.py lyft): the
# nuScenes demo config (same network, range and CPU-speed reductions, see that file) with the
# changes mmdet3d's own PointPillars Lyft model makes to its nuScenes model (9 classes, 7-value
# boxes without velocity, 20 points per pillar) and Lyft's dataset, splits and LyftMetric.
_base_ = ['./pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py']

data_root = 'data/synthetic/lyft/'
class_names = [
    'car', 'truck', 'bus', 'emergency_vehicle', 'other_vehicle', 'motorcycle', 'bicycle',
    'pedestrian', 'animal'
]
batch_size = 2

model = dict(
    data_preprocessor=dict(voxel_layer=dict(max_num_points=20)),
    pts_bbox_head=dict(
        num_classes=9,
        anchor_generator=dict(custom_values=[]),
        bbox_coder=dict(type='DeltaXYZWLHRBBoxCoder', code_size=7)),
    train_cfg=dict(pts=dict(code_weight=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])))

train_pipeline = [
    p if p['type'] != 'ObjectNameFilter' else dict(type='ObjectNameFilter', classes=class_names)
    for p in _base_.train_pipeline  # noqa: F821 (mmengine's base-variable access)
]
data_prefix = dict(pts='v1.01-train/lidar', img='', sweeps='v1.01-train/lidar')
lyft_dataset = dict(
    _delete_=True, type='LyftDataset', data_root=data_root, metainfo=dict(classes=class_names),
    modality=dict(use_lidar=True, use_camera=False), data_prefix=data_prefix,
    box_type_3d='LiDAR', backend_args=None)
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(lyft_dataset, ann_file='lyft_infos_train.pkl', pipeline=train_pipeline,
                 test_mode=False))
test_dataloader = dict(
    dataset=dict(lyft_dataset, ann_file='lyft_infos_val.pkl', pipeline=_base_.test_pipeline,  # noqa
                 test_mode=True))
test_evaluator = dict(
    _delete_=True, type='LyftMetric', data_root=data_root, ann_file='lyft_infos_val.pkl',
    metric='bbox', backend_args=None)
