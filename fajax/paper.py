"""The results table of Moskovitz, Litwin-Kumar & Abbott (arXiv 1812.06488): top-1 test error, %.

Rows are config method names, columns config column names; a missing cell was not run in the
paper.
"""

COLUMNS = ('mnist', 'cifar10_1', 'cifar10_2', 'imagenet1', 'imagenet2')

METHOD_NAMES = {
    'bp': 'BP',
    'bp_noise': 'BP + Noise',
    'bp_alignment': 'BP + Alignment',
    'fa': 'FA',
    'fa_usf_init_ei': 'FA-uSF Init. E/I',
    'fa_usf_init': 'FA-uSF Init.',
    'fa_usf_sn': 'FA-uSF SN',
    'dfa': 'DFA',
    'densefa': 'DenseFA',
    'bp_const': 'BP Const.',
    'fa_usf_const': 'FA-uSF Const.',
    'fa_usf_const_ei': 'FA-uSF Const E/I',
}

_ROWS = {
    'bp': (0.8, 17.2, 11.0, 79.5, 45.5),
    'bp_noise': (0.8, 17.4, 11.0, 79.2, 46.0),
    'bp_alignment': (0.9, 17.4, 11.2, 79.4, 45.9),
    'fa': (1.1, 26.6, 35.6, 95.2, 94.5),
    'fa_usf_init_ei': (0.9, 18.9, 17.8, 86.9, 67.8),
    'fa_usf_init': (0.7, 17.6, 13.1, 79.6, 60.1),
    'fa_usf_sn': (0.7, 17.7, 12.6, 78.9, 54.4),
    'dfa': (1.0, 28.6, None, None, None),
    'densefa': (0.7, 16.9, None, None, None),
    'bp_const': (None, None, None, 46.9, None),
    'fa_usf_const': (None, None, None, 51.2, None),
    'fa_usf_const_ei': (None, None, None, 66.1, None),
}

# method → column → the paper's error; only the cells the paper filled.
TABLE = {
    method: {column: value for column, value in zip(COLUMNS, row) if value is not None}
    for method, row in _ROWS.items()
}


def methods_of(column: str) -> list[str]:
  """The methods the paper ran on `column`, in the table's row order."""
  return [method for method, cells in TABLE.items() if column in cells]
