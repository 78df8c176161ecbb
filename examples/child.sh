#!/bin/sh
# The shell child of the demo, written as an LTP shell test would be.
set -e
tst_checkpoint() { ${TST_CHECKPOINT:-tst_checkpoint} "$@"; }

echo "shell child: waiting at checkpoint 0"
tst_checkpoint wait 10000 0          # TST_CHECKPOINT_WAIT 0
echo "shell child: woken; telling the parent at checkpoint 1"
tst_checkpoint wake 10000 1 1        # TST_CHECKPOINT_WAKE 1
