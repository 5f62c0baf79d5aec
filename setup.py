"""Installs mmregnet, the RegNet backbone family for OpenMMLab detectors."""
from setuptools import find_packages, setup

setup(
    name='mmregnet',
    version='0.1.0',
    description='RegNet backbones for mmdet and mmdet3d',
    packages=find_packages(include=['mmregnet', 'mmregnet.*']),
    python_requires='>=3.8',
    install_requires=[],
    entry_points={'console_scripts': ['mmregnet=mmregnet.cli:main',
                                    'regnet2mmdet=mmregnet.convert.cli:main']},
)
