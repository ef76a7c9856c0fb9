"""archprobe: instantiate CNN architectures and analyse them.

The Python API (the command line is a second face over the same functions)::

    import archprobe as ap
    ap.count("googlenet").params                 # 6624904
    ap.count(my_module, input_size=(3, 224, 224))  # any nn.Module; its weights are never touched
    ap.breakdown("resnet18", by="module", depth=1).rows  # MACs/FLOPs by operator or by module
    ap.min_input("alexnet").min_size             # (63, 63)
    ap.memory("resnet50", mode="train", fit="24GiB").max_batch_size
    ap.to_frame([ap.count("alexnet"), ap.count("vgg16")])
    ap.train("lenet", dataset="fake", epochs=3)  # the book's experiments on real data sets
    ap.profile("googlenet-d2l", mode="train").rows  # measured time per layer, fwd + bwd, vs the roofline

Importing archprobe does not import torch; the functions import it when called.
"""

__version__ = "0.1.0"

from archprobe.api import breakdown as breakdown
from archprobe.api import count as count
from archprobe.api import expand as expand
from archprobe.api import layers as layers
from archprobe.api import list_models as list_models
from archprobe.api import memory as memory
from archprobe.api import min_input as min_input
from archprobe.api import probe as probe
from archprobe.api import profile as profile
from archprobe.api import sweep as sweep
from archprobe.api import sweep_report as sweep_report
from archprobe.api import throughput as throughput
from archprobe.api import to_frame as to_frame
from archprobe.api import train as train
from archprobe.errors import ArchprobeError as ArchprobeError
from archprobe.errors import InputSizeError as InputSizeError
from archprobe.errors import ModelCodeError as ModelCodeError
from archprobe.errors import SpecError as SpecError
from archprobe.errors import UsageError as UsageError
from archprobe.probe import Mode as Mode
from archprobe.probe import Probe as Probe
from archprobe.report import views as _views  # noqa: F401  (print(result) shows its table)
from archprobe.results import CostBreakdown as CostBreakdown
from archprobe.results import CostRow as CostRow
from archprobe.results import EpochRow as EpochRow
from archprobe.results import LayerTable as LayerTable
from archprobe.results import MemoryResult as MemoryResult
from archprobe.results import MinInputResult as MinInputResult
from archprobe.results import ModelCounts as ModelCounts
from archprobe.results import ProfileResult as ProfileResult
from archprobe.results import ProfileRow as ProfileRow
from archprobe.results import Recipe as Recipe
from archprobe.results import SweepCell as SweepCell
from archprobe.results import SweepRun as SweepRun
from archprobe.results import ThroughputResult as ThroughputResult
from archprobe.results import TrainRun as TrainRun

__all__ = [
    "ArchprobeError",
    "CostBreakdown",
    "CostRow",
    "EpochRow",
    "InputSizeError",
    "ModelCodeError",
    "LayerTable",
    "MemoryResult",
    "MinInputResult",
    "Mode",
    "ModelCounts",
    "Probe",
    "ProfileResult",
    "ProfileRow",
    "Recipe",
    "SpecError",
    "SweepCell",
    "SweepRun",
    "ThroughputResult",
    "TrainRun",
    "UsageError",
    "__version__",
    "breakdown",
    "count",
    "expand",
    "layers",
    "list_models",
    "memory",
    "min_input",
    "probe",
    "profile",
    "sweep",
    "sweep_report",
    "throughput",
    "to_frame",
    "train",
]
