"""Data on first use, against HTTP servers on 127.0.0.1: checksums, mirrors, atomic writes,
progress, safe extraction, and the data folder's default."""

import collections
import gzip
import hashlib
import http.server
import io
import os
import pathlib
import socket
import tarfile
import threading

import numpy as np
import pytest

from fajax import datasets
from fajax.configs import cifar10_1
from fajax.datasets import cifar10
from fajax.datasets import download
from fajax.datasets import mnist
from fajax.errors import DataError

from tests.fixtures import idx_bytes
from tests.fixtures import write_cifar10

Mirror = collections.namedtuple('Mirror', 'root url requested')
MNIST_COUNTS = {'train': 12, 't10k': 6}


@pytest.fixture
def mirror(tmp_path, monkeypatch):
  """An HTTP server on 127.0.0.1 in a thread, serving tmp_path/mirror as $FAJAX_DATA_MIRROR;
  `requested` lists the paths asked for. It stops when the test ends."""
  root = tmp_path / 'mirror'
  root.mkdir()
  requested = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    timeout = 10  # a stuck client cannot hold the server past the test

    def __init__(self, *args, **kwargs):
      super().__init__(*args, directory=str(root), **kwargs)

    def do_GET(self):
      requested.append(self.path)
      super().do_GET()

    def log_message(self, *args):
      del args  # keeps the test's output to its own lines

  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05),
                            daemon=True)
  thread.start()
  url = f'http://127.0.0.1:{server.server_port}'
  monkeypatch.setenv(download.MIRROR_ENV, url)
  yield Mirror(root, url, requested)
  server.shutdown()
  server.server_close()
  thread.join()


def _publish_small_mnist(folder, monkeypatch):
  """Gzipped IDX files of 12 training and 6 test digits in `folder`, made the published MNIST
  (their counts and checksums patched in); returns each file's bytes."""
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  published = {}
  for split, (images_name, labels_name, _) in list(mnist.FILES.items()):
    count = MNIST_COUNTS[images_name.split('-')[0]]
    monkeypatch.setitem(mnist.FILES, split, (images_name, labels_name, count))
    for name, magic, array in ((images_name, mnist.IMAGES_MAGIC,
                                rng.integers(0, 256, (count, 28, 28))),
                               (labels_name, mnist.LABELS_MAGIC, rng.integers(0, 10, count))):
      data = gzip.compress(idx_bytes(magic, array))
      (folder / f'{name}.gz').write_bytes(data)
      monkeypatch.setitem(mnist.SHA256, f'{name}.gz', hashlib.sha256(data).hexdigest())
      published[f'{name}.gz'] = data
  return published


def test_missing_mnist_is_downloaded_checked_and_loaded(tmp_path, mirror, monkeypatch):
  published = _publish_small_mnist(mirror.root / 'mnist', monkeypatch)
  data = mnist.load(str(tmp_path / 'data'))
  assert data.train_images.shape == (12, 28, 28, 1) and data.test_labels.shape == (6,)
  stored = tmp_path / 'data' / 'mnist'
  assert sorted(os.listdir(stored)) == sorted(published)  # no temporary files left
  for name, data_bytes in published.items():
    assert (stored / name).read_bytes() == data_bytes
  assert sorted(mirror.requested) == sorted(f'/mnist/{name}' for name in published)
  # The files are in place now: loading again asks no server.
  again = mnist.load(str(tmp_path / 'data'))
  np.testing.assert_array_equal(again.train_images, data.train_images)
  assert len(mirror.requested) == 4


