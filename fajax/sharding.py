"""Data parallelism over a device mesh, on one host or many.

One mesh axis, 'batch'. Every global batch is split over it; parameters, feedback weights,
optimizer and rule state are replicated (or, with `config.shard_large_params`, their large
matrices split over the same axis, FSDP-style, for models that do not fit one device). `jax.jit`
inserts the collectives; the step's code is the single-device code.
"""

import os

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fajax.errors import ConfigError

BATCH_AXIS = 'batch'
# Leaves with at least this many entries are split over the mesh under shard_large_params.
LARGE_PARAM_ENTRIES = 1 << 18


def make_mesh() -> jax.sharding.Mesh:
  return jax.make_mesh((jax.device_count(),), (BATCH_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh, leading_axes: int = 0) -> NamedSharding:
  """Batches split over the devices, after `leading_axes` axes that are not (the replicas,
  the steps of a stack)."""
  return NamedSharding(mesh, P(*([None] * leading_axes), BATCH_AXIS))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_shardings(mesh, abstract_state, shard_large_params: bool):
  """Replicated, except (optionally) large leaves split along their first divisible axis.

  The leading axis holds the replicas (`fajax.replicas`) and is never split: each replica's
  step is data-parallel over all the devices.
  """
  size = mesh.devices.size

  def choose(leaf):
    if shard_large_params and leaf.size >= LARGE_PARAM_ENTRIES:
      for axis, dim in enumerate(leaf.shape[1:], start=1):
        if dim % size == 0:
          return NamedSharding(mesh, P(*([None] * axis), BATCH_AXIS))
    return replicated(mesh)

  return jax.tree.map(choose, abstract_state)


def check_batch_sizes(config, mesh) -> None:
  """A batch must split evenly over the devices: say so at start-up, with the fix."""
  devices = mesh.devices.size
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % devices:
      raise ConfigError(
          f'{field}={config[field]} does not divide evenly over {devices} devices; use a '
          f'multiple of {devices}'
      )


def global_array(local, sharding: NamedSharding) -> jax.Array:
  """The global batch from this process's slice of it (its first axis)."""
  return jax.make_array_from_process_local_data(sharding, local)


def _cluster_announced() -> bool:
  """True where the environment says this is one of several processes JAX can find itself.

  FAJAX_DISTRIBUTED=1 says so explicitly (launch/tpu_pod.sh sets it: a TPU VM pod announces
  itself through its metadata server, not its environment).
  """
  if os.environ.get('FAJAX_DISTRIBUTED') == '1':
    return True
  slurm_tasks = int(os.environ.get('SLURM_NTASKS', '1'))
  tpu_workers = os.environ.get('TPU_WORKER_HOSTNAMES', '').count(',') + 1
  mpi_size = int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1'))
  return max(slurm_tasks, tpu_workers, mpi_size) > 1


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None) -> None:
  """Starts JAX's distributed runtime for a multi-process run; a no-op for a single process.

  With the three values given, connects to the coordinator (process 0 runs it). With none
  given, JAX detects the cluster where its environment announces one (SLURM with more than one
  task, a Cloud TPU pod, Open MPI); otherwise the run is a single process. Must run before any
  other JAX call.
  """
  given = [v is not None for v in (coordinator_address, num_processes, process_id)]
  if any(given) and not all(given):
    raise ConfigError(
        'give all of --coordinator_address, --num_processes and --process_id, or none of them'
    )
  if not all(given) and not _cluster_announced():
    return
  # Collectives between CPU processes (local multi-process runs); GPUs and TPUs use their own.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if all(given):
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()
