"""Fine-tuning (FT) strategies of the paper (Sec. 2.4, Fig. 3) and its hyper-parameter study.

Strategies act on a :class:`~tlsearch.model.backbone.Backbone` through its trunk blocks
(:meth:`~tlsearch.model.backbone.Backbone.trunk_blocks`), numbered 1..K in data-flow order;
everything after them (the head, and the new MLP layers a
:class:`~tlsearch.model.heads.HeadedBackbone` inserts before it) is block K + 1
(:func:`layer_number`). For ALIGNN the blocks are the paper's layers of Fig. 1a::

    1 atom_embedding   2 edge_embedding   3 angle_embedding   4 alignn_layers (N ALIGNNConv)
    5 gcn_layers (M bond-graph convolutions)   6 readout (average pooling)   7 fc (head)

and the new head layers count as part of layer 7, the "modified" prediction head. So
``last_layer``, ``new_head``, ``new_head_freeze_1``/``_6`` and the unfreezing ones apply to any
family; ``interaction_2b``/``interaction_3b`` name ALIGNN's bond- and line-graph updates and
apply to ALIGNN only.

Each strategy is a function ``(model) -> list[str]`` setting ``requires_grad`` and returning
the trainable names; :data:`STRATEGIES` registers them with the new head layers they need, and
:func:`prepare_finetune` builds the model. Give only :func:`trainable_named_parameters` to the
optimiser: AdamW's weight decay changes every parameter it is given, frozen ones included.

Frozen batch-norm statistics (``freeze_batchnorm_stats=True``, the default): the paper's code
freezes layers through ``requires_grad`` only, so "frozen" BatchNorm layers keep updating their
running statistics and normalise with batch statistics. To a user "frozen" means the layer
computes what it computed after PT, so :func:`install_frozen_eval` runs every module whose
parameters are all frozen in eval mode (fixed running statistics) whenever the model trains.
Pass ``False`` to reproduce the paper's behaviour.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.utils.hooks import RemovableHandle

from tlsearch.model.backbone import Backbone, block_of, trunk_names, unwrap_trunk
from tlsearch.model.heads import HeadedBackbone
from tlsearch.transfer.names import STRATEGY_NAMES

logger = logging.getLogger(__name__)


_BOND_GRAPH = re.compile(r"^(alignn_layers\.\d+\.node_update|gcn_layers\.\d+)\.")
_LINE_GRAPH = re.compile(r"^alignn_layers\.\d+\.edge_update\.")
_FROZEN_EVAL_FLAG = "_tlsearch_frozen_eval"


def _trunk_local(model: nn.Module, name: str) -> str | None:
    """``name`` relative to ``model``'s backbone; None when it lies outside the backbone."""
    if unwrap_trunk(model) is model:
        return name
    return name.removeprefix("trunk.") if name.startswith("trunk.") else None  # model.trunk


def layer_number(model: nn.Module, name: str) -> int:
    """The block number of a parameter (or module) ``name`` of ``model``: 1..K for the
    backbone's trunk blocks in order, K + 1 for what follows them (the head, new head layers).
    For ALIGNN these are the paper's layers 1-7 (Fig. 1a)."""
    trunk = unwrap_trunk(model)
    blocks = trunk_names(trunk)
    local = _trunk_local(model, name)
    index = None if local is None else block_of(local, blocks)
    return len(blocks) + 1 if index is None else index + 1


def set_trainable(model: nn.Module, trains: Callable[[str], bool]) -> list[str]:
    """Set ``requires_grad = trains(name)``; return the trainable names."""
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(trains(name))
        if param.requires_grad:
            names.append(name)
    return names


def trainable_named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter with ``requires_grad`` (give these to AdamW)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _require_new_layers(model: nn.Module, strategy: str) -> None:
    if not isinstance(model, HeadedBackbone) or model.n_new_layers < 1:
        raise ValueError(f"strategy {strategy!r} needs a HeadedBackbone with new head layers")


def freeze_first(model: nn.Module, blocks: int) -> list[str]:
    """Freeze the backbone's first ``blocks`` trunk blocks, train the rest; trainable names."""
    return set_trainable(model, lambda name: layer_number(model, name) > blocks)


