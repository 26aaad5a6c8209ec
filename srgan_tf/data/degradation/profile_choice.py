"""The slice profile a run uses: the spectral estimate combined with what the header says.

A volume's own spectra (`profile_estimate.estimate_slice_profile`) pin down the profile's
standard deviation, but on single-subject scans not to better than about 20 %: the object is not
quite isotropic (a brain's left-right lines differ from its front-back ones), and a native
in-plane resolution coarser than the pixel reads as a narrower profile. The header is the other
evidence: DICOM SliceThickness (or `--slice-thickness`) is the nominal full width of the
profile, a NIfTI's slice spacing is the thickness only when the slices are contiguous.

Both are combined in log standard deviation, where the errors are about symmetric:

- the spectrum: the mean log standard deviation of its two in-plane directions' fits (each a
  measurement with its own anisotropy bias), with the uncertainty
  sqrt(slab spread^2 + direction spread^2 / 2 + SPECTRUM_BIAS^2) (sampling, the directions'
  disagreement, and its measured bias on real scans);
- the header: a box of the header thickness (prior BOX_PRIOR, equal to the Gaussian's) or a
  Gaussian of that FWHM, each with uncertainty HEADER_UNCERTAINTY[source]; the hypothesis
  that explains the spectrum better (likelihood times prior) is used;
- the choice: the inverse-variance mean of the two, with that hypothesis's shape; a
  disagreement beyond AGREE_Z combined uncertainties is reported (a warning line), and so is a
  shape the spectrum hardly decides (odds below SHAPE_ODDS against the other shape: a box of
  the thickness and a Gaussian of that FWHM differ by 47 % in standard deviation, which costs
  about 1 dB when wrong), naming `--slice-profile`.

The spectrum is not used when its fit is flat (widths up to the narrowest or widest candidate
fit about as well, or the slabs and directions disagree by more than FLAT_UNCERTAINTY), or when
the volume has so few slices that segments shorter than MIN_SEGMENT were measured (3 frequencies
in the band for 8 slices): the header's box is used and the reason says so.

A NIfTI knows no thickness: its spacing stands in for it, but it bounds the thickness from above
rather than pinning it (slices thinner than their spacing, a gap, are common; overlap is rarer).
A third hypothesis, "gap", competes with the spacing's box and Gaussian: the thickness anywhere
from GAP_MIN to 1 times the spacing (flat in log), prior GAP_PRIOR. When the spectrum is narrower
than the spacing's box by more than its uncertainty, "gap" explains it best and the spectrum's
own profile is used (decision "spectrum"), with a warning that names `--slice-thickness`; so
is it when the fit is flat only toward narrow widths and they, and both in-plane directions'
widths, are narrower than the spacing's box (an upper bound, not an unknown; the directions'
disagreement does not count there, the slabs' does). For the same reason the combined box of a
NIfTI stops at the spacing's box: its prior is one-sided (2-D slices do not overlap), so a
spectrum reading wider does not widen the box beyond the spacing (the reason says "capped").
"""
import math

import numpy as np
from dataclasses import dataclass
from typing import Dict, Optional

from srgan_tf.data.degradation.profile_estimate import ProfileEstimate, estimate_slice_profile
from srgan_tf.data.degradation.slice_profile import SliceProfile

SPECTRUM_BIAS = 0.2  # log-sd error of the spectral estimate on perturbed real MR (bench_profile.py)
HEADER_UNCERTAINTY = {"SliceThickness": 0.08, "--slice-thickness": 0.08, "spacing": 0.15}
# the box of the header thickness and the Gaussian of that FWHM are equally likely a priori: a real
# slice-selective profile lies between them (FWHM about the thickness, tails wider than a box), and
# either one used for the other costs about 1 dB. 0.6 for the box read every Gaussian whose spectrum
# came out 10 % narrow as a box (bench_profile.py --sweep: 142 -> 153 of 192 NIfTI cases within
# +-10 %, DICOM 181 -> 187; the 18-case table unchanged)
BOX_PRIOR = 0.5
FLAT_UNCERTAINTY = 0.3  # slab spread (log sd) above which the spectral fit counts as flat
AGREE_Z = 2.0  # disagreement reported beyond this many combined uncertainties
ANISOTROPY = 1 / math.sqrt(2.0)  # the in-plane directions' log-sd difference adds this much uncertainty
# a NIfTI's slices thinner than their spacing (the spacing's box and Gaussian share the rest): 0.26 keeps
# the box's odds against a gap where they were with a box prior of 0.6 (0.37 : 0.26 = 0.42 : 0.30)
GAP_PRIOR = 0.26
GAP_MIN = 0.3  # the thinnest slice, relative to the spacing, that the gap hypothesis allows
SHAPE_ODDS = 1.2  # a shape chosen at lower odds against the other (box, Gaussian) is warned about
MIN_SEGMENT = 12  # shorter through-plane segments (few slices) leave too few frequencies to fit
BAND_START, BAND_STOP = 0.15, 0.95  # the estimate's default band (fractions of Nyquist), for the report


