"""Fixtures and collection rules shared by the whole suite."""
import pytest
import torch

from tests.dataset_files import write_custom_classification_set


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, with the reason, where there is no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def tiny_classification_data(tmp_path_factory) -> str:
    """A tiny mmpretrain ``CustomDataset`` (3 classes, ``train`` and
    ``val``; :func:`tests.dataset_files.write_custom_classification_set`),
    written once per session. Tests only read it."""
    return write_custom_classification_set(
        str(tmp_path_factory.mktemp('tiny_cls')))
