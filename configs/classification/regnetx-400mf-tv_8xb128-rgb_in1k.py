# regnetx-400mf_8xb128-rgb_in1k.py with torchvision's width rounding, which gives this preset
# other stage widths than pycls's: for torchvision's weights (and timm's *_tv models).
_base_ = ['./regnetx-400mf_8xb128-rgb_in1k.py']

from mmregnet.classification import classifier_backbone, head_channels, torchvision_arch

model = dict(backbone=classifier_backbone(torchvision_arch('regnetx_400mf'), _delete_=True),
             head=dict(in_channels=head_channels(torchvision_arch('regnetx_400mf'))))
