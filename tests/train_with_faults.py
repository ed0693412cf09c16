"""``python tests/train_with_faults.py ARGS...`` = ``python train.py ARGS...`` with the test-only
fault of DASSL_FAULT_INJECT (kill@N or nan@N, see fault_injection.py) installed first."""
import os
import runpy
import sys

import fault_injection  # this script's folder (tests/) is sys.path[0]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    sys.path[0] = ROOT  # as `python train.py` sets it
    fault_injection.install(os.environ[fault_injection.FAULT_ENV])
    sys.argv[0] = os.path.join(ROOT, "train.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
