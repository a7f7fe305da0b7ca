"""Offline model assets: registry of pinned sources and the verified local cache."""

from g2face.hub.registry import ASSETS, Asset, PypiWheel, WheelMember, get_asset
from g2face.hub.store import (
    ENV_HOME,
    ENV_WHEELHOUSE,
    AssetStatus,
    HubError,
    VerifyProblem,
    asset_dir,
    asset_path,
    cache_dir,
    converted_path,
    fetch,
    is_cached,
    status,
    verify,
)

__all__ = [
    "ASSETS",
    "ENV_HOME",
    "ENV_WHEELHOUSE",
    "Asset",
    "AssetStatus",
    "HubError",
    "PypiWheel",
    "VerifyProblem",
    "WheelMember",
    "asset_dir",
    "asset_path",
    "cache_dir",
    "converted_path",
    "fetch",
    "get_asset",
    "is_cached",
    "status",
    "verify",
]
