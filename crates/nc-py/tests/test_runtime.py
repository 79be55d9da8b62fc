"""What a call costs the rest of the program: the GIL is released while the core computes,
and contiguous float32 features are read in place (no copy, checked by peak memory)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np

import nclab


def test_another_python_thread_runs_during_a_long_call():
    rng = np.random.default_rng(31)
    n, d, k = 300_000, 64, 50
    h = rng.standard_normal((n, d), dtype=np.float32)
    y = np.arange(n) % k
    w = rng.standard_normal((k, d))
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)  # sleeps release the GIL too: only the call can hold it

    thread = threading.Thread(target=tick)
    thread.start()
    time.sleep(0.05)
    start = time.perf_counter()
    nclab.metrics(h, y, w)
    end = time.perf_counter()
    done.set()
    thread.join()
    duration = end - start
    assert duration > 0.05, f"the call took {duration:.3f} s, too short to tell"
    inside = [t for t in ticks if start + 0.1 * duration < t < end - 0.1 * duration]
    # Holding the GIL, the call would leave no tick at all inside (the thread could not run);
    # released, the thread ticks about once a millisecond, less on a loaded machine.
    assert len(inside) >= 5, (len(inside), duration)


PEAK = """
import resource, sys
import numpy as np
import nclab

def peak_kib():
    # VmHWM: the peak of this process's own memory map, which exec starts afresh. ru_maxrss
    # would not do: Linux carries it over from the parent across fork and exec, so under a
    # parent that imported torch (500 MB) every child starts with that peak.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n, d, k = 120_000, 256, 10
rng = np.random.default_rng(0)
if sys.argv[1] == "fortran":  # made in Fortran order: no copy before the measurement
    h = rng.standard_normal((d, n), dtype=np.float32).T
else:
    h = rng.standard_normal((n, d), dtype=np.float32)
y = (np.arange(n) % k).astype(np.uint32)
w = np.random.default_rng(1).standard_normal((k, d)).astype(np.float32)
nclab.metrics(h[:1000], y[:1000], w)  # load everything, start the threads
before = peak_kib()
nclab.metrics(h, y, w)
after = peak_kib()
print((after - before) * 1024 / h.nbytes)
"""


def _peak_growth(layout: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PEAK, layout], check=True, capture_output=True, text=True
    )
    return float(out.stdout)


def test_contiguous_float32_features_are_not_copied():
    # Peak resident memory during the call grows by far less than the features' 123 MB...
    assert _peak_growth("c") < 0.2
    # ...while a layout that has to be copied shows the copy (so the measure can see one).
    assert _peak_growth("fortran") > 0.8


def test_importing_nclab_does_not_import_torch():
    code = "import sys, nclab, nclab.torch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
