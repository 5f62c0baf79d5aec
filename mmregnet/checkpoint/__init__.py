"""Reading checkpoints: safely, and for what they hold.

The layer between the arch table and the models: loading a file without
running its code (:mod:`.loading`, :mod:`.pickles`, :mod:`.safetensors_file`,
with the unpickling allow-list of :mod:`mmregnet.compat`), reading a RegNet's
arch off the tensor shapes (:mod:`.shapes`, :mod:`.arch_inference`), and
checking that weights fit a built model (:mod:`.fit`). The converter, the
models' ``Pretrained`` check, the tools and the deployment all read
checkpoints through it; it imports no model.
"""
