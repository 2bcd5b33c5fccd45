"""The one time limit the tests keep: how long a test waits for something before calling it hung.

No test may depend on how fast the machine is, so tests wait on events (a line printed, a
port open, a process exiting), never for a fixed time. This limit only bounds a hang:
reaching it means a bug, so it is far above the slowest healthy wait (the longest is one
two-worker training job on a loaded 2-core machine without AVX-512), and only a hung test
ever waits that long.
"""

HANG_S = 1800
