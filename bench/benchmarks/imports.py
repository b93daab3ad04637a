"""asv: import time of the package, measured in a fresh interpreter each time.

``import flexcmh_fast`` must stay cheap (lazy attributes: no Numba import);
importing the Hamming index loads the compiled extension only.
"""


class ImportTime:
    """Cold import of the package and of the search engine."""

    def timeraw_import_package(self):
        return "import flexcmh_fast"

    def timeraw_import_hamming_index(self):
        return "from flexcmh_fast import HammingIndex"
