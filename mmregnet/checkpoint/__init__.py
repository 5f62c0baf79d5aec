"""Reading checkpoints: loading a file without running its code (:mod:`.loading`), reading a
RegNet's arch off the tensor shapes (:mod:`.shapes`, :mod:`.arch_inference`) and checking
that weights fit a built model (:mod:`.fit`). The converter, the models' ``Pretrained``
check, the tools and the deployment read checkpoints through it; it imports no model.
"""
