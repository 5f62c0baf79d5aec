"""Synthetic LiDAR datasets in the real nuScenes (v1.0-mini) and Lyft (v1.01)
on-disk formats, for running mmdet3d's data converter, datasets, training and
the official metrics without the real data.

>>> from mmregnet.synthetic import DatasetSpec, Options
>>> DatasetSpec('nuscenes', Options(samples_per_scene=4)).options.samples_per_scene
4
"""
from .generate import DatasetSpec, generate, read_marker, write_dataset
from .infos import create_infos
from .writer import Options

__all__ = ['DatasetSpec', 'Options', 'create_infos', 'generate', 'read_marker',
           'write_dataset']
