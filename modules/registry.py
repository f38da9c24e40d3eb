"""Backend kinds are code, named here; loaded models are cached per worker process."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from modules.backends.base import Backend
from modules.catalog import DEFAULT_CATALOG, BackendSpec, load_catalog
from modules.errors import CatalogError

#: kind -> "module:Class". Imported lazily so that torch loads only when a model does.
KINDS: dict[str, str] = {
    "torch_vision": "modules.backends.vision:TorchVisionBackend",
    "fact_table": "modules.backends.facts:FactTableBackend",
    "fake": "modules.backends.fake:FakeBackend",
    "transformers": "modules.backends.hf:TransformersBackend",
    "openai": "modules.backends.openai_compat:OpenAIBackend",
    "ocr": "modules.backends.ocr:OCRBackend",
    "text_encoder": "modules.backends.text_encoder:TextEncoderBackend",
    "mobilenet": "modules.backends.mobilenet:MobileNetBackend",
}

_lock = threading.Lock()
_loaded: dict[str, Backend] = {}


def backend_class(kind: str) -> type[Backend]:
    try:
        target = KINDS[kind]
    except KeyError:
        raise CatalogError(f"unknown backend kind {kind!r}; valid: {sorted(KINDS)}") from None
    module, _, cls = target.partition(":")
    backend: type[Backend] = getattr(importlib.import_module(module), cls)
    return backend


class Registry:
    """The backends of one catalog, set up on first use and cached per process."""

    def __init__(self, specs: list[BackendSpec]) -> None:
        self.specs: dict[str, BackendSpec] = {s.name: s for s in specs}

    @classmethod
    def from_catalog(cls, path: Path | str = DEFAULT_CATALOG) -> Registry:
        return cls(load_catalog(path))

    def spec(self, name: str) -> BackendSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise CatalogError(f"unknown backend {name!r}; valid: {sorted(self.specs)}") from None

    def candidates(self, function: str) -> list[str]:
        """Routable backends serving ``function``, in catalog order (cheapest first)."""
        return [
            s.name for s in self.specs.values() if function in s.functions and not s.baseline_only
        ]

    def get(self, name: str) -> Backend:
        spec = self.spec(name)
        key = spec.model_dump_json()
        with _lock:
            backend = _loaded.get(key)
            if backend is None:
                backend = backend_class(spec.kind)(spec)
                backend.setup()
                _loaded[key] = backend
        return backend
