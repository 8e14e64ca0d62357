"""Install mmspd.

``pip install -e .`` installs mmspd alone and leaves an existing OpenMMLab
stack untouched (only loose lower bounds below). The exact stack mmspd is
tested on is pinned in ``requirements/stack.txt``; ``make test`` and
``make demo`` install it into ``.venv`` (see README).
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    namespace = {}
    with open(osp.join(HERE, 'mmspd', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


setup(
    name='mmspd',
    version=read_version(),
    description='Selective Projection Decay (SPD) for robust fine-tuning '
    'in OpenMMLab',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmspd', 'mmspd.*']),
    python_requires='>=3.8',
    install_requires=['torch>=2.0', 'mmengine>=0.10', 'numpy'],
    extras_require={
        'tests': ['pytest'],
    },
    license='Apache-2.0',
    zip_safe=False,
)
