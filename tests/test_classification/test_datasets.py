"""DomainNet and the ImageNet shifts, read from tiny sets in their real
on-disk layouts and built through mmpretrain's DATASETS registry."""
import os
import os.path as osp

import pytest
from mmengine.registry import DefaultScope
from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
from mmpretrain.registry import DATASETS

import mmspd.classification  # noqa: F401  (registers the data sets)
from mmspd.classification.categories import (DOMAINNET_CLASSES,
                                             IMAGENET_A_WNIDS,
                                             IMAGENET_R_WNIDS, IMAGENET_WNIDS)
from mmspd.classification.domainnet import carve_validation_split
from tests.test_classification.clip_runs import load_tool
from tests.test_classification.data_files import (DOMAINNET_OOD,
                                                  SHARED_WNIDS,
                                                  write_domainnet,
                                                  write_imagenet_v2,
                                                  write_wnid_folders)

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]


def build(**cfg):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dict(cfg, pipeline=PIPELINE))


def items(dataset, root):
    """``[(path relative to root, label)]`` of a built data set."""
    return sorted((osp.relpath(d['img_path'], root), d['gt_label'])
                  for d in dataset.load_data_list())


@pytest.fixture(scope='module')
def domainnet(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('domainnet'))
    return root, write_domainnet(root)


@pytest.mark.parametrize('domain,split', [
    ('real', 'train'), ('real', 'test'), ('real', 'train_split'),
    ('real', 'val_split')] + [(d, 'test') for d in DOMAINNET_OOD])
def test_domainnet_reads_every_split_file(domainnet, domain, split):
    root, lists = domainnet
    dataset = build(type='DomainNet', data_root=root, domain=domain,
                    split=split)
    assert items(dataset, root) == sorted(lists[f'{domain}_{split}.txt'])
    assert dataset.metainfo['classes'] == DOMAINNET_CLASSES
    sample = dataset[0]
    assert sample['inputs'].shape[0] == 3  # a decoded RGB image
    assert int(sample['data_samples'].gt_label) in {
        label for _, label in lists[f'{domain}_{split}.txt']}


def test_domainnet_split_files_in_their_own_folder(tmp_path):
    root = str(tmp_path)
    lists = write_domainnet(root, per_class=1)
    os.makedirs(osp.join(root, 'lists'))
    os.rename(osp.join(root, 'sketch_test.txt'),
              osp.join(root, 'lists', 'sketch_test.txt'))
    dataset = build(type='DomainNet', data_root=root, domain='sketch',
                    split='test', split_dir='lists')
    assert items(dataset, root) == sorted(lists['sketch_test.txt'])


def _write_split(root, text):
    with open(osp.join(root, 'real_bad.txt'), 'w') as f:
        f.write(text)


@pytest.mark.parametrize('line,message', [
    ('real/airplane/a.jpg 0', r"class folder 'airplane' does not match "
     r"label 0 \('aircraft_carrier'\)"),
    ('sketch/airplane/a.jpg 1', "not an image of domain 'real'"),
    ('real/airplane/a.jpg one', "label 'one' is not an integer"),
    ('real/airplane/a.jpg 345', r'label 345 is outside \[0, 345\)'),
    ('real/airplane/a.jpg', 'expected "<domain>/<class>/<file> <label>"'),
])
def test_domainnet_rejects_a_bad_line_naming_file_and_line(
        tmp_path, line, message):
    _write_split(str(tmp_path), f'real/airplane/ok.jpg 1\n{line}\n')
    with pytest.raises(ValueError, match=message) as info:
        build(type='DomainNet', data_root=str(tmp_path), domain='real',
              split='bad')
    assert 'real_bad.txt:2' in str(info.value)


def test_domainnet_argument_errors_name_the_value(domainnet):
    root, _ = domainnet
    with pytest.raises(ValueError, match="Unknown DomainNet domain 'photo'"):
        build(type='DomainNet', data_root=root, domain='photo', split='test')
    with pytest.raises(ValueError, match="Invalid DomainNet split '../x'"):
        build(type='DomainNet', data_root=root, domain='real', split='../x')
    with pytest.raises(FileNotFoundError,
                       match=r"real_val\.txt.*splits found for this domain: "
                       r"\['test', 'train', 'train_split', 'val_split'\]"):
        build(type='DomainNet', data_root=root, domain='real', split='val')


def test_carved_validation_split_is_per_class_disjoint_and_seeded():
    lines = [f'real/{DOMAINNET_CLASSES[c]}/{i}.jpg {c}'
             for c in range(3) for i in range(20)]
    train, val = carve_validation_split(lines, 0.1, seed=3)
    assert sorted(train + val) == sorted(lines)
    assert not set(train) & set(val)
    assert [sum(line.endswith(f' {c}') for line in val)
            for c in range(3)] == [2, 2, 2]
    assert carve_validation_split(lines, 0.1, seed=3) == (train, val)
    assert carve_validation_split(lines, 0.1, seed=4)[1] != val
    low, val_low = carve_validation_split(lines, 0.1, seed=3,
                                          train_fraction=0.1)
    assert val_low == val and set(low) < set(train)
    assert [sum(line.endswith(f' {c}') for line in low)
            for c in range(3)] == [2, 2, 2]  # round(0.1 * 18)
    with pytest.raises(ValueError, match='val_fraction must be in'):
        carve_validation_split(lines, 1.5)


