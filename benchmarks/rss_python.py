#!/usr/bin/env python3
"""Run a command and record its peak RSS (KiB, with its waited-for descendants) and wall seconds.

    rss_python.py --out FILE -- CMD [ARGS...]
        the benchmark's launcher: started from a small process, so the peak is the command's own
        (Linux carries a process's pre-exec peak across exec, so a fork of the big harness would not do)
    rss_python.py MODULE_FILE ...
        as ansible_python_interpreter: runs NODEOPS_BENCH_PYTHON on the module and appends its
        peak to NODEOPS_BENCH_RSS_FILE; standard input and output pass straight through
"""
import os
import subprocess
import sys
import time

if sys.argv[1:2] == ["--out"]:
    out, cmd = sys.argv[2], sys.argv[4:]
else:
    out, cmd = os.environ["NODEOPS_BENCH_RSS_FILE"], [os.environ["NODEOPS_BENCH_PYTHON"]] + sys.argv[1:]
started = time.monotonic()
proc = subprocess.Popen(cmd)
_pid, status, usage = os.wait4(proc.pid, 0)
with open(out, "a") as f:
    f.write("%d %.3f\n" % (usage.ru_maxrss, time.monotonic() - started))
sys.exit(os.waitstatus_to_exitcode(status))
