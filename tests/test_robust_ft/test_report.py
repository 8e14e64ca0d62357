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


CLIP = ["backbone <- clip.pth (prefix 'backbone')",
        "head <- zeroshot-head.pth (prefix 'head')"]


def zero_shot_run(id_acc, ood, sources=CLIP, source='zero_shot'):
    return dict(run('zero-shot', None, None, None, id_acc, ood),
                zero_shot=list(sources), source=source)


def zero_shot_head_runs(alpha_0=False, start=CLIP):
    """Two seeds of an SPD run of a zero-shot-head config, each with a
    WiSE-FT sweep (alpha 0 tested or not) whose alpha 0 is ``start``'s
    model."""
    points = [(0.5, 68., 52.), (1., 70., 45.)]
    runs_out = []
    for seed, shift in ((0, 0.), (1, 2.)):
        sweep = ([(0., 60. + shift, 56. + shift)] if alpha_0 else []) + [
            (a, i + shift, o + shift) for a, i, o in points]
        runs_out.append(dict(
            run('spd_zs', 1.0, seed, 80. + shift, 70. + shift,
                (40. + shift, 50. + shift), curve(*sweep)),
            wise_ft_pretrained=list(start) if start else None))
    return runs_out


def test_zero_shot_row_starts_the_wise_ft_curve():
    zero = zero_shot_run(61., (50., 60.))
    report = build_report([*zero_shot_head_runs(), zero], 'real', OOD,
                          'accuracy/top1')
    row, spd = report['methods']  # the zero-shot row first
    assert row['key'] == 'zero-shot' and row['zero_shot'] == CLIP
    assert row['setting'] == 'no training' and row['strength'] is None
    assert row['summary']['real']['mean'] == 61.
    assert row['summary']['ood_avg']['mean'] == 55.
    assert row['summary']['val'] is None and not row['reference']
    # the sweeps did not test alpha 0: it is the zero-shot row's numbers
    wise = spd['wise_ft']
    assert wise['alphas'] == [0., 0.5, 1.]
    assert wise['start'] == 'zero-shot'
    assert wise['zero_shot_run'] == 'zero-shot'
    start = wise['points'][0]
    assert start['id']['mean'] == 61. and start['ood']['mean'] == 55.
    assert start['sets']['sketch']['mean'] == 50. and start['n'] == 2
    assert wise['points'][1]['id']['mean'] == 69.  # seeds' mean
    assert spd['zero_shot'] is None
    # table, markdown and CSV: the zero-shot row first
    text = format_text(report).splitlines()
    assert text[2].split()[:3] == ['zero-shot', 'no', 'training']
    assert '61.0' in text[2]
    assert text[3].startswith('spd_zs ')
    rows = list(csv.DictReader(io.StringIO(format_csv(report))))
    assert [r['method'] for r in rows] == ['zero-shot', 'spd_zs',
                                           'spd_zs + WiSE-FT']
    assert float(rows[0]['clipart_mean']) == 60.
    assert rows[0]['val_mean'] == ''
    assert format_markdown(report).splitlines()[2].startswith(
        '| zero-shot | no training | - | 61.0 |')


def test_a_tested_alpha_0_is_kept_and_other_curves_are_not_extended():
    zero = zero_shot_run(61., (50., 60.))
    # alpha 0 in the sweep: its own numbers (the same weights)
    report = build_report([*zero_shot_head_runs(alpha_0=True), zero],
                          'real', OOD, 'accuracy/top1')
    wise = report['methods'][1]['wise_ft']
    assert wise['points'][0]['id']['mean'] == 61.  # mean of 60 and 62
    assert wise['points'][0]['ood']['mean'] == 57.
    assert wise['start'] == 'zero-shot' and wise['zero_shot_run'] is None
    # alpha 0 of another model (fine-tuned head, or another CLIP): no
    # zero-shot start
    for start in (None, ["backbone <- other.pth (prefix 'backbone')"]):
        report = build_report([*zero_shot_head_runs(start=start), zero],
                              'real', OOD, 'accuracy/top1')
        wise = report['methods'][1]['wise_ft']
        assert wise['alphas'] == [0.5, 1.]
        assert wise['zero_shot_run'] is None
        assert wise['start'] == ('zero-shot' if start else 'pretrained')
    # no zero-shot row: nothing changes
    report = build_report(zero_shot_head_runs(), 'real', OOD,
                          'accuracy/top1')
    assert [m['key'] for m in report['methods']] == ['spd_zs']
    assert report['methods'][0]['wise_ft']['alphas'] == [0.5, 1.]


def test_zero_shot_runs_of_two_models_or_mixed_with_training_are_errors():
    with pytest.raises(ValueError, match=r"zero-shot runs of 'zero-shot' "
                       r"test different pretrained models: .*other\.pth"):
        build_report([zero_shot_run(61., (50., 60.)),
                      zero_shot_run(61., (50., 60.), ['x <- other.pth'])],
                     'real', OOD, 'accuracy/top1')
    trained = dict(run('zero-shot', None, 0, 70., 70., (40., 50.)),
                   source='trained')
    with pytest.raises(ValueError, match=r"Method 'zero-shot' has "
                       r"zero-shot runs and runs of trained models "
                       r"\['trained'\]"):
        build_report([zero_shot_run(61., (50., 60.)), trained], 'real',
                     OOD, 'accuracy/top1')
