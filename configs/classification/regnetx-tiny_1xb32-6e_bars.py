# A tiny RegNetX (6 blocks in 3 stages of 16, 32 and 64 channels, 52.6k parameters)
# learning the generated bars dataset (tools/create_synthetic_images.py: 4 orientation
# classes of 32x32 images) with mmpretrain's ImageClassifier and Accuracy: the end-to-end
# check of tools/train.py and tools/test.py: 192 steps, about 15 s of training on one core.
# No flip augmentation: a horizontal flip swaps the 45 and 135 degree classes.
# Input: BGR as mmcv loads it, ImageNet's mean/std in BGR order.
_base_ = ['mmpretrain::_base_/default_runtime.py']

from mmregnet.classification import classifier_backbone, head_channels, input_normalization

custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)

tiny_arch = dict(w0=16, wa=12.0, wm=2.0, depth=6, group_w=8, bot_mul=1.0)
model = dict(
    type='ImageClassifier',
    backbone=classifier_backbone(tiny_arch),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=4, in_channels=head_channels(tiny_arch),
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1,)))
data_preprocessor = dict(num_classes=4, **input_normalization('BGR'))

data_root = 'data/synthetic/bars'
pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64, num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.01, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=6, by_epoch=True, begin=0, end=6)]
train_cfg = dict(by_epoch=True, max_epochs=6, val_interval=6)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=6))
randomness = dict(seed=0, deterministic=False)
