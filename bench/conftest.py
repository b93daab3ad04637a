"""Benchmark-suite hooks: print the Hamming search ratio table at the end."""


def pytest_terminal_summary(terminalreporter):
    import sys

    module = sys.modules.get("test_bench_search") or sys.modules.get("bench.test_bench_search")
    if module is None:
        return
    lines = module.summary_lines()
    if lines:
        terminalreporter.section("flexcmh_fast vs faiss IndexBinaryFlat vs numpy")
        for line in lines:
            terminalreporter.write_line(line)
