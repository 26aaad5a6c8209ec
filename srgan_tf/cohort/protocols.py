"""Volumes of one acquisition protocol, so they share one trained model.

Two volumes share a protocol when their models would learn the same mapping: the same model
factor, slice spacing and in-plane spacing (within 1%), and the same slice profile within its
uncertainty: the profiles the runs would use (`--slice-profile auto`: the spectral estimate
combined with the header's thickness, `data.profile_choice`; or the given box, Gaussian or
file) have one shape and widths within `PROFILE_WIDTH_TOLERANCE`.

Groups are formed in the volumes' sorted order: each volume joins the first group whose first
volume (the seed) it matches, so every part of a split run forms the same groups; the seed's
profile is the group's.
"""
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import List, Optional

SPACING_TOLERANCE = 0.01  # relative
# Relative width: the chosen profile's error with a header thickness is within 2.5 % on the
# perturbed-MNI152 table of benchmarks/bench_profile.py; twice that still separates protocols.
PROFILE_WIDTH_TOLERANCE = 0.05


@dataclass
class Decision:
    """What planning decided about one volume, JSON-ready (cached in the work folder)."""

    key: str
    acquisition: dict  # Acquisition.to_dict()
    profile: dict  # SliceProfile.to_dict()
    reason: str
    intensity_range: List[float]
    recipe: dict = field(default_factory=dict)  # self_supervised_run.plan.model_recipe


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance)


def same_protocol(a: Decision, b: Decision) -> bool:
    """Whether one model serves both volumes (see the module docstring)."""
    qa, qb = a.acquisition, b.acquisition
    if qa["model_factor"] != qb["model_factor"]:
        return False
    if not _close(qa["slice_spacing"], qb["slice_spacing"], SPACING_TOLERANCE):
        return False
    if not all(_close(x, y, SPACING_TOLERANCE)
               for x, y in zip(sorted(qa["in_plane_spacing"]), sorted(qb["in_plane_spacing"]))):
        return False
    ra, rb = dict(a.recipe), dict(b.recipe)
    for recipe in (ra, rb):  # compared above, with tolerances
        for name in ("slice_profile", "training_pixel_mm", "in_plane_spacing_mm"):
            recipe.pop(name, None)
    if ra != rb:  # other training settings
        return False
    return (a.profile["shape"] == b.profile["shape"] and a.profile.get("samples") == b.profile.get("samples")
            and _close(a.profile["fwhm_mm"], b.profile["fwhm_mm"], PROFILE_WIDTH_TOLERANCE))


def same_recipe(a: dict, b: dict) -> bool:
    """Whether a model trained for recipe `a` (`self_supervised_run.plan.model_recipe`) serves
    volumes planned with recipe `b`, by the tolerances of `same_protocol`."""
    ra, rb = dict(a), dict(b)
    if ra.pop("model_factor", None) != rb.pop("model_factor", None):
        return False
    try:
        if not _close(ra.pop("training_pixel_mm"), rb.pop("training_pixel_mm"), SPACING_TOLERANCE):
            return False
        sa, sb = sorted(ra.pop("in_plane_spacing_mm")), sorted(rb.pop("in_plane_spacing_mm"))
        pa, pb = ra.pop("slice_profile"), rb.pop("slice_profile")
    except KeyError:
        return False
    if len(sa) != len(sb) or not all(_close(x, y, SPACING_TOLERANCE) for x, y in zip(sa, sb)):
        return False
    return (ra == rb and pa["shape"] == pb["shape"] and pa.get("samples") == pb.get("samples")
            and _close(pa["fwhm_mm"], pb["fwhm_mm"], PROFILE_WIDTH_TOLERANCE))


@dataclass
class Protocol:
    """One group: its seed's decision, its members' keys, its model folder's name."""

    seed: Decision
    members: List[str]
    folder: Optional[str] = None  # an earlier run's model folder this protocol adopted
    recipe: Optional[dict] = None  # that model's recipe (its plan.json)

    @property
    def model_recipe(self) -> dict:
        return self.recipe if self.recipe is not None else self.seed.recipe

    @property
    def name(self) -> str:
        if self.folder:
            return self.folder
        profile, factor = self.seed.profile, self.seed.acquisition["model_factor"]
        digest = hashlib.sha1(json.dumps(self.seed.recipe, sort_keys=True).encode()).hexdigest()[:8]
        return f"x{factor}-{profile['shape']}{profile['fwhm_mm']:.2f}mm-{digest}"


def group_protocols(decisions: List[Decision]) -> List[Protocol]:
    """Protocols of the planned volumes, in sorted key order (see the module docstring)."""
    groups: List[Protocol] = []
    for decision in sorted(decisions, key=lambda d: d.key):
        home = next((g for g in groups if same_protocol(g.seed, decision)), None)
        if home is None:
            groups.append(Protocol(decision, [decision.key]))
        else:
            home.members.append(decision.key)
    return groups