def test_real_mnist_from_a_file_mirror_matches_the_published_checksums(
    mnist_data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv(download.MIRROR_ENV, pathlib.Path(mnist_data_dir).as_uri())
  data = mnist.load(str(tmp_path))
  assert data.num_train == 60000 and len(data.test_labels) == 10000
  assert sorted(os.listdir(tmp_path / 'mnist')) == sorted(mnist.SHA256)


def test_a_file_that_fails_its_checksum_is_not_kept(tmp_path, mirror, monkeypatch):
  _publish_small_mnist(mirror.root / 'mnist', monkeypatch)
  monkeypatch.setitem(mnist.SHA256, 'train-images-idx3-ubyte.gz', '0' * 64)
  with pytest.raises(DataError, match=r'cannot download train-images-idx3-ubyte.gz: '
                                      r'http://127.*/mnist/train-images-idx3-ubyte.gz '
                                      r'\(SHA-256 [0-9a-f]{64}, expected 0{64}'):
    mnist.load(str(tmp_path / 'data'))
  assert os.listdir(tmp_path / 'data' / 'mnist') == []


@pytest.mark.parametrize('first', ['refuses connections', 'lacks the file'])
def test_the_next_mirror_serves_when_the_first_fails(first, tmp_path, mirror, monkeypatch):
  _publish_small_mnist(mirror.root / 'mnist', monkeypatch)
  # The conftest's address refuses connections; the server answers 404 outside mnist/.
  failing = (os.environ[download.MIRROR_ENV] if first == 'refuses connections'
             else mirror.url) + '/elsewhere/'
  monkeypatch.setattr(mnist, 'MIRRORS', (failing, f'{mirror.url}/mnist/'))
  monkeypatch.delenv(download.MIRROR_ENV)
  data = mnist.load(str(tmp_path / 'data'))
  assert data.num_train == 12
  assert len(os.listdir(tmp_path / 'data' / 'mnist')) == 4


def test_when_every_mirror_fails_the_error_names_each_url_and_the_folder(tmp_path, monkeypatch):
  refused = os.environ[download.MIRROR_ENV]  # conftest's address that refuses connections
  monkeypatch.delenv(download.MIRROR_ENV)
  monkeypatch.setattr(mnist, 'MIRRORS', (f'{refused}/a/', f'{refused}/b/'))
  with pytest.raises(DataError) as error:
    mnist.load(str(tmp_path))
  message = str(error.value)
  assert f'{refused}/a/train-images-idx3-ubyte.gz (' in message
  assert f'{refused}/b/train-images-idx3-ubyte.gz (' in message
  assert f'Put the file into {tmp_path}/mnist/ by hand' in message


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
  monkeypatch.setattr(download, 'SOCKET_TIMEOUT_S', 0.2)
  # Listening but never accepting: the connection opens and no response ever comes.
  with socket.create_server(('127.0.0.1', 0)) as silent:
    monkeypatch.setenv(download.MIRROR_ENV, f'http://127.0.0.1:{silent.getsockname()[1]}')
    with pytest.raises(DataError, match='timed out'):
      mnist.load(str(tmp_path))


def _cifar10_archive(tmp_path, add_members):
  archive = tmp_path / cifar10.ARCHIVE
  with tarfile.open(archive, 'w:gz') as tar:
    add_members(tar)
  return archive


def test_missing_cifar10_is_downloaded_and_extracted(tmp_path, mirror, monkeypatch):
  batches = write_cifar10(tmp_path / 'source')
  archive = _cifar10_archive(
      tmp_path, lambda tar: tar.add(batches, arcname=cifar10.BATCHES_FOLDER))
  (mirror.root / 'cifar10').mkdir()
  (mirror.root / 'cifar10' / cifar10.ARCHIVE).write_bytes(archive.read_bytes())
  monkeypatch.setattr(cifar10, 'ARCHIVE_SHA256', hashlib.sha256(archive.read_bytes()).hexdigest())
  config = cifar10_1.get_config('bp')
  config.data_dir = str(tmp_path / 'data')
  data = datasets.load(config)
  assert data.num_train == 100 and len(data.test_source) == 20
  image, label = data.train_source[3]
  np.testing.assert_array_equal(image[..., 0], label * 20)
  assert sorted(os.listdir(tmp_path / 'data' / 'cifar10')) == sorted(
      [cifar10.ARCHIVE, cifar10.BATCHES_FOLDER])  # no scratch folder left
  assert mirror.requested == [f'/cifar10/{cifar10.ARCHIVE}']


def test_an_archive_member_escaping_the_folder_is_refused(tmp_path):
  def escaping(tar):
    payload = b'outside'
    member = tarfile.TarInfo(f'{cifar10.BATCHES_FOLDER}/../../escaped')
    member.size = len(payload)
    tar.addfile(member, io.BytesIO(payload))

  (tmp_path / 'data').mkdir()
  archive = _cifar10_archive(tmp_path / 'data', escaping)
  with pytest.raises(DataError, match='cannot be extracted.*delete it'):
    download.extract_folder(str(archive), cifar10.BATCHES_FOLDER)
  assert not (tmp_path / 'escaped').exists()
  assert os.listdir(tmp_path / 'data') == [cifar10.ARCHIVE]


class _Terminal(io.StringIO):

  def isatty(self):
    return True


@pytest.mark.parametrize('stream', [io.StringIO(), _Terminal()], ids=['log', 'terminal'])
def test_progress_is_a_bar_on_a_terminal_and_a_few_lines_in_a_log(stream):
  progress = download.Progress('http://host/mnist/file.gz', total=100 * 10**6, stream=stream)
  for _ in range(100):
    progress.advance(10**6)
  progress.finish()
  text = stream.getvalue()
  if isinstance(stream, _Terminal):
    assert text.count('\r') == 100 and text.endswith(f'{"█" * 30} 100% of 100.0 MB\n')
  else:
    assert text.splitlines() == [
        'fajax: downloading http://host/mnist/file.gz (100.0 MB)', 'fajax: file.gz: 25%',
        'fajax: file.gz: 50%', 'fajax: file.gz: 75%', 'fajax: file.gz: 100.0 MB received']


def test_the_data_folder_defaults_to_the_user_cache(tmp_path, monkeypatch):
  config = cifar10_1.get_config('bp')
  monkeypatch.setenv('FAJAX_DATA_DIR', str(tmp_path / 'env'))
  assert datasets.data_dir(config) == str(tmp_path / 'env')
  config.data_dir = str(tmp_path / 'config')
  assert datasets.data_dir(config) == str(tmp_path / 'config')
  config.data_dir = ''
  monkeypatch.delenv('FAJAX_DATA_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert datasets.data_dir(config) == str(tmp_path / 'xdg' / 'fajax' / 'data')
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert datasets.data_dir(config) == str(tmp_path / 'home' / '.cache' / 'fajax' / 'data')
