"""The planning rules for what the network learns: the loss, the border weight map and the
instance maps, each from the objects the fingerprint measured, with its reason (pure functions, as
in ``rules``)."""

from __future__ import annotations

from unetkit.config import dice_loss_for
from unetkit.planning.fingerprint import Fingerprint
from unetkit.planning.rules import Choice

TOUCHING = 0.1  # share of touching objects from which the border weight map pays off
COMPACT = 0.25  # objects whose median width is at least this share of their diameter are blobs
MIN_OBJECT_DIAMETER = 6.0  # px: smaller objects are all border, with no inside for maps to describe


def loss(fp: Fingerprint) -> Choice:
    return Choice("train.loss", dice_loss_for(fp.classes), (
        f"foreground is {fp.foreground_share:.1%} of the pixels: the Dice term is insensitive to class imbalance, "
        "cross-entropy gives smooth gradients (nnU-Net's Dice + CE)"
    ))


def weight_map(fp: Fingerprint, instance_target: str = "none") -> Choice:
    """The border weight map separates touching compact objects (cells, nuclei); pieces of an
    elongated structure (a vessel tree, median width far below its size) lying close mean nothing.
    Where the network learns instance maps they separate the objects instead: the map's class
    balancing would only skew the foreground probability, whose outline the object scores count
    pixel by pixel (benchmarks/objects-10m run: with the map, tuning raised the objects' foreground
    threshold to 0.8; without it, it stayed at 0.5)."""
    objects = fp.objects
    contact = "touch another" if objects.source == "instances" else "lie within 2 px of another"
    if instance_target != "none":
        return Choice("data.weight_map", False, (
            f"the instance maps ({instance_target}) keep touching objects apart; the weight map's class "
            "balancing would skew the foreground probability and with it every object's outline"
        ))
    if objects.median_thickness < COMPACT * objects.median_diameter:
        return Choice("data.weight_map", False, (
            f"objects are elongated (median width {objects.median_thickness:.0f} px, size {objects.median_diameter:.0f} px): "
            "no separate objects to keep apart, no border weight map"
        ))
    if objects.touching < TOUCHING or objects.per_image < 2:
        return Choice("data.weight_map", False, (
            f"{objects.touching:.0%} of objects {contact}: no border weight map needed"
        ))
    return Choice("data.weight_map", True, (
        f"{objects.touching:.0%} of the objects {contact} ({objects.per_image:.0f} per image): the paper's "
        "border weight map makes the network learn the thin gaps that separate them"
    ))


def instance_target(fp: Fingerprint, inverted: bool = False) -> Choice:
    """Instance maps (each object's core and border) beside the classes where the data has several
    compact objects per image that must be told apart: instance labels (the user annotated
    objects), or components of a mask that lie close together. A watershed on the foreground alone
    never learns where one object ends and the next begins; the maps make the network say it (the
    DSB-2018 winners' contours; the cores are the seeds). Not where the class of interest is the
    border itself (``inverted`` labels: membranes between cells)."""
    path, objects = "model.instance_target", fp.objects
    described = (f"{objects.per_image:.0f} objects per image, median diameter {objects.median_diameter:.0f} px, "
                 f"{objects.touching:.0%} touching")  # fmt: skip
    if inverted:
        return Choice(path, "none", "the class of interest is the border between objects: no objects of its own to map")
    if objects.source == "none" or objects.per_image < 2:
        return Choice(path, "none", f"{objects.per_image:.0f} object(s) per image: no objects to tell apart")
    if objects.median_thickness < COMPACT * objects.median_diameter or objects.median_diameter < MIN_OBJECT_DIAMETER:
        return Choice(path, "none", (
            f"objects are elongated or tiny (median width {objects.median_thickness:.0f} px, size "
            f"{objects.median_diameter:.0f} px): no inside to map, the classes alone"
        ))
    if objects.source == "components" and objects.touching < TOUCHING:
        return Choice(path, "none", f"{described}: separate components are the objects, the classes suffice")
    return Choice(path, "core+border", (
        f"{described}: the network also learns each object's core and border, and --instances cuts "
        "touching objects apart from the cores along the borders"
    ))