def freeze_trunk(model: nn.Module) -> list[str]:
    """Freeze every trunk block: only the head (and new head layers) train."""
    return freeze_first(model, len(trunk_names(unwrap_trunk(model))))


def _alignn_parts(model: nn.Module, strategy: str, pattern: re.Pattern[str]) -> list[str]:
    """Train the ALIGNN parameters matching ``pattern`` (names relative to the ALIGNN)."""
    family = unwrap_trunk(model).family
    if family != "alignn":
        raise ValueError(f"strategy {strategy!r} applies to ALIGNN only, not to {family!r}")

    def trains(name: str) -> bool:
        local = _trunk_local(model, name)
        return local is not None and bool(pattern.match(local))

    return set_trainable(model, trains)


def unfreeze_all(model: nn.Module) -> list[str]:
    """FT strategy 1, "Unfreeze all layers of ALIGNN" (paper Sec. 2.4).

    "All the parameters in the PT model's seven layers are loaded as initializations and
    subsequently allowed to be re-computed during FT." Trainable: layers 1-7.
    """
    return set_trainable(model, lambda name: True)


def new_head(model: nn.Module) -> list[str]:
    """FT strategy 2, "Add a new prediction head" (paper Sec. 2.4); needs one new layer.

    "A new multi-layer perceptron (MLP) layer is added before the prediction head. The
    parameters of the other six layers of the PT model are fixed apart from the final modified
    layer." Trainable: the modified layer 7, i.e. the new MLP layer and the head ``fc``;
    layers 1-6 frozen.
    """
    _require_new_layers(model, "new_head")
    return freeze_trunk(model)


def last_layer(model: nn.Module) -> list[str]:
    """FT strategy 3, "Unfreeze only the last layer" (paper Sec. 2.4).

    "We re-train only the final layer of the ALIGNN architecture keeping the parameters of the
    other six layers fixed." Trainable: ``fc`` (layer 7) only; any family: its head only.
    """
    return freeze_trunk(model)


def interaction_2b(model: nn.Module) -> list[str]:
    """FT strategy 4, two-body variant, "Unfreeze selective (interaction) layers" (Sec. 2.4).

    "The two body interaction layers (bond graphs) corresponding to the 4th and the 5th layers
    of ALIGNN ... are allowed to be unfrozen while keeping the rest of the model constant."
    Trainable: every ``ALIGNNConv.node_update`` (layer 4) and ``gcn_layers`` conv (layer 5);
    ``fc`` stays frozen as the text says (the paper's scripts leave ``fc`` trainable too),
    except when :func:`prepare_finetune` gives the model a new, freshly initialised ``fc`` for
    a target of another width: that head trains (a random frozen head maps every feature to
    noise).
    """
    return _alignn_parts(model, "interaction_2b", _BOND_GRAPH)


def interaction_3b(model: nn.Module) -> list[str]:
    """FT strategy 4, three-body variant, "Unfreeze selective (interaction) layers" (Sec. 2.4).

    "... or the three body interaction layers (line graphs) within the 4th layer are allowed to
    be unfrozen while keeping the rest of the model constant." Trainable: every
    ``ALIGNNConv.edge_update``; ``fc`` frozen (trainable in the paper's scripts), except a new,
    freshly initialised ``fc`` (a target of another width), which trains: see
    :func:`interaction_2b`.
    """
    return _alignn_parts(model, "interaction_3b", _LINE_GRAPH)


def new_head_freeze_1(model: nn.Module) -> list[str]:
    """Hyper-parameter study "number of frozen layers" = 1, with a new head (Sec. 2.5).

    "We varied the number of frozen layers within the ALIGNN architecture to be either 1 (the
    embedding layer) or 6 (until the final layer) ... Additionally, we added a new prediction
    head in both cases (similar to FT strategy 2)." Frozen: layer 1 (the atom embedding);
    trainable: layers 2-7 and the new MLP layer.
    """
    _require_new_layers(model, "new_head_freeze_1")
    return freeze_first(model, 1)


