"""Fine-tuning (FT) strategies of the paper (Sec. 2.4, Fig. 3) and its hyper-parameter study.

Layer numbering is the paper's Fig. 1a, mapped onto :class:`~tlsearch.model.alignn.ALIGNN`'s
submodules by :data:`PAPER_LAYERS`::

    1 atom_embedding   2 edge_embedding   3 angle_embedding   4 alignn_layers (N ALIGNNConv)
    5 gcn_layers (M bond-graph convolutions)   6 readout (average pooling)   7 fc (head)

New MLP layers inserted before the head (:class:`~tlsearch.transfer.heads.HeadedALIGNN`'s
``new_layers``) count as part of layer 7, the "modified" prediction head.

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

from tlsearch.model.alignn import ALIGNN
from tlsearch.transfer.heads import HeadedALIGNN
from tlsearch.transfer.names import STRATEGY_NAMES

logger = logging.getLogger(__name__)


#: The paper's layer number (Fig. 1a) -> ALIGNN submodule name.
PAPER_LAYERS: dict[int, str] = {
    1: "atom_embedding",
    2: "edge_embedding",
    3: "angle_embedding",
    4: "alignn_layers",
    5: "gcn_layers",
    6: "readout",
    7: "fc",
}
_LAYER_OF_MODULE = {module: layer for layer, module in PAPER_LAYERS.items()}
_BOND_GRAPH = re.compile(r"^(alignn_layers\.\d+\.node_update|gcn_layers\.\d+)\.")
_LINE_GRAPH = re.compile(r"^alignn_layers\.\d+\.edge_update\.")
_FROZEN_EVAL_FLAG = "_tlsearch_frozen_eval"


def paper_layer(name: str) -> int:
    """The paper's layer number (1-7) of a parameter name of an ALIGNN or HeadedALIGNN."""
    top = name.removeprefix("trunk.").split(".", 1)[0]
    if top == "new_layers":
        return 7
    if top not in _LAYER_OF_MODULE:
        raise ValueError(f"parameter {name!r} belongs to no layer of the paper's Fig. 1a")
    return _LAYER_OF_MODULE[top]


def set_trainable(model: nn.Module, trains: Callable[[str], bool]) -> list[str]:
    """Set ``requires_grad = trains(name without "trunk.")``; return the trainable names."""
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(trains(name.removeprefix("trunk.")))
        if param.requires_grad:
            names.append(name)
    return names


def trainable_named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter with ``requires_grad`` (give these to AdamW)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _require_new_layers(model: nn.Module, strategy: str) -> None:
    if not isinstance(model, HeadedALIGNN) or model.n_new_layers < 1:
        raise ValueError(f"strategy {strategy!r} needs a HeadedALIGNN with new head layers")


def _freeze_up_to(layer: int) -> Callable[[str], bool]:
    """Predicate: a parameter trains iff its paper layer is above ``layer``."""
    return lambda name: paper_layer(name) > layer


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
    return set_trainable(model, _freeze_up_to(6))


def last_layer(model: nn.Module) -> list[str]:
    """FT strategy 3, "Unfreeze only the last layer" (paper Sec. 2.4).

    "We re-train only the final layer of the ALIGNN architecture keeping the parameters of the
    other six layers fixed." Trainable: ``fc`` (layer 7) only.
    """
    return set_trainable(model, _freeze_up_to(6))


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
    return set_trainable(model, lambda name: bool(_BOND_GRAPH.match(name)))


def interaction_3b(model: nn.Module) -> list[str]:
    """FT strategy 4, three-body variant, "Unfreeze selective (interaction) layers" (Sec. 2.4).

    "... or the three body interaction layers (line graphs) within the 4th layer are allowed to
    be unfrozen while keeping the rest of the model constant." Trainable: every
    ``ALIGNNConv.edge_update``; ``fc`` frozen (trainable in the paper's scripts), except a new,
    freshly initialised ``fc`` (a target of another width), which trains: see
    :func:`interaction_2b`.
    """
    return set_trainable(model, lambda name: bool(_LINE_GRAPH.match(name)))


