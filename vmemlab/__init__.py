"""vmemlab: an executable model of Linux vmemmap deduplication for compound pages.

The engine (this package minus :mod:`vmemlab.viz` and :mod:`vmemlab.widgets`) is pure Python
and numpy and mirrors the kernel files it models: :mod:`~vmemlab.sparse` (mm/sparse.c),
:mod:`~vmemlab.sparse_vmemmap` (mm/sparse-vmemmap.c), :mod:`~vmemlab.memremap`
(mm/memremap.c), :mod:`~vmemlab.nvdimm_pfn` (drivers/nvdimm/pfn_devs.c), ...

>>> import vmemlab
>>> vmemlab.plan("1T", align="2M").ram_data_pages * 4096 >> 30
4
"""

from .arch import ARCHES, Arch, get_arch
from .errors import KernelError, ParameterError, VmemlabError
from .kernels import KERNELS, Kernel, get_kernel
from .machine import Machine
from .plan import Plan, plan, teardown

__all__ = ["ARCHES", "Arch", "get_arch", "KERNELS", "Kernel", "get_kernel", "Machine", "Plan",
           "plan", "teardown", "KernelError", "ParameterError", "VmemlabError"]
__version__ = "0.1.0"
