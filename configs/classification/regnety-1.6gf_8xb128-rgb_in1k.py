# regnety-1.6gf_8xb128_in1k.py for weights trained on RGB images (timm's, torchvision's): the
# same classifier fed RGB, normalised with ImageNet's mean/std in RGB order.
_base_ = ['./regnety-1.6gf_8xb128_in1k.py']

from mmregnet.classification import input_normalization

data_preprocessor = input_normalization('RGB')
