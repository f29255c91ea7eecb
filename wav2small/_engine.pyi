"""Type stub of the C extension (csrc/bindings.cpp): its functions and classes are typed as Any.
The Python modules wrap every one of them with checked, typed signatures (model.py, stream.py)."""
from typing import Any

def __getattr__(name: str) -> Any: ...
