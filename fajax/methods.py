"""The learning rules of the results table, each a composition of feedback rules.

A config names its method (`config.method`); `feedback_rule` builds the rule that sets the
feedback weights B of every layer.
"""

from collections.abc import Callable

import ml_collections

from fajax import rules


def _usf(scale: Callable[..., rules.FeedbackRule]):
  def build(config):
    return rules.chain(rules.sign_of_weights(), scale(config.norm_per_output_filter))

  return build


METHODS: dict[str, Callable[[ml_collections.ConfigDict], rules.FeedbackRule]] = {
    'bp': lambda config: rules.copy_weights(),
    'fa': lambda config: rules.fixed(),
    'fa_usf_init': _usf(rules.scale_to_initial_norm),
    'fa_usf_sn': _usf(rules.scale_to_weight_norm),
}


def feedback_rule(config: ml_collections.ConfigDict) -> rules.FeedbackRule:
  return METHODS[config.method](config)
