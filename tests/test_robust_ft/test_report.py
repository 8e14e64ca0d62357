"""The cross-run report: selection on ID validation only, mean +- std over
seeds, WiSE-FT rows and curves, the files it writes."""
import csv
import io
import json
import statistics

import pytest

from mmspd.robust_ft.report import (build_report, format_csv, format_json,
                                    format_markdown, format_text,
                                    select_strength)

OOD = ['sketch', 'clipart']


def run(method, strength, seed, val, id_acc=None, ood=(None, None),
        wise_ft=None):
    test = None
    if id_acc is not None:
        test = dict(real=id_acc, sketch=ood[0], clipart=ood[1],
                    ood_avg=(ood[0] + ood[1]) / 2)
    return dict(method=method, strength=strength, seed=seed, val=val,
                test=test, wise_ft=wise_ft,
                source=f'{method}/{strength}/{seed}')


def curve(*points):
    return [dict(alpha=a, test=dict(real=i, sketch=o, clipart=o, ood_avg=o))
            for a, i, o in points]


@pytest.fixture
def runs():
    return [
        # spd: 0.1 has the better mean val, 1.0 the better (unseen) test
        run('spd', 0.1, 0, 80., 70., (40., 50.),
            curve((0., 60., 55.), (0.5, 68., 52.), (1., 70., 45.))),
        run('spd', 0.1, 1, 82., 72., (42., 52.),
            curve((0., 62., 57.), (0.5, 70., 54.), (1., 72., 47.))),
        run('spd', 1.0, 0, 79., 99., (99., 99.)),
        run('spd', 1.0, 1, 80., 99., (99., 99.)),
        # adamw: a tie on mean val: the first strength in order wins
        run('adamw', 0.01, 0, 75.), run('adamw', 0.01, 1, 77.),
        run('adamw', 0.1, 0, 76., 66., (30., 40.)),
        run('adamw', 0.1, 1, 76., 68., (32., 44.)),
        run('probe', None, 0, 60., 55., (45., 45.)),
    ]


def test_strength_is_chosen_on_id_validation_only(runs):
    report = build_report(runs, 'real', OOD, 'accuracy/top1',
                          orders={'adamw': [0.1, 0.01]},
                          references=['probe'])
    spd, adamw, probe = report['methods']
    assert spd['strength'] == 0.1  # mean val 81 > 79.5, test ignored
    assert [g['mean_val'] for g in spd['grid']] == [81., 79.5]
    assert adamw['strength'] == 0.1  # tie at 76: first in the given order
    assert probe['reference'] and probe['strength'] is None
    # ascending order by default: the tie would go to 0.01, which was
    # never tested, and that is an error rather than a silent skip
    with pytest.raises(ValueError, match=r"Method 'adamw': the strength "
                       r"selected on ID validation \(0\.01\) has untested"):
        build_report(runs, 'real', OOD, 'accuracy/top1')


def test_mean_and_sample_std_over_seeds(runs):
    report = build_report(runs, 'real', OOD, 'accuracy/top1',
                          orders={'adamw': [0.1, 0.01]})
    spd = report['methods'][0]['summary']
    assert spd['real']['mean'] == 71.
    assert spd['real']['std'] == pytest.approx(statistics.stdev([70, 72]))
    assert spd['ood_avg']['mean'] == pytest.approx(46.)
    assert spd['val']['mean'] == 81. and spd['val']['n'] == 2
    probe = report['methods'][2]['summary']
    assert probe['real']['n'] == 1 and probe['real']['std'] != \
        probe['real']['std']  # NaN for one seed
    saved = json.loads(format_json(report))
    assert saved['methods'][2]['summary']['real']['std'] is None


def test_wise_ft_curves_and_fixed_alpha_rows(runs):
    report = build_report(runs, 'real', OOD, 'accuracy/top1',
                          orders={'adamw': [0.1, 0.01]})
    spd = report['methods'][0]
    assert spd['wise_ft']['alphas'] == [0., 0.5, 1.]
    mid = spd['wise_ft']['points'][1]
    assert mid['id']['mean'] == 69. and mid['ood']['mean'] == 53.
    [row] = report['wise_ft_rows']
    assert row['name'] == 'spd + WiSE-FT'
    assert row['setting'] == 'strength=0.1, α=0.5'
    assert row['summary']['real']['mean'] == 69.
    assert row['summary']['val'] is None
    assert report['methods'][1]['wise_ft'] is None


def test_table_markdown_and_csv(runs):
    report = build_report(runs, 'real', OOD, 'accuracy/top1',
                          names={'spd': 'AdamSPD'},
                          strength_names={'spd': 'lambda'},
                          orders={'adamw': [0.1, 0.01]},
                          references=['probe'])
    text = format_text(report).splitlines()
    assert text[0].split()[:6] == ['method', 'setting', 'ID', 'val', 'ID',
                                   'test']
    assert text[2].startswith('AdamSPD ') and 'lambda=0.1' in text[2]
    assert '71.0 ± 1.4' in text[2]
    assert text[4].startswith('AdamSPD + WiSE-FT')
    assert text[5].startswith('probe (reference)')
    markdown = format_markdown(report).splitlines()
    assert markdown[0].startswith('| method | setting | ID val |')
    assert len(markdown) == 2 + 4
    rows = list(csv.DictReader(io.StringIO(format_csv(report))))
    assert [r['method'] for r in rows] == ['AdamSPD', 'adamw', 'probe',
                                           'AdamSPD + WiSE-FT']
    assert float(rows[0]['sketch_mean']) == 41.
    assert rows[2]['real_std'] == ''  # one seed


def test_missing_validation_score_is_an_error(runs):
    runs[0]['val'] = None
    with pytest.raises(ValueError, match=r"Run 'spd/0\.1/0' of method "
                       r"'spd' has no ID validation score"):
        select_strength([r for r in runs if r['method'] == 'spd'])


def test_missing_set_is_an_error(runs):
    del runs[0]['test']['clipart']
    with pytest.raises(ValueError, match=r"Run 'spd/0\.1/0' has no result "
                       r"for the set\(s\) \['clipart'\]"):
        build_report(runs, 'real', OOD, 'accuracy/top1')
