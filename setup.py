"""Install mmspd.

``pip install -e .`` installs mmspd alone and leaves an existing OpenMMLab
stack untouched (only loose lower bounds below). The exact stack mmspd is
tested on is pinned in ``requirements/stack.txt``; ``make test`` and
``make demo`` install it into ``.venv`` (see README).

Like the OpenMMLab packages, mmspd ships its configs, tools and model index
inside the package, in ``mmspd/.mim/`` (what ``mim`` reads): symlinks to the
repository's folders for an editable install, copies for a wheel or sdist.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
#: What ``mmspd/.mim`` mirrors from the repository root.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
#: What copies of them leave out: the demo (``make demo``), an example of
#: the source checkout whose code, ``projects/spd_demo``, the package does
#: not ship (its configs import it).
NOT_SHIPPED = ('configs/demo', 'tools/demo.py')
#: Trove classifiers of the package (Python versions: those tested). The
#: licence is the SPDX expression of ``license`` (setuptools >= 77 deprecates
#: licence classifiers).
CLASSIFIERS = [
    'Development Status :: 3 - Alpha',
    'Intended Audience :: Developers',
    'Intended Audience :: Science/Research',
    'Operating System :: POSIX :: Linux',
    'Programming Language :: C++',
    'Programming Language :: Python :: 3',
    'Programming Language :: Python :: 3 :: Only',
    'Programming Language :: Python :: 3.11',
    'Topic :: Scientific/Engineering :: Artificial Intelligence',
]


def read_version() -> str:
    namespace = {}
    with open(osp.join(HERE, 'mmspd', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def _not_copied(folder, names):
    """``shutil.copytree``'s ``ignore``: caches and :data:`NOT_SHIPPED`."""
    ignored = set(shutil.ignore_patterns('__pycache__', '*.pyc')(folder,
                                                                 names))
    for name in names:
        path = osp.relpath(osp.join(folder, name), HERE)
        if path.replace(os.sep, '/') in NOT_SHIPPED:
            ignored.add(name)
    return ignored


def add_mim_extension() -> None:
    """Fill ``mmspd/.mim`` with the configs, tools and model index.

    Editable installs (``pip install -e .``: setuptools runs
    ``editable_wheel``, or ``develop`` for the legacy path) get relative
    symlinks, so edits show at once; wheels and sdists get copies, without
    :data:`NOT_SHIPPED`. Other commands (``egg_info``, ...) leave ``.mim``
    as it is. A missing source (e.g. building a wheel from an sdist, whose
    ``.mim`` is already filled) is skipped.
    """
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim = osp.join(HERE, 'mmspd', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        source, target = osp.join(HERE, name), osp.join(mim, name)
        if not osp.exists(source):
            continue
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        if mode == 'symlink':
            os.symlink(osp.relpath(source, mim), target)
        elif osp.isdir(source):
            shutil.copytree(source, target, ignore=_not_copied)
        else:
            shutil.copyfile(source, target)


def compiled_kernels():
    """``(ext_modules, cmdclass)`` for mmspd's compiled CPU kernel.

    ``mmspd.optim._adam_spd_cpu`` (AdamSPD's fused CPU step) is built when
    torch is importable at build time (``pip install --no-build-isolation``)
    and ``MMSPD_WITH_OPS`` is not ``0``; a failing compile fails the
    install. Without it mmspd still works (the optimizer falls back to torch
    ops and warns once).
    """
    if os.getenv('MMSPD_WITH_OPS', '1') == '0':
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print('mmspd: torch is not importable at build time, so the compiled '
              'CPU kernel is not built (use pip install --no-build-isolation)')
        return [], {}
    if sys.platform == 'win32':
        compile_args, link_args = ['/O2', '/openmp'], []
    elif sys.platform == 'darwin':  # Apple clang has no -fopenmp: one thread
        compile_args, link_args = ['-O3', '-fno-math-errno'], []
    else:
        # -fno-math-errno lets sqrt vectorise; OpenMP: at::parallel_for
        compile_args = ['-O3', '-fno-math-errno', '-fopenmp']
        link_args = ['-fopenmp']
    extension = CppExtension(
        'mmspd.optim._adam_spd_cpu', ['mmspd/optim/csrc/adam_spd_cpu.cpp'],
        extra_compile_args=compile_args, extra_link_args=link_args)
    return [extension], {'build_ext': BuildExtension}


if __name__ == '__main__':
    add_mim_extension()
    ext_modules, cmdclass = compiled_kernels()
    setup(
        name='mmspd',
        version=read_version(),
        description='Selective Projection Decay (SPD) for robust fine-tuning '
        'in OpenMMLab',
        long_description=read_readme(),
        long_description_content_type='text/markdown',
        author='mmspd contributors',
        keywords='robust fine-tuning, weight decay, optimizer, computer '
        'vision, OpenMMLab, mmengine, PyTorch',
        project_urls={
            'Paper': 'https://arxiv.org/abs/2411.01713',
        },
        classifiers=CLASSIFIERS,
        packages=find_packages(include=['mmspd', 'mmspd.*']),
        package_data={
            'mmspd': [
                '.mim/model-index.yml',
                '.mim/configs/**/*.py',
                '.mim/configs/**/*.yml',
                '.mim/tools/**/*.py',
                '.mim/tools/**/*.sh',
            ]
        },
        python_requires='>=3.8',
        install_requires=['torch>=2.0', 'mmengine>=0.10', 'numpy'],
        extras_require={
            'tests': ['pytest'],
            # make demo: mmpretrain models, the bundled digits, the figure
            'demo': ['mmpretrain>=1.0', 'scikit-learn', 'matplotlib'],
        },
        ext_modules=ext_modules,
        cmdclass=cmdclass,
        license='Apache-2.0',
        license_files=['LICENSE'],
        zip_safe=False,
    )