def new_head_freeze_6(model: nn.Module) -> list[str]:
    """Hyper-parameter study "number of frozen layers" = 6, with a new head (Sec. 2.5).

    The other extreme of :func:`new_head_freeze_1`: layers 1-6 frozen, the new MLP layer and
    the head trainable. An explicit alias of :func:`new_head` (strategy 2): same trainable set.
    """
    _require_new_layers(model, "new_head_freeze_6")
    return freeze_trunk(model)


def new_head_unfreeze_all(model: nn.Module) -> list[str]:
    """Strategies 1 and 2 combined, the paper's suggested future work (Sec. 4).

    "Model performance may also be improved by utilizing better FT strategies than those
    proposed in this work, such as combining strategies 1 and 2." A new MLP layer before the
    head, and every parameter trainable. (Also the recipe of FT from an MPT model, Sec. 2.6,
    with two new layers: see :func:`tlsearch.model.multi_property.to_finetune`.)
    """
    _require_new_layers(model, "new_head_unfreeze_all")
    return set_trainable(model, lambda name: True)


def scratch(model: nn.Module) -> list[str]:
    """No pre-training: a freshly initialised model with every parameter trainable.

    The paper's "scratch" models (Sec. 2.3) are trained on the FT data alone;
    :func:`prepare_finetune` discards the pre-trained weights for this strategy.
    """
    return set_trainable(model, lambda name: True)


@dataclass(frozen=True)
class StrategySpec:
    """A registry entry: the function, new head layers to add, whether PT weights are kept."""

    apply: Callable[[nn.Module], list[str]]
    new_layers: int = 0
    pretrained: bool = True


STRATEGIES: dict[str, StrategySpec] = {
    "unfreeze_all": StrategySpec(unfreeze_all),
    "new_head": StrategySpec(new_head, new_layers=1),
    "last_layer": StrategySpec(last_layer),
    "interaction_2b": StrategySpec(interaction_2b),
    "interaction_3b": StrategySpec(interaction_3b),
    "new_head_freeze_1": StrategySpec(new_head_freeze_1, new_layers=1),
    "new_head_freeze_6": StrategySpec(new_head_freeze_6, new_layers=1),
    "new_head_unfreeze_all": StrategySpec(new_head_unfreeze_all, new_layers=1),
    "scratch": StrategySpec(scratch, pretrained=False),
}


