from dataclasses import dataclass, field
from typing import Literal

import pytest

from mtbrain.config import apply_overrides, describe, from_dict, parse_override, read_yaml
from mtbrain.errors import ConfigError


@dataclass
class Inner:
    """Inner section.

    Attributes:
        rate: A rate.
        mode: A mode.
    """

    rate: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    """Outer.

    Attributes:
        name: A name.
        inner: The inner section.
        items: Some numbers.
        maybe: Optional int.
    """

    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    items: list[int] = field(default_factory=list)
    maybe: int | None = None


def test_from_dict_types_and_nesting():
    cfg = from_dict(Outer, {"name": "y", "inner": {"rate": 1, "mode": "b"}, "items": [1, 2],
                            "maybe": None})
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.mode == "b" and cfg.items == [1, 2] and cfg.maybe is None


@pytest.mark.parametrize(("values", "message"), [
    ({"nme": "y"}, "unknown config key nme"),
    ({"inner": {"rat": 1}}, "unknown config key inner.rat"),
    ({"inner": {"rate": "fast"}}, "inner.rate: expected a number, got 'fast'"),
    ({"inner": {"mode": "c"}}, "inner.mode: expected one of 'a', 'b'"),
    ({"items": [1, "two"]}, "items[1]: expected an integer"),
    ({"maybe": 1.5}, "maybe: expected an integer or null"),
    ({"inner": 3}, "inner: expected a mapping"),
])
def test_from_dict_errors_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_dict(Outer, values)


def test_overrides():
    base = {"inner": {"rate": 0.1}, "items": [1, 2]}
    out = apply_overrides(base, ["inner.rate=1e-3", "name=hello", "items.1=5", "inner.mode=b"])
    assert out == {"inner": {"rate": 1e-3, "mode": "b"}, "items": [1, 5], "name": "hello"}
    assert base["inner"]["rate"] == 0.1  # copy, not in place
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="not a list index"):
        apply_overrides(base, ["items.7=1"])


def test_read_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        read_yaml(tmp_path / "list.yaml")


def test_describe_lists_every_key_with_docs():
    rows = {key: (tp, default, doc) for key, tp, default, doc in describe(Outer)}
    assert set(rows) == {"name", "inner.rate", "inner.mode", "items", "maybe"}
    assert rows["inner.rate"][1] == 0.1 and rows["inner.rate"][2] == "A rate."
    assert rows["items"][1] == []


@dataclass
class WithList:
    """Sections in a list.

    Attributes:
        sections: The inner sections.
    """

    sections: list[Inner] = field(default_factory=lambda: [Inner()])


def test_describe_lists_the_fields_of_list_items():
    rows = {key: (tp, default, doc) for key, tp, default, doc in describe(WithList)}
    assert list(rows) == ["sections", "sections[].rate", "sections[].mode"]
    assert rows["sections"] == ("a list", [{"rate": 0.1, "mode": "a"}], "The inner sections.")
    assert rows["sections[].mode"] == ("one of 'a', 'b'", "a", "A mode.")
    with pytest.raises(ConfigError, match=r"sections\[0\]\.rate: expected a number"):
        from_dict(WithList, {"sections": [{"rate": "fast"}]})
