"""The FlexCMH paper's published numbers (Wiki MAP, Tables III-V) and the
names of its training scenarios, shown beside ours in tables and plots."""

# The paper's FlexCMH MAP on Wiki (Tables III-V), code lengths 16/32/64/128.
PAPER_BITS = (16, 32, 64, 128)
PAPER_WIKI = {
    "paired": {"I->T": (.2846, .2889, .2912, .2935), "T->I": (.2812, .2836, .2857, .2869)},
    "weak": {"I->T": (.2629, .2647, .2655, .2687), "T->I": (.2538, .2541, .2557, .2563)},
    "weak2b": {"I->T": (.2577, .2593, .2612, .2635), "T->I": (.2503, .2515, .2534, .2542)},
    "unpaired": {"I->T": (.2511, .2534, .2548, .2563), "T->I": (.2437, .2459, .2483, .2501)},
}
SCENARIO_TITLES = {
    "paired": "completely paired",
    "weak": "weakly paired 2a (50% pairs known)",
    "weak2b": "weakly paired 2b (2a, 10% texts removed)",
    "unpaired": "completely unpaired",
}


def paper_value(scenario, direction, n_bits):
    """The paper's Wiki MAP for a cell, or None."""
    row = PAPER_WIKI.get(scenario, {}).get(direction)
    if row is None or n_bits not in PAPER_BITS:
        return None
    return row[PAPER_BITS.index(n_bits)]