def test_imagenet_v2_labels_are_the_folder_numbers_not_their_sort_order(
        tmp_path):
    root = str(tmp_path / 'imagenetv2-matched-frequency-format-val')
    written = write_imagenet_v2(root, num_folders=12)
    assert sorted(os.listdir(root))[:4] == ['0', '1', '10', '11']
    dataset = build(type='ImageNetV2', data_root=root)
    assert items(dataset, root) == sorted(written)
    by_folder = {rel.split('/')[0]: label
                 for rel, label in items(dataset, root)}
    assert by_folder['10'] == 10 and by_folder['2'] == 2
    assert dataset.metainfo['classes'] == IMAGENET_CATEGORIES


@pytest.mark.parametrize('folder', ['010', 'n01440764', '1000', '-1'])
def test_imagenet_v2_rejects_a_folder_that_is_not_a_class_index(
        tmp_path, folder):
    write_imagenet_v2(str(tmp_path), num_folders=2)
    os.makedirs(tmp_path / folder)
    with pytest.raises(ValueError, match=f"class folder '{folder}'"):
        build(type='ImageNetV2', data_root=str(tmp_path))


def test_imagenet_sketch_maps_wordnet_ids_to_the_1000_class_index(tmp_path):
    wnids = ['n15075141', 'n01440764', IMAGENET_WNIDS[500]]
    written = write_wnid_folders(str(tmp_path / 'sketch'), wnids)
    dataset = build(type='ImageNetSketch', data_root=str(tmp_path),
                    data_prefix='sketch')
    assert items(dataset, str(tmp_path / 'sketch')) == sorted(written)
    assert {label for _, label in written} == {999, 0, 500}


@pytest.mark.parametrize('kind,wnids,other', [
    ('ImageNetA', IMAGENET_A_WNIDS, IMAGENET_R_WNIDS),
    ('ImageNetR', IMAGENET_R_WNIDS, IMAGENET_A_WNIDS),
])
def test_imagenet_a_r_labels_and_200_class_subset(tmp_path, kind, wnids,
                                                  other):
    chosen = list(SHARED_WNIDS) + [w for w in wnids if w not in other][:1]
    written = write_wnid_folders(str(tmp_path), chosen, readme=True)
    dataset = build(type=kind, data_root=str(tmp_path))
    assert items(dataset, str(tmp_path)) == sorted(written)
    subset = dataset.metainfo['label_subset']
    # the mask is the benchmark's 200 classes, whatever folders exist
    assert list(subset) == sorted(IMAGENET_WNIDS.index(w) for w in wnids)
    assert {label for _, label in written} <= set(subset)
    assert len(dataset.metainfo['classes']) == 1000
    stranger = next(w for w in other if w not in wnids)
    os.makedirs(tmp_path / stranger)
    with pytest.raises(ValueError,
                       match=f"{kind}: class folder '{stranger}'.*200"):
        build(type=kind, data_root=str(tmp_path))


def test_class_folder_sets_reject_ann_file_and_a_missing_root(tmp_path):
    with pytest.raises(TypeError, match="takes no ann_file.*'meta/val.txt'"):
        build(type='ImageNetA', data_root=str(tmp_path),
              ann_file='meta/val.txt')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        build(type='ImageNetR', data_root=str(tmp_path / 'missing'))


def test_split_tool_writes_lists_the_data_set_reads(tmp_path):
    root = str(tmp_path)
    lists = write_domainnet(root, per_class=9)  # 10 train images a class
    for name in ('real_train_split.txt', 'real_val_split.txt'):
        os.remove(osp.join(root, name))  # only the official lists remain
    tool = load_tool('dataset_converters/domainnet_val_split.py')
    tool.main([root, '--domain', 'real', '--val-fraction', '0.2',
               '--train-percent', '50'])
    read = {split: items(build(type='DomainNet', data_root=root,
                               domain='real', split=split), root)
            for split in ('train_split', 'val_split',
                          'train_50_percent_split')}
    assert sorted(read['train_split'] + read['val_split']) == sorted(
        lists['real_train.txt'])
    assert len(read['val_split']) == 4 * 2  # 20 % of 10, 4 classes
    assert set(read['train_50_percent_split']) < set(read['train_split'])
    assert len(read['train_50_percent_split']) == 4 * 4
    with pytest.raises(FileExistsError, match='real_train_split.txt'):
        tool.main([root, '--domain', 'real'])


def test_domainnet_names_a_listed_image_that_is_not_on_disk(tmp_path):
    root = str(tmp_path)
    lists = write_domainnet(root, per_class=1)
    first, _ = lists['sketch_test.txt'][1]
    os.remove(osp.join(root, first))
    with pytest.raises(FileNotFoundError,
                       match=rf"1 of the 4 images listed by DomainNet split "
                       rf"file '.*sketch_test.txt' do not exist, the first: "
                       rf"'.*{first}'"):
        build(type='DomainNet', data_root=root, domain='sketch',
              split='test')
