"""Raw dataset files fetched on first use.

    path = download.fetch(data_dir, 'mnist', 'train-labels-idx1-ubyte.gz', sha256, mirrors)

A file missing from `<data_dir>/<dataset>/` is downloaded from the first of its mirrors that
serves it with the published SHA-256, or, when $FAJAX_DATA_MIRROR is set, from
`$FAJAX_DATA_MIRROR/<dataset>/<file>` alone (an HTTP(S) or file:// base URL laid out like the
data folder). Each download is written to a temporary file beside its destination and renamed
into place only once its checksum matches, so a file under its real name is always complete;
one that fails the check is deleted. Files already in place are the user's and are used as
they are.
"""

import contextlib
import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import urllib.request
import zlib

from fajax import progress
from fajax.errors import DataError

MIRROR_ENV = 'FAJAX_DATA_MIRROR'
# Bounds each connect and each read, so a stalled server fails over to the next mirror.
SOCKET_TIMEOUT_S = 30
CHUNK_BYTES = 1 << 20
# Some servers refuse urllib's default agent.
USER_AGENT = 'fajax-data-download'


def _urls(dataset: str, file_name: str, mirrors: tuple[str, ...]) -> list[str]:
  """Where `file_name` of `dataset` is fetched from, in order: $FAJAX_DATA_MIRROR alone when
  set, else each of `mirrors` (base URLs ending in '/')."""
  mirror = os.environ.get(MIRROR_ENV)
  if mirror:
    return [f"{mirror.rstrip('/')}/{dataset}/{file_name}"]
  return [base + file_name for base in mirrors]


def fetch(data_dir: str, dataset: str, file_name: str, sha256: str,
          mirrors: tuple[str, ...]) -> str:
  """The path of `<data_dir>/<dataset>/<file_name>`, downloaded first if it is missing.

  Raises DataError naming every URL tried, and why each failed, when none gives the file.
  """
  directory = os.path.join(data_dir, dataset)
  path = os.path.join(directory, file_name)
  if os.path.exists(path):
    return path
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise DataError(
        f'cannot create {directory} to download {dataset} into ({e}); set data_dir or '
        '$FAJAX_DATA_DIR to a writable folder'
    ) from e
  failures = []
  for url in _urls(dataset, file_name, mirrors):
    try:
      _download_verified(url, sha256, path)
      return path
    # ValueError: a malformed $FAJAX_DATA_MIRROR; DataError: a checksum mismatch.
    except (OSError, ValueError, http.client.HTTPException, DataError) as e:
      failures.append(f'{url} ({e})')
  raise DataError(
      f"cannot download {file_name}: {'; '.join(failures)}. Put the file into {directory}/ by "
      f'hand, or set ${MIRROR_ENV} to a mirror that serves {dataset}/{file_name}'
  )


def _download_verified(url: str, sha256: str, path: str) -> None:
  partial = tempfile.NamedTemporaryFile(
      dir=os.path.dirname(path), prefix=f'.{os.path.basename(path)}.', suffix='.part',
      delete=False)
  try:
    with partial:
      found = _copy(url, partial)
      partial.flush()
      os.fsync(partial.fileno())  # the rename must not outlive the data on a crash
    if found != sha256:
      raise DataError(f'SHA-256 {found}, expected {sha256}: the download is damaged')
    os.replace(partial.name, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(partial.name)


def _copy(url: str, out) -> str:
  """Streams `url` into the file `out`, showing progress; returns the SHA-256 of the bytes."""
  request = urllib.request.Request(url, headers={'User-Agent': USER_AGENT})
  digest = hashlib.sha256()
  with urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT_S) as response:
    length = response.headers.get('Content-Length')
    progress = Progress(url, int(length) if length else None)
    try:
      while chunk := response.read(CHUNK_BYTES):
        digest.update(chunk)
        out.write(chunk)
        progress.advance(len(chunk))
    finally:
      progress.finish()
  return digest.hexdigest()


class Progress:
  """Download progress on stderr: a bar redrawn in place on a terminal; in a log, a line at
  the start, at each quarter and at the end."""

  WIDTH = 30

  def __init__(self, url: str, total: int | None, stream=None):
    self.stream = stream or sys.stderr
    self.name = url.rsplit('/', 1)[-1]
    self.total, self.done, self.shown = total, 0, 0
    self.interactive = self.stream.isatty()
    if not self.interactive:
      self._line(f'downloading {url}' + (f' ({_megabytes(total)})' if total else ''))

  def advance(self, count: int) -> None:
    self.done += count
    if self.total:
      percent = min(100, 100 * self.done // self.total)
      if self.interactive and percent != self.shown:
        self.stream.write(f'\rfajax: {self.name} {progress.bar(percent, 100, self.WIDTH)} '
                          f'{percent:3d}% of '
                          f'{_megabytes(self.total)}')
        self.stream.flush()
      elif not self.interactive and percent // 25 > self.shown // 25 and percent < 100:
        self._line(f'{self.name}: {percent}%')
      self.shown = percent
    elif self.interactive:
      self.stream.write(f'\rfajax: {self.name} {_megabytes(self.done)}')
      self.stream.flush()

  def finish(self) -> None:
    if self.interactive:
      self.stream.write('\n')
      self.stream.flush()
    else:
      self._line(f'{self.name}: {_megabytes(self.done)} received')

  def _line(self, text: str) -> None:
    self.stream.write(f'fajax: {text}\n')
    self.stream.flush()


def _megabytes(count: int) -> str:
  return f'{count / 1e6:.1f} MB'


def extract_folder(archive: str, folder: str) -> str:
  """`folder` of the .tar.gz `archive`, extracted beside the archive; returns its path.

  The archive is unpacked into a temporary folder and `folder` moved into place whole, so a
  folder under that name is always complete. The standard library's 'data' filter refuses
  members that would land outside (absolute paths, '..', links out) or are not plain files,
  folders or links (PEP 706; Python ≥ 3.10.12 / 3.11.4).
  """
  directory = os.path.dirname(archive)
  target = os.path.join(directory, folder)
  with tempfile.TemporaryDirectory(dir=directory, prefix='.extracting-') as scratch:
    try:
      with tarfile.open(archive, 'r:gz') as tar:
        tar.extractall(scratch, filter='data')
    except (tarfile.TarError, EOFError, zlib.error) as e:
      raise DataError(
          f'{archive} cannot be extracted ({type(e).__name__}: {e}); delete it, and fajax '
          'downloads it again'
      ) from e
    extracted = os.path.join(scratch, folder)
    if not os.path.isdir(extracted):
      raise DataError(f'{archive} holds no folder {folder}/: it is not the archive its name says')
    try:
      os.rename(extracted, target)
    except OSError:
      if not os.path.isdir(target):  # else another process extracted it first
        raise
  return target
