# RegNetY-32GF on ImageNet-1k, which mmpretrain ships no config for:
# pycls's recipe for it (batch 256, lr 0.2), otherwise
# mmpretrain's RegNetX recipe.
# Input: BGR, ImageNet's mean/std in BGR order (pycls's convention).
_base_ = ['./regnetx-12gf_8xb64_in1k.py']

from mmregnet.classification import classifier_backbone, head_channels

model = dict(backbone=classifier_backbone('regnety_32gf'),
             head=dict(in_channels=head_channels('regnety_32gf')))

# pycls trains this one with batch 256 at lr 0.2
train_dataloader = dict(batch_size=32)
optim_wrapper = dict(optimizer=dict(lr=0.2))
auto_scale_lr = dict(base_batch_size=256)
