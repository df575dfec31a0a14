"""The method registry: a method is one module with a `Method` subclass; add it here to make it available, or, from
outside the package, name it in the `grokbench.methods` entry-point group (`name = "package.module:Class"`)."""

from grokbench.methods.adversarial import Adversarial
from grokbench.methods.base import Method
from grokbench.methods.baseline import Baseline
from grokbench.methods.grokalign import GrokAlign
from grokbench.methods.grokfast import Grokfast
from grokbench.methods.muon import Muon
from grokbench.methods.norm_constraint import NormConstraint
from grokbench.methods.orthograd import OrthoGrad
from grokbench.plugins import plugged_in

BUILT_IN = (Baseline, GrokAlign, Grokfast, Adversarial, OrthoGrad, Muon, NormConstraint)
METHODS: dict[str, type[Method]] = plugged_in("grokbench.methods", {m.name: m for m in BUILT_IN})

__all__ = ["METHODS", "Method"]
