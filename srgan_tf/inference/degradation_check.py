"""Does a model's training degradation match the thick slices it is applied to?

An Exp. 2 model learns to undo the degradation it was trained on: bicubic (the paper's
protocol) or a slice profile (`--degradation slice-profile`). Through-plane inputs are blurred
by the scanner's slice profile, and on real MR the mismatch decides most of the gain (issue
notes: a Gaussian-trained model loses 1.9 dB on box slices). The input's profile is estimated
with `data.profile_estimate.estimate_slice_profile` and compared by its second moment (a box and
a Gaussian of the same standard deviation are nearly the same blur, and the estimate cannot
tell them apart reliably).
"""
from typing import Optional

from srgan_tf.data.degradation.slice_profile import SliceProfile

SIGMA_TOLERANCE = 0.2  # relative difference of profile standard deviations that is flagged
# Slice spacing / in-plane spacing below which the check is skipped: the slices are then barely
# thicker than a pixel and their profile's estimate says little. Not the isotropy rule
# (`acquisition.is_isotropic`, equal axes): a volume between the two is anisotropic, too mildly to check.
MIN_CHECKED_FACTOR = 1.2


def training_degradation(metadata: dict) -> dict:
    """The degradation an export was trained with, from its metadata's config."""
    data = (metadata.get("config") or {}).get("data") or {}
    return {"degradation": data.get("degradation", "bicubic"),
            "slice_profile": data.get("slice_profile"),
            "slice_thickness_ratio": data.get("slice_thickness_ratio", 1.0)}


def describe_training(trained: dict) -> str:
    if trained["degradation"] != "slice-profile":
        return f"{trained['degradation']} (the paper's Exp. 2 protocol)"
    return (f"slice profile {trained['slice_profile']}, thickness {trained['slice_thickness_ratio']:g} x "
            f"the slice spacing")


def degradation_warning(metadata: dict, volume) -> Optional[str]:
    """A one-line warning when `volume`'s estimated slice profile differs from the model's
    training degradation (None when they agree or the profile cannot be estimated)."""
    from srgan_tf.data.degradation.profile_estimate import estimate_slice_profile

    trained = training_degradation(metadata)
    spacing = volume.spacing
    if spacing[0] < max(spacing[1:]) * MIN_CHECKED_FACTOR:
        return None  # slice axis is not axis 0 or barely anisotropic: nothing to compare
    try:
        estimate = estimate_slice_profile(volume.array, spacing)
    except ValueError:
        return None
    found = estimate.profile
    measured = f"{found.shape} {found.fwhm_mm:.2f} mm ({found.fwhm_mm / spacing[0]:.2f} x the slice spacing)"
    if trained["degradation"] != "slice-profile":
        return (f"the model was trained on {describe_training(trained)} degradation, but this "
                f"volume's slices look like a {measured} slice profile; for real thick slices train "
                f"with --degradation slice-profile (or use `srgan-tf self-supervised`)")
    trained_profile = SliceProfile(trained["slice_profile"],
                                   float(trained["slice_thickness_ratio"]) * spacing[0])
    if abs(found.sigma_mm / trained_profile.sigma_mm - 1) > SIGMA_TOLERANCE:
        return (f"the model was trained on a {describe_training(trained)}, but this volume's slices "
                f"look like a {measured} profile: expect less gain; retrain with a matching "
                f"--slice-profile/--slice-thickness-ratio or use `srgan-tf self-supervised`")
    return None
