# RegNetY-12GF on ImageNet-1k, which mmpretrain ships no config for:
# pycls's recipe for it (batch 512, lr 0.4), as mmpretrain's RegNetX-3.2GF config.
# Input: BGR, ImageNet's mean/std in BGR order (pycls's convention).
_base_ = ['./regnetx-3.2gf_8xb64_in1k.py']

from mmregnet.classification import classifier_backbone, head_channels

model = dict(backbone=classifier_backbone('regnety_12gf'),
             head=dict(in_channels=head_channels('regnety_12gf')))
