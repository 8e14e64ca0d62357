"""Completeness of a sharded checkpoint directory, judged from its files
alone: every rank recorded in ``meta.pth`` must have left its shard."""
import torch

from mmspd.engine import sharded_checkpoint as sc


def _directory(tmp_path, world_size, shard_ranks):
    path = tmp_path / 'ckpt'
    path.mkdir()
    (path / sc.DCP_METADATA_FILE).write_bytes(b'index')
    torch.save(dict(format=sc.SHARDED_FORMAT, world_size=world_size),
               str(path / sc.META_FILE))
    for rank in shard_ranks:
        (path / f'__{rank}_0.distcp').write_bytes(b'shard')
    return str(path)


def test_a_missing_rank_shard_makes_the_checkpoint_incomplete(tmp_path):
    path = _directory(tmp_path, world_size=2, shard_ranks=[0])
    assert not sc.is_complete_sharded_checkpoint(path)


def test_every_recorded_rank_present_is_complete(tmp_path):
    path = _directory(tmp_path, world_size=3, shard_ranks=[0, 1, 2])
    assert sc.is_complete_sharded_checkpoint(path)


def test_shards_of_other_ranks_do_not_count(tmp_path):
    """Three shard files where two ranks wrote: rank 1's is still missing."""
    path = _directory(tmp_path, world_size=2, shard_ranks=[0, 2, 3])
    assert not sc.is_complete_sharded_checkpoint(path)
