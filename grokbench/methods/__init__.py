"""The method registry: a method is one module with a `Method` subclass; add it here to make it available."""

from grokbench.methods.adversarial import Adversarial
from grokbench.methods.base import Method
from grokbench.methods.baseline import Baseline
from grokbench.methods.grokalign import GrokAlign
from grokbench.methods.grokfast import Grokfast

METHODS: dict[str, type[Method]] = {m.name: m for m in (Baseline, GrokAlign, Grokfast, Adversarial)}

__all__ = ["METHODS", "Method"]
