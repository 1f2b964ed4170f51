"""The HTTP package's surface and route table are explicit and pinned."""

from __future__ import annotations

import importlib
import pkgutil

import streams.http
from streams.http.app import ROUTES


def test_the_package_face_is_pinned() -> None:
    assert sorted(streams.http.__all__) == ["WebContext", "build_web_app"]


def test_every_route_module_is_registered_once() -> None:
    registered = {(route.method, route.path) for route in ROUTES}
    assert len(registered) == len(ROUTES)
    for info in pkgutil.iter_modules(streams.http.__path__):
        module = importlib.import_module(f"streams.http.{info.name}")
        if info.name != "app" and hasattr(module, "ROUTES"):
            routes = {(route.method, route.path) for route in module.ROUTES}
            assert routes <= registered, info.name
