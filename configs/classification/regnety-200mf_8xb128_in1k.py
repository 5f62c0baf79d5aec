# RegNetY-200MF on ImageNet-1k, which mmpretrain ships no config for:
# pycls's recipe for it (batch 1024, lr 0.8), as mmpretrain's RegNetX-400MF config.
# Input: BGR, ImageNet's mean/std in BGR order (pycls's convention).
_base_ = ['./regnetx-400mf_8xb128_in1k.py']

from mmregnet.classification import classifier_backbone, head_channels

model = dict(backbone=classifier_backbone('regnety_200mf'),
             head=dict(in_channels=head_channels('regnety_200mf')))
