# tiny_vit_ddp.py trained with FSDP2: mmengine's FlexibleRunner and mmspd's
# FSDP2Strategy, each TransformerEncoderLayer an FSDP unit. Launch on N
# processes (tools/dist_train.sh); on CPU they use gloo.
_base_ = ['./tiny_vit_ddp.py']

runner_type = 'FlexibleRunner'
strategy = dict(type='FSDP2Strategy',
                shard_modules=['TransformerEncoderLayer'])
