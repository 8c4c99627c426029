"""`fajax.train` of TinyMLP on tiny random data as a process of its own, through the same error
handling as `fajax.main`: for tests that kill or signal a run.

    python -m tests.tiny_run WORKDIR '{"num_train_steps": 12}'
"""

import json

from flax import nnx

import fajax
from fajax import cli
from tests.fixtures import TinyMLP, tiny_config, tiny_data


def run(argv):
  workdir, overrides = argv[1], json.loads(argv[2]) if len(argv) > 2 else {}
  fajax.train(tiny_config(**overrides), workdir, model=TinyMLP(rngs=nnx.Rngs(0)),
              data=tiny_data())


if __name__ == '__main__':
  cli.run(run, positional=True)
