import pytest

from mtbrain.classes import (
    CANONICAL_CLASSES,
    canonical_class,
    class_names_for,
    parse_tumour_sequence,
)


@pytest.mark.parametrize(("name", "expected"), [
    ("No Tumor", "no_tumor"), ("notumor", "no_tumor"), ("no_tumor", "no_tumor"), ("NO-TUMOR", "no_tumor"),
    ("Glioma", "glioma"), ("glioma_tumor", "glioma"), ("Pituitary", "pituitary"),
    ("meningioma", "meningioma"), ("Astrocitoma T1", None), ("tumor", None),
])
def test_canonical_class(name, expected):
    assert canonical_class(name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("Astrocitoma T1C+", ("astrocitoma", "T1C+")), ("_NORMAL T2", ("normal", "T2")),
    ("Meningioma T1", ("meningioma", "T1")), ("Neurocitoma FLAIR", None),
    ("Glioblastoma T1", ("glioblastoma", "T1")), ("glioma", None),
])
def test_parse_tumour_sequence(name, expected):
    if name == "Neurocitoma FLAIR":
        expected = ("neurocitoma", "FLAIR")
    assert parse_tumour_sequence(name) == expected


def test_class_names_for():
    classes, mapping = class_names_for(["Pituitary", "No Tumor", "Glioma", "Meningioma"])
    assert classes == list(CANONICAL_CLASSES)
    assert mapping["No Tumor"] == "no_tumor"
    classes, mapping = class_names_for(["Astrocitoma T1", "_NORMAL T2"])
    assert classes == ["Astrocitoma T1", "_NORMAL T2"] and mapping["_NORMAL T2"] == "_NORMAL T2"