@dataclass
class ProfileChoice:
    """What `choose_slice_profile` decided (printed, and written to summary.json).

    Attributes:
        profile: the profile the run uses.
        decision: "combined" (spectrum and header), "spectrum" (a NIfTI whose spectrum says its
            slices are thinner than their spacing: the spacing dropped), "header" (the spectrum
            was flat or could not be measured).
        reason: one line saying what was chosen and why.
        header_thickness, header_source: the header's thickness in mm and where it came from
            ("SliceThickness", "--slice-thickness" or "spacing").
        estimate: the spectral estimate (None when it could not be made).
        spectrum_uncertainty: relative uncertainty of the spectral standard deviation (log),
            None without an estimate.
        disagreement: |spectrum - header| in combined uncertainties (the nearer header shape);
            None without a usable estimate.
        warning: a one-line note when spectrum and header disagree, or the shape is a near tie,
            else None.
        shape_probability: the chosen shape's probability against the other header shape (box or
            Gaussian of the header thickness), for "combined"; None otherwise.
    """

    profile: SliceProfile
    decision: str
    reason: str
    header_thickness: float
    header_source: str
    estimate: Optional[ProfileEstimate] = None
    spectrum_uncertainty: Optional[float] = None
    disagreement: Optional[float] = None
    warning: Optional[str] = None
    shape_probability: Optional[float] = None

    @property
    def sigma_mm(self) -> float:
        return self.profile.sigma_mm

    def to_dict(self) -> Dict:
        """JSON-ready summary (the estimate's curves stay in slice_profile_estimate.json)."""
        estimate = self.estimate
        return {
            "profile": self.profile.to_dict(), "sigma_mm": self.sigma_mm, "decision": self.decision,
            "reason": self.reason, "warning": self.warning,
            "header": {"thickness_mm": self.header_thickness, "source": self.header_source,
                       "box_sigma_mm": SliceProfile("box", self.header_thickness).sigma_mm},
            "spectrum": None if estimate is None else {
                "profile": estimate.profile.to_dict(), "sigma_mm": estimate.sigma_mm,
                "uncertainty": self.spectrum_uncertainty,
                "sampling_uncertainty": estimate.uncertainty, "at_edge": estimate.at_edge,
                "slab_sigmas_mm": [float(v) for v in estimate.slab_sigmas_mm],
                "inplane_direction": estimate.inplane_direction,
                "direction_sigmas_mm": [float(v) for v in (estimate.direction_sigmas_mm
                                                           if estimate.direction_sigmas_mm is not None else [])]},
            "disagreement_z": self.disagreement, "shape_probability": self.shape_probability,
        }


