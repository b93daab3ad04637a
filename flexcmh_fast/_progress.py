"""A small progress bar for long loops (``verbose=True``), written to stderr."""
import sys
import time


class ProgressBar:
    """Progress reporting that costs nothing when ``verbose`` is false.

    Parameters
    ----------
    total : int
        Number of steps expected (the loop may stop early).
    desc : str
        Label shown before the bar.
    verbose : bool
        When false every method is a no-op.
    min_interval : float
        Seconds between redraws, so a fast loop is not slowed by printing.
    """

    def __init__(self, total, desc, verbose, min_interval=0.2, stream=None):
        self.total = max(int(total), 1)
        self.desc = desc
        self.verbose = bool(verbose)
        self.min_interval = min_interval
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self.start = time.perf_counter()
        self._last = -1.0
        self._info = ""

    def update(self, n=1, info=""):
        if not self.verbose:
            return
        self.count += n
        self._info = info
        now = time.perf_counter()
        if now - self._last >= self.min_interval or self.count >= self.total:
            self._last = now
            self._draw(now)

    def _draw(self, now):
        frac = min(self.count / self.total, 1.0)
        width = 24
        filled = int(frac * width)
        elapsed = now - self.start
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r{self.desc} [{bar}] {self.count}/{self.total} "
            f"{elapsed:6.1f}s {self._info}"
        )
        self.stream.flush()

    def close(self, info=None):
        if not self.verbose:
            return
        if info is not None:
            self._info = info
        self._draw(time.perf_counter())
        self.stream.write("\n")
        self.stream.flush()
