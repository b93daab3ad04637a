"""Progress reporting for long loops (``verbose=True``), through tqdm.

:func:`progress` returns a do-nothing reporter when ``verbose`` is false, so
quiet runs neither import tqdm nor pay for it.
"""
import sys


class _Silent:
    def update(self, n=1, **info):
        pass

    def close(self):
        pass


def progress(total, desc, verbose):
    """A progress bar of ``total`` steps labelled ``desc`` on stderr, or a
    no-op when ``verbose`` is false.  ``update(n, **info)`` shows ``info``
    (e.g. the objective) after the bar."""
    if not verbose:
        return _Silent()
    from tqdm.auto import tqdm

    # Off a terminal (logs, CI) a line cannot be redrawn: one line per update,
    # seldom.
    interactive = getattr(sys.stderr, "isatty", lambda: False)()
    bar = tqdm(total=max(int(total), 1), desc=desc,
               file=sys.stderr if interactive else _Lines(sys.stderr),
               mininterval=0.2 if interactive else 5.0, leave=True)
    return _Bar(bar)


class _Lines:
    """A stream for tqdm off a terminal: each redraw becomes its own line
    (no carriage returns joining them)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.replace("\r", "").rstrip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self):
        self.stream.flush()


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, n=1, **info):
        if info:
            self.bar.set_postfix({k: (f"{v:.6g}" if isinstance(v, float) else v)
                                  for k, v in info.items()}, refresh=False)
        self.bar.update(n)

    def close(self):
        self.bar.close()
