#!/usr/bin/env python
"""Convert a pycls, timm, torchvision, mmdet or mmpretrain RegNet checkpoint into mmregnet weights.

Usage: ``python tools/model_converters/regnet2mmdet.py [--verify] [--keep-head] SRC DST ...``
(``--help`` lists every option). The work is done by :mod:`mmregnet.convert`.
"""
import sys

from mmregnet.convert.cli import main

if __name__ == '__main__':
    sys.exit(main())
