# mmpretrain's config of the same name with its RegNet replaced by mmregnet's: the same
# classifier (parameter for parameter) and the same training recipe. Input: BGR, ImageNet's
# mean/std in BGR order (pycls's convention, which mmpretrain's RegNet weights follow too).
_base_ = ['mmpretrain::regnet/regnetx-800mf_8xb128_in1k.py']

from mmregnet.classification import classifier_backbone, head_channels, input_normalization

custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)
data_preprocessor = input_normalization('BGR')
model = dict(backbone=classifier_backbone('regnetx_800mf', _delete_=True),
             head=dict(in_channels=head_channels('regnetx_800mf')))
