"""tools/misc/benchmark_sharded_memory.py on a tiny ViT and 2 CPU
processes: one run reports every mode's peak memory on every rank and the
FSDP2 modes' ratios to DDP from the same run."""
import contextlib
import io
import json

import pytest

from tests.tool_modules import load_tool


@pytest.mark.slow
def test_one_run_reports_every_mode_and_the_ratios(tmp_path):
    tool = load_tool('misc/benchmark_sharded_memory.py')
    out = tmp_path / 'memory.json'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report = tool.main(['--model', 'vit-tiny', '--out', str(out)])
    assert json.loads(out.read_text()) == report
    assert report['processes'] == 2
    assert set(report['peak_gib']) == {'ddp', 'fsdp2', 'fsdp2-meta'}
    for mode, peaks in report['peak_gib'].items():
        assert len(peaks) == 2 and all(p > 0 for p in peaks), mode
        # the peak after the steps includes the peak after preparing
        assert all(a >= b for a, b in zip(peaks,
                                          report['prepared_gib'][mode]))
    ddp = max(report['peak_gib']['ddp'])
    for mode in ('fsdp2', 'fsdp2-meta'):
        assert report['largest_peak_over_ddp'][mode] == pytest.approx(
            max(report['peak_gib'][mode]) / ddp)
    assert 'fsdp2-meta' in printed.getvalue()