def get_strategy(name: str) -> StrategySpec:
    """The registry entry of ``name``; ValueError listing the valid names otherwise."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown FT strategy {name!r}; valid: {', '.join(STRATEGY_NAMES)}")
    return STRATEGIES[name]


def apply_frozen_eval(model: nn.Module) -> list[str]:
    """If ``model.training``: eval mode for each module with parameters, all frozen; names.

    Runs before every training forward, so it looks at each module and parameter once (a
    post-order pass), not at every module's whole subtree.
    """
    if not model.training:
        return []
    frozen: set[int] = set()
    _subtree_state(model, frozen)
    switched = []
    for name, module in model.named_modules():
        if id(module) in frozen and module.training:
            module.eval()
            switched.append(name)
    return switched


def _subtree_state(module: nn.Module, found: set[int]) -> tuple[bool, bool]:
    """(has parameters, all frozen) of ``module``'s subtree; adds the ``id`` of every module in
    it that has parameters, none trainable, to ``found``."""
    has_params, frozen = False, True
    for param in module.parameters(recurse=False):
        has_params, frozen = True, frozen and not param.requires_grad
    for child in module.children():
        child_has, child_frozen = _subtree_state(child, found)
        has_params, frozen = has_params or child_has, frozen and child_frozen
    if has_params and frozen:
        found.add(id(module))
    return has_params, frozen


def _frozen_eval_hook(module: nn.Module, args: tuple) -> None:
    if getattr(module, _FROZEN_EVAL_FLAG, False):
        apply_frozen_eval(module)


def install_frozen_eval(model: nn.Module, enabled: bool = True) -> RemovableHandle | None:
    """Make frozen modules run in eval mode whenever ``model`` runs in training mode.

    A forward pre-hook on ``model`` calls :func:`apply_frozen_eval` before every forward, so
    it survives any later ``model.train()`` (e.g. at the start of every epoch). The hook obeys
    the model attribute ``_tlsearch_frozen_eval`` (set to ``enabled``); installing again only
    updates that switch and returns None.
    """
    installed = hasattr(model, _FROZEN_EVAL_FLAG)
    setattr(model, _FROZEN_EVAL_FLAG, enabled)
    return None if installed else model.register_forward_pre_hook(_frozen_eval_hook)


def _train_new_head(
    model: nn.Module, strategy: str, names: list[str], head: nn.Module
) -> list[str]:
    """Make a freshly initialised ``head`` trainable; the trainable names afterwards."""
    if all(p.requires_grad for p in head.parameters()):
        return names
    logger.info(
        "FT strategy %s freezes the head, but the FT target's width needs a new randomly "
        "initialised head: it trains (a frozen random head would be useless)",
        strategy,
    )
    for param in head.parameters():
        param.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def prepare_finetune(
    pretrained: Backbone,
    strategy: str,
    *,
    freeze_batchnorm_stats: bool = True,
    output_features: int | None = None,
    freeze_first: int | None = None,
    fresh_head: bool = False,
) -> HeadedBackbone | Backbone:
    """The model to fine-tune with ``strategy``, with ``requires_grad`` set.

    ``pretrained`` (a :class:`~tlsearch.model.backbone.Backbone` module, e.g. an ALIGNN) is
    deep-copied, never modified. Strategies with new head layers return a
    :class:`HeadedBackbone`, the others a backbone of ``pretrained``'s class (``scratch``:
    freshly initialised from its description).

    Args:
        pretrained: the PT model.
        strategy: one of :data:`STRATEGY_NAMES`.
        freeze_batchnorm_stats: keep the BatchNorm running statistics of frozen modules fixed
            (see the module docstring); ``False`` reproduces the paper's code.
        output_features: width of the FT target; when it differs from the PT head's, the head
            is replaced by a freshly initialised one (:meth:`Backbone.replace_head`; ALIGNN:
            ``Linear(hidden, output_features)``), and that head always trains, whatever the
            strategy: strategy 4 (``interaction_2b``/``3b``) would freeze it, and a frozen
            random head makes the fine-tuned layers fit through a fixed random projection (the
            paper's own strategy-4 scripts train ``fc`` anyway). The log says so.
        freeze_first: partial freezing: also freeze the backbone's first ``freeze_first``
            trunk blocks (:meth:`~tlsearch.model.backbone.Backbone.trunk_blocks`, data-flow
            order); the rest trains as ``strategy`` says (e.g. ``unfreeze_all`` with
            ``freeze_first=k``: blocks k+1.. and the head).

    Raises:
        ValueError: unknown strategy, a strategy that does not apply to the family, or one
            that leaves no parameter trainable.
    """
    spec = get_strategy(strategy)
    if not isinstance(pretrained, nn.Module) or not isinstance(pretrained, Backbone):
        raise TypeError(f"pretrained must be a Backbone module, got {type(pretrained).__name__}")
    if spec.pretrained:
        model = copy.deepcopy(pretrained)
    else:
        model = type(pretrained).from_description(pretrained.describe())
    new_head = None
    if fresh_head or (output_features is not None and output_features != model.output_features):
        new_head = model.replace_head(output_features or model.output_features)
    ft_model = HeadedBackbone(model, spec.new_layers) if spec.new_layers else model
    names = spec.apply(ft_model)
    if freeze_first is not None:
        blocks = len(trunk_names(unwrap_trunk(ft_model)))
        if not 0 <= freeze_first <= blocks:
            raise ValueError(f"freeze_first must be in 0..{blocks} (the trunk's blocks)")
        kept = set(names)
        names = set_trainable(
            ft_model, lambda n: n in kept and layer_number(ft_model, n) > freeze_first
        )
    if new_head is not None:
        names = _train_new_head(ft_model, strategy, names, new_head)
    if not names:
        raise ValueError(f"strategy {strategy!r} leaves no trainable parameter in this model")
    install_frozen_eval(ft_model, enabled=freeze_batchnorm_stats)
    total = sum(1 for _ in ft_model.parameters())
    logger.info("FT strategy %s: %d of %d parameter tensors trainable", strategy, len(names), total)
    return ft_model
