"""The learning rules of the results table, each composed from rules and constraints.

A config names its method (`config.method`); `build` returns what the trainer needs: the rule
that sets every layer's feedback weights B, the constraint applied to W after each update, and
where hidden layers take their error signal from (`direct.SOURCES`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections
import optax

from fajax import constraints
from fajax import rules


@dataclasses.dataclass(frozen=True)
class Method:
  rule: rules.FeedbackRule
  constraint: constraints.WeightConstraint = constraints.chain()
  direct_mode: str = 'adjacent'


def _usf_init(config):
  return rules.chain(
      rules.sign_of_weights(), rules.scale_to_initial_norm(config.norm_per_output_filter)
  )


def _usf_sn(config):
  return rules.chain(
      rules.sign_of_weights(), rules.scale_to_weight_norm(config.norm_per_output_filter)
  )


def _sign_constraint(config):
  return constraints.fixed_signs(crossing=config.sign_crossing,
                                 free_layers=tuple(config.sign_free_layers))


def _norm_constraint(config):
  return constraints.fixed_norm(config.norm_per_output_filter)


Builder = Callable[[ml_collections.ConfigDict, optax.GradientTransformation, Any], Method]

METHODS: dict[str, Builder] = {
    'bp': lambda c, tx, seed: Method(rules.copy_weights()),
    'bp_noise': lambda c, tx, seed: Method(rules.chain(
        rules.copy_weights(), rules.add_weight_scaled_noise(c.feedback_noise_std, seed))),
    'bp_alignment': lambda c, tx, seed: Method(rules.chain(
        rules.copy_weights(), rules.scale_to_initial_norm(c.norm_per_output_filter))),
    'fa': lambda c, tx, seed: Method(rules.fixed()),
    'fa_usf_init': lambda c, tx, seed: Method(_usf_init(c)),
    'fa_usf_sn': lambda c, tx, seed: Method(_usf_sn(c)),
    'fa_usf_init_ei': lambda c, tx, seed: Method(_usf_init(c), _sign_constraint(c)),
    'bp_const': lambda c, tx, seed: Method(rules.copy_weights(), _norm_constraint(c)),
    # Under Const. ‖W_t‖ = ‖W_0‖, so uSF's Init. and SN scales coincide.
    'fa_usf_const': lambda c, tx, seed: Method(_usf_sn(c), _norm_constraint(c)),
    'fa_usf_const_ei': lambda c, tx, seed: Method(
        _usf_sn(c), constraints.chain(_sign_constraint(c), _norm_constraint(c))),
    'dfa': lambda c, tx, seed: Method(rules.fixed(), direct_mode='output'),
    'densefa': lambda c, tx, seed: Method(rules.fixed(), direct_mode='all'),
    # Beyond the table.
    'fa_brsf': lambda c, tx, seed: Method(rules.random_magnitude_signs(redraw=True, seed=seed)),
    'fa_frsf': lambda c, tx, seed: Method(rules.random_magnitude_signs(redraw=False, seed=seed)),
    'kolen_pollack': lambda c, tx, seed: Method(rules.kolen_pollack(tx)),
    'weight_mirror': lambda c, tx, seed: Method(rules.weight_mirror(
        c.mirror.learning_rate, c.mirror.decay, c.mirror.noise_std, c.mirror.num_samples,
        seed)),
}


def build(config: ml_collections.ConfigDict, optimizer: optax.GradientTransformation,
          seed=None) -> Method:
  """The method `config.method`; `optimizer` is W's (Kolen–Pollack gives B the same one).

  `seed` (default `config.seed`; a traced integer works too) seeds the rule's randomness, which
  its `init` draws into its state: a replica's init builds the method with its own seed. The
  layers in `config.exact_layers` get B = W after the method's rule.
  """
  method = METHODS[config.method](config, optimizer, config.seed if seed is None else seed)
  if not config.exact_layers:
    return method
  return dataclasses.replace(
      method, rule=rules.chain(method.rule, rules.copy_weights_of(tuple(config.exact_layers))))
