"""The shipped class lists against independent sources."""
import torchvision.datasets.imagenette as imagenette
from mmpretrain.datasets.categories import IMAGENET_CATEGORIES

from mmspd.classification.categories import (DOMAINNET_CLASSES,
                                             IMAGENET_A_WNIDS,
                                             IMAGENET_R_WNIDS, IMAGENET_WNIDS)

#: ``indices_in_1k`` of hendrycks/natural-adv-examples eval.py: the
#: 1000-class indices of ImageNet-A's 200 classes, a list written
#: independently of the WordNet ids.
IMAGENET_A_INDICES = (
    6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70, 71, 76,
    79, 89, 90, 94, 96, 97, 99, 105, 107, 108, 110, 113, 124, 125, 130, 132,
    143, 144, 150, 151, 207, 234, 235, 254, 277, 283, 287, 291, 295, 298,
    301, 306, 307, 308, 309, 310, 311, 313, 314, 315, 317, 319, 323, 324,
    326, 327, 330, 334, 335, 336, 347, 361, 363, 372, 378, 386, 397, 400,
    401, 402, 404, 407, 411, 416, 417, 420, 425, 428, 430, 437, 438, 445,
    456, 457, 461, 462, 470, 472, 483, 486, 488, 492, 496, 514, 516, 528,
    530, 539, 542, 543, 549, 552, 557, 561, 562, 569, 572, 573, 575, 579,
    589, 606, 607, 609, 614, 626, 627, 640, 641, 642, 643, 658, 668, 677,
    682, 684, 687, 701, 704, 719, 736, 746, 749, 752, 758, 763, 765, 768,
    773, 774, 776, 779, 780, 786, 792, 797, 802, 803, 804, 813, 815, 820,
    823, 831, 833, 835, 839, 845, 847, 850, 859, 862, 870, 879, 880, 888,
    890, 897, 900, 907, 913, 924, 932, 933, 934, 937, 943, 945, 947, 951,
    954, 956, 957, 959, 971, 972, 980, 981, 984, 986, 987, 988)


def test_imagenet_wnids_are_the_1000_sorted_class_ids():
    assert len(IMAGENET_WNIDS) == len(set(IMAGENET_WNIDS)) == 1000
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)
    assert len(IMAGENET_CATEGORIES) == 1000


def test_imagenet_wnids_agree_with_torchvisions_class_names():
    # torchvision's Imagenette names ten classes by WordNet id; each must
    # sit at the index whose mmpretrain ImageNet name starts the same way
    table = imagenette.Imagenette._WNID_TO_CLASS
    assert len(table) == 10
    for wnid, names in table.items():
        index = IMAGENET_WNIDS.index(wnid)
        assert IMAGENET_CATEGORIES[index].split(',')[0] == names[0], wnid


def test_imagenet_a_and_r_are_200_class_subsets():
    for subset in (IMAGENET_A_WNIDS, IMAGENET_R_WNIDS):
        assert len(subset) == len(set(subset)) == 200
        assert set(subset) <= set(IMAGENET_WNIDS)
    assert IMAGENET_A_WNIDS != IMAGENET_R_WNIDS


def test_imagenet_a_positions_match_the_benchmarks_own_index_list():
    indices = tuple(IMAGENET_WNIDS.index(w) for w in IMAGENET_A_WNIDS)
    assert indices == IMAGENET_A_INDICES


def test_domainnet_has_345_classes_in_split_file_label_order():
    assert len(DOMAINNET_CLASSES) == len(set(DOMAINNET_CLASSES)) == 345
    # the label order ignores case, "_" and "-" (so "cello" < "cell_phone"
    # and "The_Eiffel_Tower" sits among the t's): not Python's sort order
    key = [c.lower().replace('_', '').replace('-', '')
           for c in DOMAINNET_CLASSES]
    assert key == sorted(key)
    assert list(DOMAINNET_CLASSES) != sorted(DOMAINNET_CLASSES)
    assert DOMAINNET_CLASSES[0] == 'aircraft_carrier'
    assert DOMAINNET_CLASSES[-1] == 'zigzag'