def new_head_freeze_1(model: nn.Module) -> list[str]:
    """Hyper-parameter study "number of frozen layers" = 1, with a new head (Sec. 2.5).

    "We varied the number of frozen layers within the ALIGNN architecture to be either 1 (the
    embedding layer) or 6 (until the final layer) ... Additionally, we added a new prediction
    head in both cases (similar to FT strategy 2)." Frozen: layer 1 (the atom embedding);
    trainable: layers 2-7 and the new MLP layer.
    """
    _require_new_layers(model, "new_head_freeze_1")
    return set_trainable(model, _freeze_up_to(1))


def new_head_freeze_6(model: nn.Module) -> list[str]:
    """Hyper-parameter study "number of frozen layers" = 6, with a new head (Sec. 2.5).

    The other extreme of :func:`new_head_freeze_1`: layers 1-6 frozen, the new MLP layer and
    the head trainable. An explicit alias of :func:`new_head` (strategy 2): same trainable set.
    """
    _require_new_layers(model, "new_head_freeze_6")
    return set_trainable(model, _freeze_up_to(6))


def new_head_unfreeze_all(model: nn.Module) -> list[str]:
    """Strategies 1 and 2 combined, the paper's suggested future work (Sec. 4).

    "Model performance may also be improved by utilizing better FT strategies than those
    proposed in this work, such as combining strategies 1 and 2." A new MLP layer before the
    head, and every parameter trainable. (Also the recipe of FT from an MPT model, Sec. 2.6,
    with two new layers: see :func:`tlsearch.transfer.mpt_model.to_finetune`.)
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


def _train_new_head(model: nn.Module, strategy: str, names: list[str]) -> list[str]:
    """Make a freshly initialised ``fc`` trainable; the trainable names afterwards."""
    fc = model.trunk.fc if isinstance(model, HeadedALIGNN) else model.fc
    if all(p.requires_grad for p in fc.parameters()):
        return names
    logger.info(
        "FT strategy %s freezes the head, but the FT target's width needs a new randomly "
        "initialised head: it trains (a frozen random head would be useless)",
        strategy,
    )
    for param in fc.parameters():
        param.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def prepare_finetune(
    pretrained: ALIGNN,
    strategy: str,
    *,
    freeze_batchnorm_stats: bool = True,
    output_features: int | None = None,
) -> HeadedALIGNN | ALIGNN:
    """The model to fine-tune with ``strategy``, with ``requires_grad`` set.

    ``pretrained`` is deep-copied, never modified. Strategies with new head layers return a
    :class:`HeadedALIGNN`, the others an :class:`ALIGNN` (``scratch``: freshly initialised).

    Args:
        pretrained: the PT model.
        strategy: one of :data:`STRATEGY_NAMES`.
        freeze_batchnorm_stats: keep the BatchNorm running statistics of frozen modules fixed
            (see the module docstring); ``False`` reproduces the paper's code.
        output_features: width of the FT target; when it differs from the PT head's, ``fc`` is
            replaced by a freshly initialised ``Linear(hidden, output_features)``, and that head
            always trains, whatever the strategy: strategy 4 (``interaction_2b``/``3b``) would
            freeze it, and a frozen random head makes the fine-tuned layers fit through a
            fixed random projection (the paper's own strategy-4 scripts train ``fc`` anyway).
            The log says so.

    Raises:
        ValueError: unknown strategy, or a strategy that leaves no parameter trainable.
    """
    spec = get_strategy(strategy)
    if not isinstance(pretrained, ALIGNN):
        raise TypeError(f"pretrained must be an ALIGNN, got {type(pretrained).__name__}")
    model = copy.deepcopy(pretrained) if spec.pretrained else ALIGNN(pretrained.config)
    new_fc = output_features is not None and output_features != model.config.output_features
    if new_fc:
        model.fc = nn.Linear(model.config.hidden_features, output_features)
        model.config = model.config.model_copy(update={"output_features": output_features})
    ft_model = HeadedALIGNN(model, spec.new_layers) if spec.new_layers else model
    names = spec.apply(ft_model)
    if new_fc:
        names = _train_new_head(ft_model, strategy, names)
    if not names:
        raise ValueError(f"strategy {strategy!r} leaves no trainable parameter in this model")
    install_frozen_eval(ft_model, enabled=freeze_batchnorm_stats)
    total = sum(1 for _ in ft_model.parameters())
    logger.info("FT strategy %s: %d of %d parameter tensors trainable", strategy, len(names), total)
    return ft_model
