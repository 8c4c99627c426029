"""What a researcher looks at: TensorBoard events, plots, the results table, the notebook."""

import pathlib
import struct

import nbformat
import pytest
from nbclient import NotebookClient

import fajax
from fajax import plot
from fajax import report
from fajax.configs import mnist
from fajax.errors import FajaxError

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory, mnist_data_dir):
  root = tmp_path_factory.mktemp('runs')
  workdirs = []
  for method in ('bp', 'fa'):
    config = mnist.get_config(method)
    config.update(dict(data_dir=mnist_data_dir, num_train_steps=40, log_every_steps=10,
                       train_examples_limit=2048, eval_examples_limit=500))
    workdir = root / f'mnist_{method}'
    fajax.train(config, str(workdir))
    workdirs.append(str(workdir))
  return workdirs


def _tensorboard_scalars(workdir):
  """tag → [(step, value)] read from the event files' TFRecord framing."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

  scalars = {}
  for path in sorted((pathlib.Path(workdir) / 'tensorboard' / 'replica_0').iterdir()):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_tensorboard_events_hold_the_logged_metrics(two_runs):
  scalars = _tensorboard_scalars(two_runs[0])
  assert [step for step, _ in scalars['train/loss']] == [10, 20, 30, 40]
  assert [step for step, _ in scalars['eval/top1_error']] == [40]
  assert 'align/conv1/angle_delta_deg' in scalars and 'align/fc2/norm_ratio' in scalars


def test_alignment_plots_find_nested_layers():
  metrics = [{'align/conv1/angle_wb_deg': 80.0, 'align/stage1/conv/norm_ratio': 1.0,
              'align/blocks/0/query/angle_delta_deg': 70.0, 'train/loss': 1.0}]
  assert plot.aligned_layers(metrics) == ['blocks/0/query', 'conv1', 'stage1/conv']


def test_plot_writes_learning_curves_and_alignment(two_runs, tmp_path):
  paths = plot.plot(two_runs, str(tmp_path))
  for path in paths:
    data = pathlib.Path(path).read_bytes()
    assert data.startswith(b'\x89PNG') and len(data) > 20_000


def test_report_fills_the_cells_that_were_run(two_runs, tmp_path):
  text = report.report(two_runs, str(tmp_path))
  rows = {line.split(' | ')[0].lstrip('| '): line.split(' | ') for line in text.splitlines()
          if line.startswith('| ') and not line.startswith('| method')}
  assert rows['BP'][1].endswith('(0.8)') and not rows['BP'][1].startswith('not run')
  assert rows['FA'][1].endswith('(1.1)') and not rows['FA'][1].startswith('not run')
  assert rows['FA-uSF SN'][1] == 'not run (0.7)'
  assert rows['DFA'][3] == ''  # the paper has no CIFAR-10 2 DFA cell
  assert (tmp_path / 'results.png').read_bytes().startswith(b'\x89PNG')


def test_report_refuses_a_folder_that_is_no_run(tmp_path):
  with pytest.raises(FajaxError, match='is not a fajax workdir'):
    report.report([str(tmp_path)], str(tmp_path / 'out'))


def test_notebook_runs_top_to_bottom(tmp_path, mnist_data_dir, monkeypatch):
  monkeypatch.setenv('FAJAX_DATA_DIR', mnist_data_dir)
  notebook = nbformat.read(REPO / 'notebooks' / 'fajax_colab.ipynb', as_version=4)
  [parameters] = [c for c in notebook.cells if 'parameters' in c.metadata.get('tags', [])]
  # One method: each more costs its compiles (≈ 45 s on 2 cores) and tests nothing new.
  parameters.source = (f'TRAIN_STEPS = 20\nLOG_EVERY = 10\nWORKDIR = {str(tmp_path)!r}\n'
                       "METHODS = ['fa_usf_sn']")
  NotebookClient(notebook, timeout=600, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()
  outputs = [o for c in notebook.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
  assert any('image/png' in o.get('data', {}) for o in outputs)
  assert any('JAX runs on [CpuDevice' in o.get('text', '') for o in outputs)
  assert (tmp_path / 'report' / 'results.md').exists()
  assert (tmp_path / 'mnist_fa_usf_sn' / 'metrics.jsonl').exists()
