"""A ``CheckpointHook`` whose files survive a kill at any moment.

mmengine's ``CheckpointHook`` (0.10.x) is not crash-safe on a local disk:

* with ``max_keep_ckpts`` it deletes the oldest checkpoint *before* it
  saves the new one, so a kill in between leaves ``last_checkpoint`` naming
  a deleted file (auto-resume then crashes);
* it writes ``iter_N.pth`` in place, so a kill mid-write leaves a truncated
  file under the final name;
* it rewrites ``last_checkpoint`` in place, so a kill can leave it empty.

:class:`CrashSafeCheckpointHook` orders the same steps so that every file a
resume can read is complete. ``mmspd.engine.resume.use_crash_safe_checkpoints``
switches a config to it (``tools/train.py`` does).
"""
import os
import os.path as osp
import re
import shutil

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from ..durable_files import TMP_SUFFIX, atomic_write_text, replace_durably

__all__ = ['CrashSafeCheckpointHook', 'TMP_SUFFIX']


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a partial or dangling checkpoint.

    Takes exactly ``CheckpointHook``'s arguments and keeps its behaviour
    (file names, ``by_epoch``, ``max_keep_ckpts`` with the ``keep_ckpt_ids``
    kept in the message hub, best checkpoints, publishing), except for the
    order of the file operations of a periodic save on a local disk:

    1. the checkpoint is written to ``<name>.tmp`` in the same directory,
       flushed to disk and renamed to ``<name>`` with ``os.replace``
       (atomic), so ``<name>`` is either absent or complete;
    2. only then is ``last_checkpoint`` rewritten, through a temporary file
       and ``os.replace``;
    3. only then are the checkpoints beyond ``max_keep_ckpts`` deleted.

    A kill at any moment therefore leaves ``last_checkpoint`` naming a
    complete checkpoint. A kill between steps 2 and 3 leaves one outdated
    checkpoint behind, which later saves no longer track (it is not in the
    saved ``keep_ckpt_ids``); it is complete and harmless. Leftover
    ``*.tmp`` files of a killed save are removed by the next
    ``before_train``. File operations run on the main process only, as
    upstream.

    The atomic path needs a local directory and mmengine's ``Runner`` (whose
    ``save_checkpoint`` writes one file from the main process). Other file
    backends (``backend_args`` / ``file_client_args`` pointing to remote
    storage) and other runners (e.g. ``FlexibleRunner``, whose DeepSpeed or
    FSDP checkpoints are directories written by every rank) fall back to
    upstream behaviour, except strategies that write each checkpoint
    atomically themselves (``strategy.saves_atomically``: mmspd's
    ``FSDP2Strategy`` writes a sharded directory as ``<name>.tmp`` on every
    rank and renames it): then steps 2 and 3 keep their order, and
    leftover ``*.tmp`` directories are removed as files are. Best
    checkpoints (``save_best``) are written by the upstream code in every
    case.
    """

    def _crash_safe(self, runner) -> bool:
        """Whether this save can take the atomic local path: mmengine's
        ``Runner``, or a runner whose strategy writes each checkpoint
        atomically itself (``strategy.saves_atomically``, e.g.
        :class:`~mmspd.engine.strategies.FSDP2Strategy`)."""
        return (isinstance(self.file_backend, LocalBackend)
                and (isinstance(runner, Runner)
                     or self._strategy_saves_atomically(runner)))

    @staticmethod
    def _strategy_saves_atomically(runner) -> bool:
        strategy = getattr(runner, 'strategy', None)
        return bool(getattr(strategy, 'saves_atomically', False))

    def _tmp_pattern(self) -> re.Pattern:
        """Names of this hook's leftover temporary checkpoints."""
        parts = re.split(r'\{[^{}]*\}', self.filename_tmpl)
        return re.compile(r'\d+'.join(re.escape(p) for p in parts) +
                          re.escape(TMP_SUFFIX) + r'\Z')

    def before_train(self, runner) -> None:
        """Set up as upstream, then remove temporary files of killed
        saves from the checkpoint directory (main process, local only)."""
        super().before_train(runner)
        if not (self._crash_safe(runner) and is_main_process()
                and osp.isdir(self.out_dir)):
            return
        pattern = self._tmp_pattern()
        for name in os.listdir(self.out_dir):
            path = osp.join(self.out_dir, name)
            if not pattern.match(name):
                continue
            if osp.isfile(path):
                os.remove(path)
            elif osp.isdir(path):  # a sharded checkpoint's directory
                shutil.rmtree(path)
            else:
                continue
                runner.logger.info(f'Removed {path}, left by an interrupted '
                                   f'checkpoint save.')

    def _remove_checkpoint(self, step) -> None:
        """Delete the checkpoint of ``step`` (a file or, for DeepSpeed, a
        directory) if it exists."""
        path = self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):
            self.file_backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        """Save the checkpoint of ``step``: write, publish in
        ``last_checkpoint``, then delete what ``max_keep_ckpts`` drops."""
        if not self._crash_safe(runner):
            return super()._save_checkpoint_with_step(runner, step, meta)

        outdated = None
        # _save_checkpoint and _save_best_checkpoint may both save the same
        # step; the second save keeps the bookkeeping as it is.
        if self.max_keep_ckpts > 0 and not (len(self.keep_ckpt_ids) > 0 and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            # before saving, so the checkpoint records its own id
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        # an atomic strategy writes (on every rank) under the final name
        atomic_strategy = not isinstance(runner, Runner)
        tmp_filename = ckpt_filename if atomic_strategy else \
            ckpt_filename + TMP_SUFFIX
        runner.save_checkpoint(self.out_dir,
                               tmp_filename,
                               self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler,
                               meta=meta,
                               by_epoch=self.by_epoch,
                               backend_args=self.backend_args,
                               **self.args)

        # Runner.save_checkpoint writes on the main process only.
        if not is_main_process():
            return

        if not atomic_strategy:
            tmp_path = self.file_backend.join_path(self.out_dir,
                                                   tmp_filename)
            replace_durably(tmp_path, self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'),
                          self.last_ckpt)
        if outdated is not None and outdated != step:
            self._remove_checkpoint(outdated)
