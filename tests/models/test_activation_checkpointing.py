"""`train.activation_checkpointing`: the backbone blocks are rematerialised, and nothing else changes."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core

from centerpose_jax.models import CenterPose
from centerpose_jax.models import dla
from centerpose_jax.models import fan
from centerpose_jax.models import layers


def _remat_count(jaxpr) -> int:
  """Rematerialised calls (`layers.tied_checkpoint`'s custom VJPs) in a jaxpr, nested ones included."""
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name == "custom_vjp_call" and "tied_checkpoint_backward" in repr(eqn.params["bwd"])
    for sub in jax_core.jaxprs_in_params(eqn.params):
      count += _remat_count(sub)
  return count


def _training_forward_jaxpr(model, x):
  """The jaxpr of a training-mode forward; x and the variables are shapes only (nothing runs)."""
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  return jax.make_jaxpr(lambda v, inputs: model.apply(v, inputs, train=True, mutable=["batch_stats"],
                                                       rngs={"dropout": jax.random.key(0)}))(variables, x).jaxpr


def test_every_backbone_block_and_nothing_else_is_rematerialised():
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  blocks = {"DLA34": 2 * (1 + 2 + 2 + 1),  # two BasicBlocks per level-1 tree of level2 ... level5
            "fan_small": sum(fan.FAN_ARCHS["fan_small"].convnext_depths) + fan.FAN_ARCHS["fan_small"].depth}
  for arch, count in blocks.items():
    width = {"width_multiplier": 0.25} if arch == "DLA34" else {}
    assert _remat_count(_training_forward_jaxpr(CenterPose(model_type=arch, **width), x)) == 0
    remat = CenterPose(model_type=arch, activation_checkpointing=True, **width)
    assert _remat_count(_training_forward_jaxpr(remat, x)) == count


def test_rematerialised_blocks_give_the_same_outputs_and_gradients():
  rng = np.random.default_rng(0)
  remat = layers.module_defs(remat=True)
  cases = [  # (block without and with remat, inputs, extra call arguments)
      (dla.Tree(1, 16, stride=2), dla.Tree(1, 16, stride=2, defs=remat),
       rng.standard_normal((2, 16, 16, 8)).astype(np.float32), ()),
      (fan.FANBlocks(16, 2, 1, 0), fan.FANBlocks(16, 2, 1, 0, defs=remat),
       rng.standard_normal((2, 16, 16)).astype(np.float32), (4, 4)),
  ]
  for plain, checkpointed, x, extra in cases:
    variables = plain.init(jax.random.key(1, impl="rbg"), x, *extra, train=False)

    def loss(params, module, x=x, extra=extra, variables=variables):
      out, _ = module.apply({**variables, "params": params}, x, *extra, train=True, mutable=["batch_stats"],
                            rngs={"dropout": jax.random.key(2, impl="rbg")})
      return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(out))

    results = [jax.jit(jax.value_and_grad(loss), static_argnums=1)(variables["params"], module)
               for module in (plain, checkpointed)]
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    largest = max(float(np.abs(leaf).max()) for leaf in jax.tree.leaves(results[0][1]))
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * largest)  # summation order only


def _gradient_temp_bytes(module, x, extra) -> int:
  """XLA's temporary buffer bytes for the training-mode gradient of `module` (compiled, not run)."""
  variables = jax.eval_shape(lambda inputs: module.init(jax.random.key(0), inputs, *extra, train=False), x)

  def loss(params, batch_stats, inputs):
    out, _ = module.apply({"params": params, "batch_stats": batch_stats}, inputs, *extra, train=True,
                          mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
    return jnp.sum(out[1])

  compiled = jax.jit(jax.grad(loss)).lower(variables["params"], variables["batch_stats"], x).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_rematerialisation_lowers_the_compiled_gradients_memory():
  # jax.checkpoint's optimization barriers are removed by XLA:CPU before CSE and scheduling, which merged the
  # recomputation into the forward pass: the same memory as without remat. The tied recomputation must not.
  x = jax.ShapeDtypeStruct((2, 64, 32), jnp.float32)
  plain, remat = (_gradient_temp_bytes(fan.FANBlocks(32, 2, 2, 1, defs=layers.module_defs(remat=flag)), x, (8, 8))
                  for flag in (False, True))
  assert remat < 0.75 * plain, (remat, plain)  # nn.remat: 1.0x; the tied recomputation: 0.59x