def choose_slice_profile(array, spacing, *, header_thickness: Optional[float] = None,
                         header_source: str = "SliceThickness", estimate: Optional[ProfileEstimate] = None,
                         **estimate_options) -> ProfileChoice:
    """The slice profile of a thick-slice volume (slice axis 0) from its spectra and its header.

    Args:
        array, spacing: the volume, slice axis first, and its (slice, row, col) spacing in mm.
        header_thickness: the nominal slice thickness in mm; None: the slice spacing, as a
            NIfTI gives it (then `header_source` is "spacing").
        header_source: "SliceThickness", "--slice-thickness" or "spacing".
        estimate: a spectral estimate of this volume already made (else one is made here).
        estimate_options: passed to `estimate_slice_profile`.

    Example:
        choice = choose_slice_profile(volume.array, volume.spacing, header_thickness=6.5)
        print(choice.reason)
    """
    if header_thickness is None:
        header_thickness, header_source = float(spacing[0]), "spacing"
    if header_source not in HEADER_UNCERTAINTY:
        raise ValueError(f"header_source must be one of {', '.join(HEADER_UNCERTAINTY)}. "
                         f"Received: {header_source!r}")
    header = f"{header_source} {header_thickness:.4g} mm"
    fallback = SliceProfile("box", header_thickness)
    try:
        estimate = estimate or estimate_slice_profile(array, spacing, **estimate_options)
    except ValueError as error:  # too few slices or too little tissue to measure a spectrum
        return ProfileChoice(fallback, "header", f"the spectrum could not be measured "
                             f"({str(error).split('. Received')[0]}); a box of the {header}",
                             header_thickness, header_source, warning=_unknown_thickness(header_source, header))
    # sampling (slabs) and anisotropy (the in-plane directions disagree) uncertainty, then the bias
    spread = math.hypot(estimate.uncertainty, ANISOTROPY * _direction_spread(estimate))
    u_spectrum = math.hypot(spread, SPECTRUM_BIAS)
    measured = f"spectrum {estimate.profile.describe()} (sd {estimate.sigma_mm:.2f} mm +-{u_spectrum:.0%})"
    gap = header_source == "spacing"  # a NIfTI: the spacing bounds the thickness from above
    spacing_box = math.log(SliceProfile("box", header_thickness).sigma_mm)
    # a fit flat only toward narrow widths, all of them below the spacing's box: for a NIfTI this
    # bounds the thickness from above (slices with a gap), it does not leave it unknown
    # (every in-plane direction's width too: then their disagreement does not matter)
    sigmas = getattr(estimate, "direction_sigmas_mm", None)
    sigmas = [estimate.sigma_mm] if sigmas is None else list(sigmas)
    narrow = (gap and estimate.edge == "narrow" and estimate.uncertainty <= FLAT_UNCERTAINTY
              and math.log(max([estimate.interval_sigmas_mm[1]] + sigmas)) < spacing_box)
    few = estimate.segment_length < MIN_SEGMENT
    fractions = np.arange(estimate.segment_length // 2 + 1) * 2.0 / estimate.segment_length
    bins = int(np.sum((fractions >= BAND_START) & (fractions <= BAND_STOP)))
    if (estimate.at_edge and not narrow) or (spread > FLAT_UNCERTAINTY and not narrow) or few:
        low, high = estimate.interval_sigmas_mm
        why = (f"segments of {estimate.segment_length} slices give {bins} frequencies in the fitted band, "
               "too few to tell widths apart") if few else \
            (f"widths of sd {low:.2f} to {high:.2f} mm fit about as well, up to the candidates' "
             "edge") if estimate.at_edge else \
            f"the slabs of rows and cols and the in-plane directions disagree by +-{spread:.0%}"
        return ProfileChoice(fallback, "header", f"{measured} is flat ({why}); falling back to a box "
                             f"of the {header}", header_thickness, header_source, estimate, u_spectrum,
                             warning=_unknown_thickness(header_source, header))
    if narrow:
        return _gap_choice(estimate, header, header_thickness, header_source, u_spectrum, spacing_box,
                           None, f"every width up to sd {estimate.interval_sigmas_mm[1]:.2f} mm fits "
                           f"about as well, all narrower than a box of the {header} (sd "
                           f"{math.exp(spacing_box):.2f} mm)", measured)
    u_header = HEADER_UNCERTAINTY[header_source]
    u_both = math.hypot(u_spectrum, u_header)
    log_sigma = _log_sigma(estimate)
    hypotheses = []
    for shape, prior in (("box", BOX_PRIOR), ("gaussian", 1.0 - BOX_PRIOR)):
        centre = math.log(SliceProfile(shape, header_thickness).sigma_mm)
        z = (log_sigma - centre) / u_both
        prior *= (1.0 - GAP_PRIOR) if gap else 1.0
        hypotheses.append((prior * math.exp(-0.5 * z * z) / (u_both * math.sqrt(2 * math.pi)), shape, centre, z))
    _, shape, centre, _ = max(hypotheses)
    nearest = min(abs(h[3]) for h in hypotheses)
    if gap:
        # thickness flat in log from GAP_MIN to 1 x the spacing (box sigma), blurred by the spectrum's
        # uncertainty: the likelihood of the measured sigma under "slices with a gap"
        low = spacing_box + math.log(GAP_MIN)
        inside = (_normal_cdf((spacing_box - log_sigma) / u_spectrum)
                  - _normal_cdf((low - log_sigma) / u_spectrum))
        if GAP_PRIOR * inside / (spacing_box - low) > max(hypotheses)[0]:
            return _gap_choice(estimate, header, header_thickness, header_source, u_spectrum, spacing_box,
                               nearest, f"sd {math.exp(log_sigma):.2f} mm is narrower than a box of the "
                               f"{header} (sd {math.exp(spacing_box):.2f} mm) by "
                               f"{(spacing_box - log_sigma) / u_spectrum:.1f} uncertainties", measured)
    weight = u_header ** -2 / (u_header ** -2 + u_spectrum ** -2)
    log_combined = weight * centre + (1 - weight) * log_sigma
    # a NIfTI's spacing bounds a box's width from above (2-D slices do not overlap): the box's
    # prior is one-sided, so the combined width stops at the spacing's box
    capped = gap and shape == "box" and log_combined > spacing_box
    sigma = math.exp(min(log_combined, spacing_box) if capped else log_combined)
    profile = SliceProfile(shape, header_thickness).with_sigma(sigma)
    warnings = []
    if nearest > AGREE_Z:
        warnings.append(f"the {header} and the volume's spectrum (sd {math.exp(log_sigma):.2f} mm) disagree "
                        f"by {nearest:.1f} uncertainties; used {profile.describe()}"
                        + ("; with gaps between the slices pass --slice-thickness" if header_source == "spacing"
                           else ""))
    # the chosen shape against the other one (box or Gaussian of the header thickness)
    probability = max(hypotheses)[0] / sum(h[0] for h in hypotheses)
    if probability < SHAPE_ODDS / (1.0 + SHAPE_ODDS):  # odds against the other shape below SHAPE_ODDS
        other = "gaussian" if shape == "box" else "box"
        centres = {h[1]: math.exp(h[2]) for h in hypotheses}
        warnings.append(f"the spectrum (sd {math.exp(log_sigma):.2f} mm) lies between a box of the {header} "
                        f"(sd {centres['box']:.2f} mm) and a Gaussian of that FWHM (sd "
                        f"{centres['gaussian']:.2f} mm) and hardly tells them apart ({shape} {probability:.0%}, "
                        f"{other} {1 - probability:.0%}); used {profile.describe()}: pass --slice-profile box "
                        f"or gaussian if the sequence's profile is known")
    warning = "; ".join(warnings) or None
    reason = (f"{measured} combined with a {shape} of the {header} (+-{u_header:.0%}, weight "
              f"{weight:.0%}): {profile.describe()}, sd {sigma:.2f} mm"
              + (f" (the spacing bounds a box's width: sd {math.exp(log_combined):.2f} mm capped at "
                 f"{sigma:.2f} mm)" if capped else ""))
    return ProfileChoice(profile, "combined", reason, header_thickness, header_source, estimate,
                         u_spectrum, nearest, warning, probability)


def _unknown_thickness(header_source: str, header: str) -> Optional[str]:
    """The warning of a fallback to a NIfTI's spacing: no header and no spectrum says the thickness."""
    if header_source != "spacing":
        return None
    return (f"neither the header (a NIfTI has no slice thickness) nor the spectrum tells the slice "
            f"thickness; a box of the {header} is assumed, too wide if the slices have gaps: pass "
            f"--slice-thickness if it is known")


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _direction_spread(estimate: ProfileEstimate) -> float:
    """|log ratio| of the standard deviations the two in-plane directions fit (0 with one)."""
    sigmas = getattr(estimate, "direction_sigmas_mm", None)
    if sigmas is None or len(sigmas) < 2:
        return 0.0
    return float(abs(math.log(sigmas[0] / sigmas[1])))


def _log_sigma(estimate: ProfileEstimate) -> float:
    """The spectrum's log standard deviation as evidence: the mean over the in-plane directions
    fitted (each a measurement with its own anisotropy bias), else the estimate's."""
    sigmas = getattr(estimate, "direction_sigmas_mm", None)
    if sigmas is not None and len(sigmas) > 1:
        return float(np.mean(np.log(sigmas)))
    return math.log(estimate.sigma_mm)


def _gap_choice(estimate, header, header_thickness, header_source, u_spectrum, spacing_box, nearest,
                evidence, measured) -> ProfileChoice:
    """A NIfTI whose spectrum says its slices are thinner than their spacing: the spectrum's own
    profile (its best-fitting in-plane direction), its width kept within GAP_MIN to 1 x the
    spacing's box."""
    low = spacing_box + math.log(GAP_MIN)
    sigma = math.exp(min(max(math.log(estimate.sigma_mm), low), spacing_box))
    profile = estimate.profile.with_sigma(sigma)
    warning = (f"the volume's spectrum says its slices are thinner than their spacing (a gap?): "
               f"{evidence}; used {profile.describe()}; pass --slice-thickness if it is known")
    reason = (f"{measured}: {evidence}; slices with a gap explain it better than contiguous ones, so "
              f"the spectrum's {profile.describe()} is used, sd {sigma:.2f} mm")
    return ProfileChoice(profile, "spectrum", reason, header_thickness, header_source, estimate,
                         u_spectrum, nearest, warning)
