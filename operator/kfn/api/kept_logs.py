"""Where kfn keeps the last lines of a Function's pods that went (the operator writes them,
``kubectl kfn logs`` reads them): the ConfigMap ``kfn-logs.<function>`` in the Function's
namespace, one key per pod holding its last lines as the API server stamped them
(``<RFC 3339 time> <line>``), and an annotation listing the pods oldest first."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "kfn-logs."
ORDER_ANNOTATION: Final = "kfn.dev/kept-pods"
"""The kept pods' names, oldest first, comma-separated."""


def config_map_name(function_name: str) -> str:
    """``kfn-logs.<function>``: a name no Function's own ConfigMaps are likely to take."""
    return f"{PREFIX}{function_name}"
